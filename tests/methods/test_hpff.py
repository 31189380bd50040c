"""HPFF (`hpff=True`): the cascade loss reaches exactly its pair of blocks; patch feature fusion."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import applied_gradients, assert_close, ce, resnet8_in_three_blocks, tiny_batch

import keras_local as kl
from keras_local.heads import LinearHead
from keras_local.methods.hpff import CascadeHead, HiLoLoss, PatchFusion
from keras_local.methods.infopro import InfoProHead

SHAPE, CLASSES, CASCADE = (8, 8, 3), 5, 0.7


def _model(method="gll", block_order="together", grid=1):
    options = {"hpff_cascade_weight": CASCADE, "hpff_patch_grid": grid, "block_order": block_order}
    return resnet8_in_three_blocks(method, SHAPE, CLASSES, hpff=True, **options)


@pytest.mark.parametrize("block_order", ["together", "sequential"])
def test_each_cascade_loss_trains_exactly_its_pair_of_blocks(block_order):
    model = _model(block_order=block_order)
    x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES)
    first, middle, last = model.blocks
    assert isinstance(middle.head, CascadeHead) and not isinstance(first.head, CascadeHead)
    # Hand-written reference on the un-stopped network, c = CASCADE:
    #   θ0 ← ∇[(1−c)·CE(own0(h0)) + c·CE(cascade1(h1))]        (block 1's cascade term reaches block 0)
    #   θ1 ← ∇[(1−c)·CE(own1(h1)) + c·CE(cascade1(h1)) + c·CE(out(h2))]
    #   θ2 ← ∇[CE(out(h2))]                                      (its output head serves both terms)
    with tf.GradientTape(persistent=True) as tape:
        h0 = first(tf.constant(x), training=True)
        h1 = middle(h0, training=True)
        h2 = last(h1, training=True)
        own0 = (1 - CASCADE) * ce(y, first.head(h0, training=True))
        outputs = middle.head(h1, training=True)
        own1, cascade1 = (1 - CASCADE) * ce(y, outputs["own"]), CASCADE * ce(y, outputs["cascade"])
        output = ce(y, last.head(h2, training=True))

    def grads(loss, block, weight=1.0):
        return [
            np.zeros(v.shape) if g is None else weight * g.numpy()
            for g, v in zip(tape.gradient(loss, block.trainable_variables), block.trainable_variables)
        ]

    def total(*parts):
        return [sum(each) for each in zip(*parts)]

    expected = [
        total(grads(own0, first), grads(cascade1, first)),
        total(grads(own1, middle), grads(cascade1, middle), grads(output, middle, CASCADE)),
        grads(output, last),
    ]
    # The tests would see the terms that must not arrive: the output's error beyond the pair, block 1's own term.
    for stray in (grads(output, first), grads(own1, first)):
        assert max(np.abs(g).max() for g in stray) > 1e-6
    applied = applied_gradients(model, x, y)
    for k in range(3):
        assert_close(applied[k], expected[k], atol=1e-5)


def test_infopro_hpff_uses_the_auxiliary_term_alone_for_the_independent_module():
    model = kl.build_model("resnet8", "infopro", num_blocks=3, input_shape=SHAPE, num_classes=CLASSES, hpff=True)
    model.compile(optimizer="sgd")
    loss = model.blocks[1].loss
    assert isinstance(loss, HiLoLoss) and loss.own_loss.reconstruction_weight == 0.0
    assert loss.cascade_loss.reconstruction_weight == model.method.interpolated_weights(3)[1][0]
    assert isinstance(model.blocks[1].sent_loss, HiLoLoss) and model.blocks[1].sent_loss.part == "cascade"


def test_patch_fusion_averages_the_heads_outputs_over_the_patches():
    features = np.random.default_rng(0).normal(size=(3, 8, 6, 4)).astype("float32")
    inner = LinearHead(CLASSES)
    fused = PatchFusion(inner, grid=2)
    expected = np.mean(
        [
            inner(features[:, rows, columns]).numpy()
            for rows in (slice(0, 4), slice(4, 8))
            for columns in (slice(0, 3), slice(3, 6))
        ],
        axis=0,
    )
    np.testing.assert_allclose(fused(features).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(PatchFusion(inner, grid=1)(features).numpy(), inner(features).numpy())


def test_patch_fusion_puts_each_patchs_reconstruction_in_its_part_of_the_image():
    features = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32")
    inner = InfoProHead(CLASSES, image_shape=(4, 4, 3))
    outputs = PatchFusion(inner, grid=2)(features, training=False)
    assert outputs["reconstruction"].shape == (2, 8, 8, 3)
    corner = inner(features[:, :4, 4:], training=False)["reconstruction"].numpy()  # the top-right patch
    np.testing.assert_allclose(outputs["reconstruction"].numpy()[:, :4, 4:], corner, rtol=1e-5, atol=1e-6)


def test_hpff_refuses_an_indivisible_patch_grid_in_one_line():
    with pytest.raises(ValueError, match=r"hpff_patch_grid=3 .* divisible by 3"):
        kl.build_model("resnet8", "gll", num_blocks=2, hpff=True, hpff_patch_grid=3, input_shape=(16, 16, 3))


def test_a_cascade_heads_readout_is_its_cascade_net_the_one_trained_with_the_large_weight():
    head = CascadeHead(LinearHead(CLASSES, name="own"), LinearHead(CLASSES, name="cascade"))
    outputs = head(np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32"))
    np.testing.assert_array_equal(outputs["logits"], outputs["cascade"])
    assert not np.allclose(outputs["logits"], outputs["own"])

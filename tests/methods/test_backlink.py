"""BackLink (`backlink`): gradients against hand-written GradientTape references; α = 1 or l = 0 is gll."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import (
    LEARNING_RATE,
    applied_gradients,
    assert_close,
    ce,
    compiled,
    grads,
    l2_penalty,
    tiny_batch,
    tiny_resnet,
)


def twin_models(method_options, weight_decay=0.0):
    gll = compiled(tiny_resnet("gll", weight_decay=weight_decay))
    backlink = compiled(tiny_resnet("backlink", weight_decay=weight_decay, **method_options))
    backlink.set_weights(gll.get_weights())
    return gll, backlink


@pytest.mark.parametrize("options", [{"alpha": 0.3, "propagation_length": 0}, {"alpha": 1.0, "propagation_length": 1}])
def test_backlink_without_link_is_exactly_gll(options):
    gll, backlink = twin_models(options, weight_decay=0.1)
    x, y = tiny_batch()
    for _ in range(2):
        gll.train_step((tf.constant(x), tf.constant(y)))
        backlink.train_step((tf.constant(x), tf.constant(y)))
    for a, b in zip(gll.get_weights(), backlink.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_backlink_tail_mixes_its_own_and_the_next_blocks_error(weight_decay):
    alpha = 0.25
    model = compiled(tiny_resnet("backlink", alpha=alpha, propagation_length=1, weight_decay=weight_decay))
    block0, block1, block2 = model.blocks
    stem, res1 = block0.units
    x, y = tiny_batch()

    # Reference: the next block reads a recomputed tail whose input is
    # stopped, so its error reaches the tail's parameters and goes no further.
    with tf.GradientTape(persistent=True) as tape:
        p0 = stem(tf.constant(x), training=True)
        h0 = res1(p0, training=True)
        loss0 = ce(y, block0.head(h0, training=True))
        h0_link = res1(tf.stop_gradient(p0), training=True)
        h1 = block1(h0_link, training=True)
        loss1 = ce(y, block1.head(h1, training=True))
        h1_link = block1(tf.stop_gradient(h0), training=True)  # block 1 is one unit: all tail
        loss2 = ce(y, block2.head(block2(h1_link, training=True), training=True))
        loss2_through = ce(y, block2.head(block2(block1(h0_link)), training=True))
        own_objectives = [
            loss + l2_penalty(weight_decay, block.trainable_variables)
            for loss, block in zip((loss0, loss1, loss2), model.blocks)
        ]

    def own(k, block):
        return grads(tape, own_objectives[k], block.trainable_variables)

    def mixed(block, tail, own_loss, next_loss, k):
        tail_ids = {id(v) for v in tail}
        own_grads = grads(tape, own_loss, block.trainable_variables)
        next_grads = grads(tape, next_loss, block.trainable_variables)
        wd = [weight_decay * v.numpy() for v in block.trainable_variables]
        return [
            alpha * o + (1 - alpha) * n + d if id(v) in tail_ids else o + d
            for v, o, n, d in zip(block.trainable_variables, own_grads, next_grads, wd)
        ]

    reference = [
        mixed(block0, res1.trainable_variables, loss0, loss1, 0),
        mixed(block1, block1.units[0].trainable_variables, loss1, loss2, 1),  # all units, not the head
        own(2, block2),
    ]
    # Sanity of the reference: block 1's error does reach the tail, and loss2
    # would reach block 0 if errors travelled two blocks back.
    assert max(np.abs(g).max() for g in grads(tape, loss1, res1.trainable_variables)) > 1e-4
    assert max(np.abs(g).max() for g in grads(tape, loss2_through, res1.trainable_variables)) > 1e-4

    applied = applied_gradients(model, x, y)
    for k in range(3):
        assert_close(applied[k], reference[k])
    # Units before the tail (the stem) and the head get ∂L_0 only.
    stem_ids = {id(v) for v in stem.trainable_variables + block0.head.trainable_variables}
    own0 = own(0, block0)
    for v, a, o in zip(block0.trainable_variables, applied[0], own0):
        if id(v) in stem_ids:
            np.testing.assert_allclose(a, o, rtol=1e-3, atol=2e-5)
    # The mix is not gll: the tail's gradient differs from its own loss's.
    assert not all(np.allclose(a, o, atol=1e-5) for a, o in zip(applied[0], own0))


def test_backlink_validates_alpha_and_propagation_length():
    import keras_local as kl

    with pytest.raises(ValueError, match=r"alpha must be .* got 1.5"):
        kl.get_method("backlink", alpha=1.5)
    with pytest.raises(ValueError, match=r"propagation_length must be an integer >= 0, got -1"):
        kl.get_method("backlink", propagation_length=-1)
    with pytest.raises(ValueError, match=r"propagation_length=4 .* \[4, 4, 3, 3, 3\] .* at most 3"):
        kl.get_method("backlink", propagation_length=4).validate([4, 4, 3, 3, 3])
    with pytest.raises(ValueError, match=r"propagation_length=3 is longer .* \[4, 4, 1, 1\]"):
        kl.build_model("resnet20", "backlink", cuts=[4, 8, 9], propagation_length=3, input_shape=(8, 8, 3))
    # The last block is never linked into, so it may be shorter than l.
    kl.get_method("backlink", propagation_length=2).validate([2, 2, 1])


@pytest.mark.parametrize("scheduled", [False, True])
def test_backlink_two_unit_tail_with_a_fixed_or_scheduled_alpha(scheduled):
    """l = 2: the last two units of block 0 get α·∂L_0 + (1 − α)·∂L_1, its first unit and its head
    ∂L_0 only, block 1 ∂L_1; with α scheduled (a variable assigned between steps) the step uses
    the variable's value, not the one the model was built with."""
    import keras_local as kl

    keras.utils.set_random_seed(3)
    model = kl.build_model(
        "mlp",
        "backlink",
        cuts=[3],
        alpha=0.5,
        propagation_length=2,
        input_shape=(6,),
        num_classes=4,
        architecture_options={"hidden_units": (8, 8, 8, 8)},
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    alpha = 0.5
    if scheduled:
        alpha = 0.8
        model.method_variable("alpha").assign(alpha)
    block0, block1 = model.blocks
    first, second, third = block0.units
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = rng.integers(0, 4, size=8)
    with tf.GradientTape(persistent=True) as tape:
        p = first(tf.constant(x), training=True)
        h = third(second(p, training=True), training=True)
        loss0 = ce(y, block0.head(h, training=True))
        h_link = third(second(tf.stop_gradient(p), training=True), training=True)  # the error stops at p
        loss1 = ce(y, block1.head(block1(h_link, training=True), training=True))
    tail = {id(v) for v in second.trainable_variables + third.trainable_variables}
    own0, next0 = grads(tape, loss0, block0.trainable_variables), grads(tape, loss1, block0.trainable_variables)
    expected0 = [
        alpha * o + (1 - alpha) * n if id(v) in tail else o for v, o, n in zip(block0.trainable_variables, own0, next0)
    ]
    expected1 = grads(tape, loss1, block1.trainable_variables)
    assert max(np.abs(g).max() for g, v in zip(next0, block0.trainable_variables) if id(v) in tail) > 1e-4
    assert not any(np.abs(g).max() for g in grads(tape, loss1, first.trainable_variables))  # nothing past p
    applied = applied_gradients(model, x, y)
    assert_close(applied[0], expected0)
    assert_close(applied[1], expected1)

"""MAN (`man=True`): gradients against a hand-written tape, the moving average in closed form, exact resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import applied_gradients, assert_close, ce, resnet8_in_three_blocks, tiny_batch

import keras_local as kl
from keras_local.methods.man import MomentumHead

SHAPE, CLASSES = (8, 8, 3), 5


def _model(method="gll", momentum=0.9, **options):
    return resnet8_in_three_blocks(method, SHAPE, CLASSES, man=True, man_momentum=momentum, **options)


@pytest.mark.parametrize("method", ["gll", "dgl"])
def test_each_block_learns_its_own_loss_through_local_plus_average_copies_of_the_next_block(method):
    model = _model(method)
    x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES)
    heads = [block.head for block in model.blocks[:-1]]
    assert all(isinstance(head, MomentumHead) for head in heads) and not isinstance(model.output_head, MomentumHead)
    for head, block in zip(heads, model.blocks[1:]):  # copies of the next block's first unit, new weights
        assert type(head.local) is type(block.units[0]) and head.local.get_config()["filters"] == block.units[0].filters
        assert not np.allclose(head.local.weights[0].numpy(), block.units[0].weights[0].numpy())
    # Hand-written reference: L_k = CE(a_k(LB_k(h_k) + EMA_k(h_k))) on the un-stopped h_k; θ(B_k), LB_k and a_k
    # get ∂L_k only; EMA_k gets no gradient.
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for index, block in enumerate(model.blocks):
            h = block(h, training=True)
            if index < len(model.blocks) - 1:
                head = block.head
                z = head.local(h, training=True) + head.average(h, training=True)
                losses.append(ce(y, head.head(z, training=True)))
            else:
                losses.append(ce(y, block.head(h, training=True)))
    reference = [
        [g.numpy() for g in tape.gradient(loss, block.trainable_variables)] for loss, block in zip(losses, model.blocks)
    ]
    averages = {id(v) for head in heads for v in head.average.weights}
    assert not any(id(v) in averages for block in model.blocks for v in block.trainable_variables)
    leaked = tape.gradient(losses[1], model.blocks[0].trainable_variables)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in leaked if g is not None) > 1e-4  # the cut matters
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])


def test_the_average_after_n_steps_is_the_closed_form_of_the_next_blocks_weights():
    momentum, steps = 0.8, 3
    model = _model(momentum=momentum)
    head, source = model.blocks[0].head, model.blocks[1].units[0]
    start = [v.numpy().copy() for v in head.average.weights]
    seen = []  # the next block's first unit as each step found it (before its own update of that step)
    for step in range(steps):
        x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES, seed=step)
        seen.append([v.numpy().copy() for v in source.weights])
        model.train_on_batch(x, y)
    for index, (average, current) in enumerate(zip(head.average.weights, source.weights)):
        if not current.trainable:  # batch-norm statistics: the average's own
            continue
        expected = momentum**steps * start[index] + (1 - momentum) * sum(
            momentum ** (steps - 1 - t) * seen[t][index] for t in range(steps)
        )
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(head.average.weights[0].numpy(), start[0])


@pytest.mark.large  # an interrupted and resumed fit
def test_a_saved_and_reloaded_run_continues_exactly_as_an_uninterrupted_one(tmp_path):
    batches = [tiny_batch(input_shape=SHAPE, num_classes=CLASSES, seed=seed) for seed in range(3)]
    keras.utils.set_random_seed(1)
    straight = _model()
    keras.utils.set_random_seed(1)
    interrupted = _model()
    for x, y in batches[:2]:
        straight.train_on_batch(x, y)
        interrupted.train_on_batch(x, y)
    interrupted.save(tmp_path / "model.keras")
    resumed = keras.models.load_model(tmp_path / "model.keras")
    for model in (straight, resumed):
        model.train_on_batch(*batches[2])
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert resumed.method.get_config()["man_momentum"] == 0.9


def test_man_and_hpff_together_or_a_bad_momentum_fail_with_one_line():
    with pytest.raises(ValueError, match="cannot be combined"):
        kl.build_model("resnet8", "gll", num_blocks=2, man=True, hpff=True)
    with pytest.raises(ValueError, match=r"man_momentum must be a number >= 0.0 and <= 1.0, got 1.5"):
        kl.build_model("resnet8", "dgl", num_blocks=2, man=True, man_momentum=1.5)
    with pytest.raises(ValueError, match="man must be True or False, got 'yes'"):
        kl.get_method("infopro", man="yes")

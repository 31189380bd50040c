"""BWBPF (`bwbpf`): gradients against hand-written GradientTape references."""

import numpy as np
import tensorflow as tf
from conftest import (
    applied_gradients,
    assert_close,
    ce,
    compiled,
    grads,
    l2_penalty,
    tiny_batch,
    tiny_resnet,
)


def test_bwbpf_output_layer_gets_only_the_global_loss_and_no_block_gets_it():
    lambda_global, lambda_local = 2.0, 0.5
    model = compiled(tiny_resnet("bwbpf", lambda_global=lambda_global, lambda_local=lambda_local))
    *blocks, output_block = model.blocks
    assert output_block.units == [] and model.output_head is output_block.head
    x, y = tiny_batch()

    with tf.GradientTape(persistent=True) as tape:
        h, local = tf.constant(x), []
        for block in blocks:
            h = block(tf.stop_gradient(h), training=True)
            local.append(ce(y, block.head(h, training=True)))
        weighted = [lambda_local * loss for loss in local]
        global_stopped = lambda_global * ce(y, output_block.head(tf.stop_gradient(h)))
        global_through = ce(y, output_block.head(h))  # what a missing cut would send back
    reference = [grads(tape, loss, block.trainable_variables) for loss, block in zip(weighted, blocks)]
    reference.append(grads(tape, global_stopped, output_block.trainable_variables))
    leak = grads(tape, global_through, blocks[-1].trainable_variables)

    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])
    # The global loss would reach the last block without the cut; it does not.
    assert max(np.abs(g).max() for g in leak) > 1e-4
    # The weights are applied: λ_local = 0.5 halves the plain local gradient.
    assert_close([2 * g for g in applied[0]], grads(tape, local[0], blocks[0].trainable_variables))


def test_bwbpf_deep_supervision_is_end_to_end_backprop_of_the_weighted_sum():
    lambda_global, lambda_local = 1.5, 0.5
    model = compiled(
        tiny_resnet(
            "bwbpf", deep_supervision=True, lambda_global=lambda_global, lambda_local=lambda_local, weight_decay=0.1
        )
    )
    assert len(model.blocks) == 3 and not model.method.cut_gradients
    x, y = tiny_batch()
    with tf.GradientTape(persistent=True) as tape:
        h, total = tf.constant(x), 0.0
        for index, block in enumerate(model.blocks):
            h = block(h, training=True)
            weight = lambda_global if index == len(model.blocks) - 1 else lambda_local
            total += weight * ce(y, block.head(h, training=True)) + l2_penalty(0.1, block.trainable_variables)
    reference = [grads(tape, total, block.trainable_variables) for block in model.blocks]
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])

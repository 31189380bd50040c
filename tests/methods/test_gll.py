"""Greedy local learning (`gll`): each block's gradient against a hand-written tape."""

import keras
import numpy as np
import pytest
from conftest import (
    LEARNING_RATE,
    applied_gradients,
    assert_close,
    local_loss_gradients,
    tiny_batch,
    tiny_resnet,
)

import keras_local as kl


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_gll_each_block_gets_only_its_own_local_loss(weight_decay):
    model = tiny_resnet("gll", weight_decay=weight_decay)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    x, y = tiny_batch()

    # Hand-written reference: block k's loss on its own head, w.r.t. its own
    # variables, from the (un-stopped) output of the blocks before it.
    reference, leaked = local_loss_gradients(model, x, y, weight_decay)
    # The reference forward ran BN in training mode like the step will; undo nothing else.
    applied = applied_gradients(model, x, y)

    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])
        if leaked[k] is not None:
            # Later losses do reach block k without the cut: the test would see them.
            assert max(np.abs(g).max() for g in leaked[k]) > 1e-4
            pairs = zip(applied[k], reference[k], leaked[k])
            assert not all(np.allclose(a, r + extra, atol=1e-5) for a, r, extra in pairs)
    if weight_decay:
        # The coupled L2 term is really in the update: the gradient without it differs.
        without = [
            g - weight_decay * v for g, v in zip(reference[0], [w.numpy() for w in model.blocks[0].trainable_variables])
        ]
        assert not all(np.allclose(a, b, atol=1e-5) for a, b in zip(applied[0], without))


def test_gll_last_block_uses_the_output_head():
    model = kl.build_model("resnet20", method="gll", num_blocks=3, head="conv", input_shape=(8, 8, 3), num_classes=5)
    assert model.output_head is model.blocks[-1].head
    assert isinstance(model.output_head, kl.heads.LinearHead)
    assert all(isinstance(block.head, kl.heads.ConvHead) for block in model.blocks[:-1])

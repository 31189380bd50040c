"""End-to-end backprop (`bp`): one step equals a plain Keras model's, against a hand-written tape."""

import keras
import numpy as np
import tensorflow as tf
from conftest import (
    LEARNING_RATE,
    applied_gradients,
    assert_close,
    ce,
    tiny_batch,
    tiny_resnet,
)

import keras_local as kl


def test_bp_step_equals_a_plain_keras_model_step():
    model = tiny_resnet("bp")
    twin = tiny_resnet("bp")
    twin.set_weights(model.get_weights())
    plain = kl.export_inference_model(twin)  # the same layers as `twin`, as a plain model
    optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=0.9)
    model.compile(optimizer=optimizer)
    plain.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), loss=ce)
    assert not model.method.aux_heads and model.blocks[0].head is None
    x, y = tiny_batch()
    for _ in range(2):  # the second step exercises the momentum slots
        model.train_step((tf.constant(x), tf.constant(y)))
        plain.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    moved = [np.abs(a - b).max() for a, b in zip(model.get_weights(), tiny_resnet("bp").get_weights())]
    assert max(moved) > 1e-3


def test_bp_gradient_reaches_the_first_block():
    model = tiny_resnet("bp")
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    x, y = tiny_batch()
    with tf.GradientTape() as tape:
        loss = ce(y, model(tf.constant(x), training=True))
    reference = [g.numpy() for g in tape.gradient(loss, model.blocks[0].trainable_variables)]
    assert_close(applied_gradients(model, x, y)[0], reference)

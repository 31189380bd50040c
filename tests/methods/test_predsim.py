"""PredSim (`predsim`): its similarity matrices and losses against the reference's formulas and a hand-written tape."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, applied_gradients, assert_close, ce

import keras_local as kl


def reference_similarity(x):
    """S(x) written out: per-channel spatial std (unbiased) for conv maps,
    centred rows, unit L2 rows, X·Xᵀ clipped to [-1, 1]."""
    x = np.asarray(x, dtype="float64")
    if x.ndim == 4 and x.shape[-1] > 3 and x.shape[1] * x.shape[2] > 1:
        x = x.reshape(x.shape[0], -1, x.shape[-1]).std(axis=1, ddof=1)
    x = x.reshape(x.shape[0], -1)
    x = x - x.mean(axis=1, keepdims=True)
    x = x / (1e-8 + np.linalg.norm(x, axis=1, keepdims=True))
    return np.clip(x @ x.T, -1, 1)


def test_similarity_matrix_of_one_hot_labels():
    from keras_local.methods.predsim import similarity_matrix

    labels = np.array([0, 1, 1, 3, 0])
    matrix = similarity_matrix(keras.ops.one_hot(labels, 4)).numpy()
    expected = np.where(labels[:, None] == labels[None, :], 1.0, -1.0 / 3)
    np.testing.assert_allclose(matrix, expected, atol=1e-6)


def test_similarity_matrix_of_conv_features_uses_the_spatial_std():
    from keras_local.methods.predsim import similarity_matrix

    features = np.random.default_rng(0).normal(size=(5, 4, 4, 8)).astype("float32")
    np.testing.assert_allclose(similarity_matrix(features).numpy(), reference_similarity(features), atol=1e-5)
    flat = np.random.default_rng(1).normal(size=(5, 7)).astype("float32")
    np.testing.assert_allclose(similarity_matrix(flat).numpy(), reference_similarity(flat), atol=1e-5)


def test_predsim_head_follows_the_reference():
    from keras_local.methods.predsim import PredSimHead, pooled_size

    assert pooled_size(32, 32, 128, 2048) == (4, 4)  # vgg8b's first layer: 128·4·4 = 2048
    assert pooled_size(8, 8, 512, 2048) == (2, 2)
    assert pooled_size(4, 4, 64, 2048) == (4, 4)
    head = PredSimHead(10, dim_in_decoder=2048)
    outputs = head(np.ones((2, 32, 32, 128), "float32"))
    assert outputs["logits"].shape == (2, 10) and outputs["similarity"].shape == (2, 32, 32, 128)
    assert not np.any(head.decoder.kernel.numpy())  # zero-initialised prediction layer
    assert head.similarity.kernel_size == (3, 3) and not head.similarity.use_bias


@pytest.mark.parametrize("output_loss", ["plain", "scaled"])
def test_predsim_blocks_get_their_own_predsim_loss_and_the_output_layer_its_ce(output_loss):
    beta = 0.9
    model = kl.build_model(
        "dgl_cnn4", "predsim", num_blocks=2, beta=beta, input_shape=(8, 8, 3), num_classes=5, output_loss=output_loss
    )
    assert not np.any(model.output_head.dense.kernel.numpy())  # zero-initialised, as the reference's
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    assert len(model.blocks) == 3 and not model.blocks[-1].units  # the output layer is a block of its own
    for block in model.blocks[:-1]:  # a non-zero decoder, so that the CE term has gradients everywhere
        block.head.decoder.kernel.assign(np.random.default_rng(2).normal(size=block.head.decoder.kernel.shape) * 0.1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 4])

    def sim(t):  # the reference similarity, in TensorFlow for the tape
        if len(t.shape) == 4:
            n = t.shape[1] * t.shape[2]
            t = tf.math.reduce_std(tf.reshape(t, (t.shape[0], n, t.shape[-1])), axis=1) * np.sqrt(n / (n - 1))
        t = t - tf.reduce_mean(t, axis=1, keepdims=True)
        t = t / (1e-8 + tf.norm(t, axis=1, keepdims=True))
        return tf.clip_by_value(tf.matmul(t, t, transpose_b=True), -1, 1)

    target = sim(tf.one_hot(y, 5))
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for block in model.blocks[:-1]:
            h = block(h, training=True)
            outputs = block.head(h, training=True)
            losses.append(
                (1 - beta) * ce(y, outputs["logits"])
                + beta * tf.reduce_mean(tf.square(sim(outputs["similarity"]) - target))
            )
        output_weight = (1 - beta) if output_loss == "scaled" else 1.0
        losses.append(output_weight * ce(y, model.output_head(h, training=True)))
    reference = [tape.gradient(loss, block.trainable_variables) for loss, block in zip(losses, model.blocks)]
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], [g.numpy() for g in reference[k]], atol=5e-5)
    # Without the cut, block 1's loss would reach block 0: the test can tell.
    leaked = [g for g in tape.gradient(losses[1], model.blocks[0].trainable_variables) if g is not None]
    assert max(float(tf.reduce_max(tf.abs(g))) for g in leaked) > 1e-5


def test_predsim_output_learns_under_sgd_with_coupled_weight_decay():
    """The default (plain CE on the output) trains the output layer under SGD; the reference's
    (1 − β)·CE gives it a 100× smaller step while the coupled weight decay is not scaled, and
    the output stays near chance (what the first reproduction grid recorded)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 5, size=512)
    x = centres[y] + 0.3 * rng.normal(size=(512, 8, 8, 3)).astype("float32")
    cross_entropy = {}
    for output_loss in ("plain", "scaled"):
        keras.utils.set_random_seed(0)
        model = kl.build_model(
            "dgl_cnn4",
            "predsim",
            num_blocks=2,
            input_shape=(8, 8, 3),
            num_classes=5,
            weight_decay=5e-4,
            output_loss=output_loss,
        )
        for index in range(2):  # the output layer alone learns, on fixed features
            model.set_block_state(index, "frozen")
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(x, y, batch_size=64, epochs=5, verbose=0)
        logits = model.predict(x, verbose=0)
        cross_entropy[output_loss] = float(
            np.mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        )
    assert cross_entropy["plain"] < 0.2
    assert cross_entropy["scaled"] > 1.0  # chance: ln 5 = 1.61


def test_predsim_options_are_validated():
    with pytest.raises(ValueError, match="beta must be a number >= 0.0 and <= 1.0, got 1.5"):
        kl.build_model("vgg8b", "predsim", num_blocks=7, beta=1.5, build=False)
    with pytest.raises(ValueError, match="Unknown output_loss 'mse'. Allowed: plain, scaled"):
        kl.build_model("vgg8b", "predsim", num_blocks=7, output_loss="mse", build=False)

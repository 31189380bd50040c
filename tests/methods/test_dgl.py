"""DGL (`dgl`): its auxiliary nets and networks, and each block's gradient against a hand-written tape."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, applied_gradients, assert_close, ce

import keras_local as kl
from keras_local.methods.dgl import DGLHead


@pytest.mark.parametrize("size", [32, 16, 8])
def test_dgl_mlp_sr_head_shapes(size):
    channels = 16
    head = DGLHead(10, variant="mlp_sr")
    head.build((None, size, size, channels))
    shapes, shape = [], (2, size, size, channels)
    for layer in head.stack:
        shape = layer.compute_output_shape(shape)
        shapes.append((type(layer).__name__, tuple(shape)))
    reduced = -(-size // 4)
    assert shapes[0] == ("AdaptiveAveragePooling2D", (2, reduced, reduced, channels))
    convs = [s for name, s in shapes if name == "Conv2D"]
    assert convs == [(2, reduced, reduced, channels)] * 3
    assert [layer.kernel_size for layer in head.stack if isinstance(layer, keras.layers.Conv2D)] == [(1, 1)] * 3
    assert ("AdaptiveAveragePooling2D", (2, 2, 2, channels)) in shapes
    assert ("Flatten", (2, 4 * channels)) in shapes
    assert [s for name, s in shapes if name == "Dense"] == [(2, 4 * channels)] * 3 + [(2, 10)]
    assert head(np.zeros((2, size, size, channels), "float32")).shape == (2, 10)


def test_dgl_cnn_and_mlp_heads():
    cnn = DGLHead(10, variant="cnn")
    assert cnn(np.zeros((2, 16, 16, 8), "float32")).shape == (2, 10)
    kernels = [layer.kernel_size for layer in cnn.stack if isinstance(layer, keras.layers.Conv2D)]
    assert kernels == [(3, 3), (3, 3)]
    assert isinstance(cnn.stack[-3], keras.layers.BatchNormalization)  # BN2d after the 2x2 pool
    mlp = DGLHead(10, variant="mlp")
    assert mlp(np.zeros((2, 16, 16, 8), "float32")).shape == (2, 10)
    assert not [layer for layer in mlp.stack if isinstance(layer, keras.layers.Conv2D)]
    with pytest.raises(ValueError, match="Unknown DGL head variant 'mlp_sr2'"):
        DGLHead(10, variant="mlp_sr2")


def test_dgl_networks_follow_the_reference_layers():
    model = kl.build_model("dgl_cnn6", "dgl", num_blocks=6, num_classes=10)
    shapes = [block.features_shape[1:] for block in model.blocks]
    assert shapes == [(32, 32, 128), (16, 16, 256), (16, 16, 256), (8, 8, 512), (8, 8, 512), (8, 8, 512)]
    assert all(block.units[0].conv.use_bias for block in model.blocks)  # PyTorch's conv default
    four = kl.build_model("dgl_cnn4", "dgl", num_blocks=4, num_classes=10)
    assert [block.features_shape[1:] for block in four.blocks] == [
        (32, 32, 64),
        (16, 16, 128),
        (16, 16, 128),
        (8, 8, 256),
    ]
    # DGL's default auxiliary net is mlp_sr; the last block's head is the reference's last module:
    # pool to 2x2, two [Dense(4F) + BN + ReLU], Dense (auxillary_classifier2(n_lin=0, mlp_layers=2)).
    assert all(isinstance(block.head, DGLHead) and block.head.variant == "mlp_sr" for block in model.blocks[:-1])
    output = model.output_head
    assert isinstance(output, DGLHead) and output.variant == "mlp" and output.mlp_layers == 2
    dense = [layer for layer in output.stack if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [4 * 512, 4 * 512, 10]
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in output.stack) == 2
    assert isinstance(kl.build_model("dgl_cnn4", "dgl", num_blocks=4, head="cnn").blocks[0].head, DGLHead)
    assert isinstance(kl.build_model("dgl_cnn4", "gll", num_blocks=4).blocks[0].head, kl.heads.LinearHead)


@pytest.mark.parametrize("head", ["mlp_sr", "cnn"])
def test_dgl_each_block_gets_only_its_own_auxiliary_loss(head):
    weight_decay = 5e-4
    model = kl.build_model(
        "dgl_cnn4", "dgl", num_blocks=4, head=head, input_shape=(16, 16, 3), num_classes=5, weight_decay=weight_decay
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 5, size=6)
    reference, leaked = [], []
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for block in model.blocks:
            h = block(h, training=True)
            decay = 0.5 * weight_decay * sum(tf.reduce_sum(v**2) for v in block.trainable_variables)
            losses.append(ce(y, block.head(h, training=True)) + decay)
    for k, block in enumerate(model.blocks):
        reference.append([g.numpy() for g in tape.gradient(losses[k], block.trainable_variables)])
        if k < len(model.blocks) - 1:
            leaked.append(tape.gradient(losses[k + 1], block.trainable_variables))
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k], atol=5e-5)
    # The next block's loss would reach block k without the cut: the test can tell.
    assert all(max(float(tf.reduce_max(tf.abs(g))) for g in grads if g is not None) > 1e-5 for grads in leaked)


def test_dgl_model_round_trips_through_keras_files(tmp_path):
    model = kl.build_model("dgl_cnn4", "dgl", num_blocks=2, head="mlp", input_shape=(16, 16, 3), num_classes=5)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    model.train_on_batch(x, np.arange(4) % 5)
    model.save(tmp_path / "dgl.keras")
    loaded = keras.saving.load_model(tmp_path / "dgl.keras")
    assert loaded.blocks[0].head.variant == "mlp"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    head = loaded.blocks[0].head
    np.testing.assert_allclose(head(loaded.blocks[0](x)), model.blocks[0].head(model.blocks[0](x)), atol=1e-5)

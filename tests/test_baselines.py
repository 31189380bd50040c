"""The papers' baselines: DGL (auxiliary nets, CNNs), against hand-written references."""

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
        (32, 32, 64), (16, 16, 128), (16, 16, 128), (8, 8, 256)]
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
    model = kl.build_model("dgl_cnn4", "dgl", num_blocks=4, head=head, input_shape=(16, 16, 3), num_classes=5,
                           weight_decay=weight_decay)
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


# -- PredSim ---------------------------------------------------------------------


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
    model = kl.build_model("dgl_cnn4", "predsim", num_blocks=2, beta=beta, input_shape=(8, 8, 3), num_classes=5,
                           output_loss=output_loss)
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
            losses.append((1 - beta) * ce(y, outputs["logits"])
                          + beta * tf.reduce_mean(tf.square(sim(outputs["similarity"]) - target)))
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
        model = kl.build_model("dgl_cnn4", "predsim", num_blocks=2, input_shape=(8, 8, 3), num_classes=5,
                               weight_decay=5e-4, output_loss=output_loss)
        for index in range(2):  # the output layer alone learns, on fixed features
            model.set_block_state(index, "frozen")
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(x, y, batch_size=64, epochs=5, verbose=0)
        logits = model.predict(x, verbose=0)
        cross_entropy[output_loss] = float(np.mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True)))
    assert cross_entropy["plain"] < 0.2
    assert cross_entropy["scaled"] > 1.0  # chance: ln 5 = 1.61


def test_predsim_options_are_validated():
    with pytest.raises(ValueError, match="beta must be a number >= 0.0 and <= 1.0, got 1.5"):
        kl.build_model("vgg8b", "predsim", num_blocks=7, beta=1.5, build=False)
    with pytest.raises(ValueError, match="Unknown output_loss 'mse'. Allowed: plain, scaled"):
        kl.build_model("vgg8b", "predsim", num_blocks=7, output_loss="mse", build=False)


# -- InfoPro ---------------------------------------------------------------------


@pytest.mark.parametrize("num_blocks, expected", [
    (2, [(5.0, 0.5)]),
    (4, [(5.0, 0.5), (2.6, 0.75), (0.2, 1.0)]),
    (16, [(5.0 * (1 - k / 14) + 0.2 * k / 14, 0.5 * (1 - k / 14) + 1.0 * k / 14) for k in range(15)]),
])
def test_infopro_lambda_interpolation(num_blocks, expected):
    method = kl.get_method("infopro", reconstruction_weights=(5.0, 0.2), aux_weights=(0.5, 1.0))
    np.testing.assert_allclose(method.interpolated_weights(num_blocks), expected)
    losses = [method.block_loss(k, num_blocks, None) for k in range(num_blocks)]
    np.testing.assert_allclose([(loss.reconstruction_weight, loss.aux_weight) for loss in losses[:-1]], expected)
    assert (losses[-1].reconstruction_weight, losses[-1].aux_weight) == (0.0, 1.0)


def test_infopro_split_tables():
    from keras_local.methods.infopro import infopro_cuts
    from keras_local.splitting import block_sizes

    # Residual blocks per module from InfoPro's configs, plus the stem in the first.
    assert block_sizes(16, infopro_cuts("resnet32", 2)) == [8, 8]
    assert block_sizes(16, infopro_cuts("resnet32", 16)) == [1] * 16
    assert block_sizes(55, infopro_cuts("resnet110", 4)) == [13, 14, 14, 14]
    assert block_sizes(55, infopro_cuts("resnet110", 16)) == [3] * 9 + [4] * 7
    assert block_sizes(55, infopro_cuts("resnet110", 4, balanced=True)) == [8, 8, 12, 27]
    model = kl.build_model("resnet110", "infopro", num_blocks=2, split="infopro_balanced", build=False)
    assert [len(b.units) for b in model.blocks] == [16, 39]
    with pytest.raises(ValueError, match="split='infopro' has no table for resnet20 with num_blocks=4"):
        kl.build_model("resnet20", "infopro", num_blocks=4, split="infopro", build=False)


def test_supervised_contrastive_loss_matches_its_formula():
    from keras_local.methods.infopro import supervised_contrastive

    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    labels = np.array([0, 1, 0, 1, 2, 0])
    loss = supervised_contrastive(z.astype("float32"), labels, temperature=0.5, base_temperature=0.5).numpy()
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = unit @ unit.T / 0.5
    expected = []
    for i in range(6):
        others = [a for a in range(6) if a != i]
        denominator = np.log(np.exp(logits[i, others]).sum())
        positives = [p for p in others if labels[p] == labels[i]]
        expected.append(-np.mean([logits[i, p] - denominator for p in positives]) if positives else 0.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_infopro_blocks_get_their_interpolated_loss():
    from keras_local.data import NORMALIZATION

    model = kl.build_model("resnet20", "infopro", cuts=[2, 6], input_shape=(8, 8, 3), num_classes=5,
                           reconstruction_weights=(2.0, 0.5), aux_weights=(0.3, 1.0))
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 4])
    mean, std = (np.array(v, "float32") for v in NORMALIZATION["cifar10"])
    image = x * std + mean  # the un-normalised image
    weights = [(2.0, 0.3), (0.5, 1.0)]
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for index, block in enumerate(model.blocks):
            h = block(h, training=True)
            outputs = block.head(h, training=True)
            if index == 2:
                losses.append(ce(y, outputs))
                continue
            recon = tf.clip_by_value(outputs["reconstruction"], 1e-7, 1 - 1e-7)
            bce = -tf.reduce_mean(image * tf.math.log(recon) + (1 - image) * tf.math.log(1 - recon))
            losses.append(weights[index][0] * bce + weights[index][1] * ce(y, outputs["logits"]))
    reference = [tape.gradient(loss, block.trainable_variables) for loss, block in zip(losses, model.blocks)]
    applied = applied_gradients(model, x, y)
    for k in range(3):
        assert_close(applied[k], [g.numpy() for g in reference[k]], atol=5e-5)
    leaked = [g for g in tape.gradient(losses[1], model.blocks[0].trainable_variables) if g is not None]
    assert max(float(tf.reduce_max(tf.abs(g))) for g in leaked) > 1e-5
    assert model.blocks[0].head.get_config()["image_shape"] == [8, 8, 3]


def test_infopro_head_and_options():
    from keras_local.methods.infopro import InfoProHead

    head = InfoProHead(10, image_shape=(32, 32, 3), aux_loss="contrast")
    outputs = head(np.ones((2, 8, 8, 64), "float32"))
    assert outputs["logits"].shape == (2, 128)  # the contrastive embedding
    reconstruction = outputs["reconstruction"].numpy()
    assert reconstruction.shape == (2, 32, 32, 3) and reconstruction.min() >= 0 and reconstruction.max() <= 1
    with pytest.raises(ValueError, match="Unknown aux_loss 'mse'"):
        kl.get_method("infopro", aux_loss="mse")
    with pytest.raises(ValueError, match="reconstruction_weights must be a pair"):
        kl.get_method("infopro", reconstruction_weights=1.0)
    with pytest.raises(ValueError, match="the pipeline's buffers do not carry"):
        kl.build_model("resnet20", "infopro", num_blocks=2, block_order="pipelined", build=False)


# -- DGL's asynchronous training with replay buffers -----------------------------


def test_replay_buffer_serves_least_used_then_freshest():
    from keras_local.asynchronous import ReplayBuffer

    buffer = ReplayBuffer(size=2, max_reuse=2)
    assert buffer.pop() is None
    for name in ("a", "b", "c"):
        buffer.push(name, 0)
    assert len(buffer) == 2  # "a", the oldest, was dropped
    assert [buffer.pop()[0] for _ in range(4)] == ["c", "b", "c", "b"]  # each used twice, then dropped
    assert buffer.pop() is None


def test_asynchronous_training_matches_the_hand_written_simulation():
    from keras_local.asynchronous import fit_asynchronous

    def make():
        keras.utils.set_random_seed(3)
        model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=5,
                               architecture_options={"hidden_units": (8, 8)})
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = rng.integers(0, 5, size=40)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = make()
    report = fit_asynchronous(model, dataset, ticks=12, buffer_size=1, max_reuse=1, slow_block=1, slowdown=2.0,
                              seed=7)
    # The same draws, written out: block 1 is drawn with probability 1/3; buffer of one batch, used once.
    reference, draws = make(), np.random.default_rng(7)
    batches, held, updates = iter(dataset.repeat()), None, [0, 0]
    for _ in range(12):
        index = int(draws.choice(2, p=[2 / 3, 1 / 3]))
        if index == 0:
            inputs, labels = next(batches)
        elif held is None:
            continue
        else:
            (inputs, labels), held = held, None
        block = reference.blocks[index]
        with tf.GradientTape() as tape:
            features = block(inputs, training=True)
            loss = ce(labels, block.head(features, training=True))
        for variable, gradient in zip(block.trainable_variables, tape.gradient(loss, block.trainable_variables)):
            variable.assign_sub(LEARNING_RATE * gradient)
        updates[index] += 1
        if index == 0:
            held = (features, labels)
    assert report["updates"] == updates and sum(report["updates"]) + sum(report["idle"]) == 12
    assert updates[0] > updates[1] > 0
    assert_close([v.numpy() for v in model.trainable_variables], [v.numpy() for v in reference.trainable_variables],
                 atol=1e-6)


def test_asynchronous_training_reports_every_block_accuracy_without_changing_the_training():
    from keras_local.asynchronous import fit_asynchronous

    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0)  # a rule the blocks can learn
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    test = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(8)
    models, reports = [], []
    for validation in (None, test):
        keras.utils.set_random_seed(3)
        model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=4,
                               architecture_options={"hidden_units": (8, 8)})
        model.compile(optimizer=keras.optimizers.SGD(0.2))
        reports.append(fit_asynchronous(model, train, ticks=12, buffer_size=2, seed=5, validation_data=validation,
                                        validation_every=None if validation is None else 5))
        models.append(model)
    plain, validated = reports
    assert plain["history"] == [] and plain["updates"] == validated["updates"]
    assert_close([v.numpy() for v in models[0].trainable_variables],
                 [v.numpy() for v in models[1].trainable_variables], atol=0)  # evaluating trains nothing
    history = validated["history"]
    assert [entry["tick"] for entry in history] == [5, 10, 12]
    assert history[-1]["updates"] == validated["updates"] and sum(history[0]["updates"]) <= 5
    final = models[1].evaluate(test, return_dict=True, verbose=0)
    for key in ("accuracy", "acc_0", "loss_0"):
        assert history[-1][key] == pytest.approx(float(final[key]))
    assert history[0]["loss_0"] != pytest.approx(history[-1]["loss_0"])  # measured while training, not after


def test_asynchronous_training_validates_its_input():
    from keras_local.asynchronous import fit_asynchronous

    model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=5,
                           architecture_options={"hidden_units": (8, 8)})
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((8, 6), "float32"), np.zeros(8, "int64"))).batch(4)
    with pytest.raises(ValueError, match="Compile the model"):
        fit_asynchronous(model, dataset, ticks=2)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="slow_block must be a block index in 0..1, got 5"):
        fit_asynchronous(model, dataset, ticks=2, slow_block=5)
    with pytest.raises(ValueError, match="slowdown must be a number >= 1, got 0.5"):
        fit_asynchronous(model, dataset, ticks=2, slowdown=0.5)
    with pytest.raises(ValueError, match="validation_every needs validation_data"):
        fit_asynchronous(model, dataset, ticks=2, validation_every=1)
    with pytest.raises(ValueError, match="validation_every must be a positive integer or None, got 0"):
        fit_asynchronous(model, dataset, ticks=2, validation_data=dataset, validation_every=0)
    bp = kl.build_model("mlp", "bp", num_blocks=2, input_shape=(6,), num_classes=5)
    bp.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="cannot train method 'bp': one loss trains every block end to end"):
        fit_asynchronous(bp, dataset, ticks=2)


def test_infopro_default_gives_the_local_block_of_k2_a_supervised_term():
    """The reference's λ for K = 2 (resnet32: ixx 5, ixy 1): the only local block learns from the
    labels too. (1, 0) / (0, 1) gave it λ2 = 0, reconstruction only, and its classifier no gradient.)"""
    model = kl.build_model("resnet8", "infopro", num_blocks=2, input_shape=(8, 8, 3), num_classes=5)
    assert model.method.interpolated_weights(2) == [(5.0, 1.0)]
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    applied = applied_gradients(model, x, np.array([0, 1, 2, 0, 1, 4]))
    classifier = {id(v) for v in model.blocks[0].head.aux.trainable_variables}
    assert max(np.abs(g).max() for g, v in zip(applied[0], model.blocks[0].trainable_variables)
               if id(v) in classifier) > 1e-4
    # The reference's per-K values, and the dataset's normalisation.
    built = kl.build_model("resnet32", "infopro", num_blocks=16, dataset="cifar100", build=False)
    assert built.method.get_config()["reconstruction_weights"] == [5.0, 0.2]
    assert built.method.get_config()["aux_weights"] == [0.05, 0.5]
    assert built.method.get_config()["image_normalization"] == "cifar100"


def test_infopro_contrast_mode_through_a_model():
    from keras_local.data import NORMALIZATION
    from keras_local.methods.infopro import supervised_contrastive

    model = kl.build_model("resnet8", "infopro", cuts=[2], input_shape=(8, 8, 3), num_classes=5,
                           aux_loss="contrast", reconstruction_weights=(1.0, 1.0), aux_weights=(0.5, 0.5))
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 4, 2, 2])
    mean, std = (np.array(v, "float32") for v in NORMALIZATION["cifar10"])
    image = x * std + mean
    with tf.GradientTape(persistent=True) as tape:
        h0 = model.blocks[0](tf.constant(x), training=True)
        outputs = model.blocks[0].head(h0, training=True)
        assert outputs["logits"].shape == (8, 128)  # the embedding
        recon = tf.clip_by_value(outputs["reconstruction"], 1e-7, 1 - 1e-7)
        bce = -tf.reduce_mean(image * tf.math.log(recon) + (1 - image) * tf.math.log(1 - recon))
        loss0 = bce + 0.5 * tf.reduce_mean(supervised_contrastive(outputs["logits"], tf.constant(y), 0.07, 0.07))
        h1 = model.blocks[1](tf.stop_gradient(h0), training=True)
        loss1 = ce(y, model.blocks[1].head(h1, training=True))
    reference = [[g.numpy() for g in tape.gradient(loss, block.trainable_variables)]
                 for loss, block in zip((loss0, loss1), model.blocks)]
    applied = applied_gradients(model, x, y)
    for k in range(2):
        assert_close(applied[k], reference[k], atol=5e-5)
    model.block_order = "sequential"  # and it trains through fit
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and np.isfinite(history.history["loss_0"][-1])

"""Associated Learning against hand-written tapes, and on a small real problem."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, assert_close, grads, tiny_batch

import keras_local as kl

mse = keras.losses.MeanSquaredError()


def tiny_associated(**options):
    model = kl.build_model(
        "mlp",
        method="associated",
        input_shape=(6,),
        num_classes=3,
        architecture_options={"hidden_units": [8, 8, 8]},
        width=4,
        **options,
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    return model


def test_each_part_gets_only_its_own_loss():
    model = tiny_associated()
    assert len(model.blocks) == len(model.extra_blocks) == 3  # one component per dense layer
    x, y = tiny_batch(12, num_classes=3, input_shape=(6,))
    with tf.GradientTape(persistent=True) as tape:
        code, codes, autoencoder = tf.one_hot(y, 3), [], []
        for block in model.extra_blocks:
            previous = tf.stop_gradient(code)
            code = block.units[0](previous)
            autoencoder.append(mse(previous, block.head(code)))
            codes.append(code)
        s, associated, through_target = tf.constant(x), [], []
        for block, t in zip(model.blocks, codes):
            s = block(tf.stop_gradient(s), training=True)
            associated.append(mse(tf.stop_gradient(t), block.head(s)))
            through_target.append(mse(t, block.head(s)))  # what a missing stop on t_i would train
    feature_reference = [grads(tape, loss, block.trainable_variables) for loss, block in zip(associated, model.blocks)]
    label_reference = [
        grads(tape, loss, block.trainable_variables) for loss, block in zip(autoencoder, model.extra_blocks)
    ]
    # Without the stops, the associated loss would reach the encoders.
    leak = tape.gradient(through_target[1], model.extra_blocks[1].trainable_variables)
    assert max(np.abs(g.numpy()).max() for g in leak if g is not None) > 1e-5

    all_blocks = model.blocks + model.extra_blocks
    before = [[v.numpy().copy() for v in block.trainable_variables] for block in all_blocks]
    model.train_step((tf.constant(x), tf.constant(y)))
    rates = [LEARNING_RATE] * 3 + [2 * LEARNING_RATE] * 3  # the autoencoders learn 2x faster
    applied = [
        [(b - v.numpy()) / rate for b, v in zip(values, block.trainable_variables)]
        for values, block, rate in zip(before, all_blocks, rates)
    ]
    for k in range(3):
        assert_close(applied[k], feature_reference[k])
        assert_close(applied[3 + k], label_reference[k])


def test_inference_is_the_composition_of_features_last_bridge_and_decoders(tmp_path):
    model = tiny_associated()
    x, _ = tiny_batch(12, num_classes=3, input_shape=(6,))
    s = tf.constant(x)
    for block in model.blocks:
        s = block(s)
    out = model.blocks[-1].head(s)
    for block in reversed(model.extra_blocks):
        out = block.head(out)
    np.testing.assert_allclose(model(x), out, atol=1e-6)
    inference = kl.export_inference_model(model)
    np.testing.assert_allclose(inference(x), out, atol=1e-6)
    # Only the effective parameters: the f_i, the last bridge and the decoders.
    effective = (
        sum(block.count_params() - block.head.count_params() for block in model.blocks)
        + model.blocks[-1].head.count_params()
        + sum(block.head.count_params() for block in model.extra_blocks)
    )
    assert inference.count_params() == effective < model.count_params()


def test_default_components_follow_the_reference():
    def sizes(architecture, **kwargs):
        model = kl.build_model(architecture, method="associated", build=False, **kwargs)
        return [len(block.units) for block in model.blocks]

    assert sizes("resnet20") == [1, 3, 3, 3]  # stem, then one component per stage
    assert sizes("resnet32") == [1, 5, 5, 5]
    assert sizes("cnn") == [2, 2, 2, 2]
    assert sizes("vgg") == [2, 2, 2, 2]
    model = kl.build_model("resnet20", method="associated", build=False)
    assert model.blocks[1].units[0].activation == "elu"
    assert isinstance(model.blocks[0].head, kl.methods.associated.Bridge) and model.blocks[0].head.width == 300
    pooled = kl.build_model("resnet20", method="associated", bridge="pooled", input_shape=(8, 8, 3))
    dense = kl.build_model("resnet20", method="associated", input_shape=(8, 8, 3))
    assert pooled.count_params() < dense.count_params()
    with pytest.raises(ValueError, match="Unknown bridge 'wide'. Allowed: dense, pooled"):
        kl.build_model("cnn", method="associated", bridge="wide")


def test_associated_learns_a_known_rule_well_above_chance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1200, 6)).astype("float32")
    y = np.argmax(x @ rng.normal(size=(6, 3)), axis=1)
    model = kl.build_model(
        "mlp",
        method="associated",
        input_shape=(6,),
        num_classes=3,
        architecture_options={"hidden_units": [64, 64]},
        width=32,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(x[:1000], y[:1000], batch_size=32, epochs=8, verbose=0)
    accuracy = model.evaluate(x[1000:], y[1000:], return_dict=True, verbose=0)["accuracy"]
    assert accuracy > 0.8, accuracy  # chance is 1/3


def test_each_level_logs_the_accuracy_of_its_bridge_decoded_by_its_decoders():
    model = tiny_associated()
    x, y = tiny_batch(12, num_classes=3, input_shape=(6,))
    model.fit(x, y, batch_size=12, epochs=2, verbose=0)
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert sorted(key for key in logs if key.startswith("acc_")) == ["acc_0", "acc_1", "acc_2"]
    # By hand: level k's prediction is h_0(...h_k(b_k(f_k(...f_0(x))))).
    features, decoders = x, [block.head for block in model.extra_blocks]
    for k, block in enumerate(model.blocks):
        features = block(features, training=False)
        scores = block.head(features, training=False)
        for decoder in reversed(decoders[: k + 1]):
            scores = decoder(scores, training=False)
        expected = np.mean(np.argmax(scores.numpy(), axis=1) == y)
        assert logs[f"acc_{k}"] == pytest.approx(expected)
    assert logs["acc_2"] == pytest.approx(logs["accuracy"])


@pytest.mark.large  # trains to an accuracy
def test_associated_learns_on_a_conv_net_well_above_chance():
    """AL's vanilla CNN on 8x8 images whose class is the brightest of three quadrants."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, size=900)
    x = rng.normal(scale=0.5, size=(900, 8, 8, 3)).astype("float32")
    for index, label in enumerate(y):
        rows, columns = [(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)), (slice(4, 8), slice(0, 4))][label]
        x[index, rows, columns] += 1.5
    model = kl.build_model("cnn", method="associated", input_shape=(8, 8, 3), num_classes=3, width=32)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    model.fit(x[:750], y[:750], batch_size=25, epochs=6, verbose=0)
    accuracy = model.evaluate(x[750:], y[750:], return_dict=True, verbose=0)["accuracy"]
    assert accuracy > 0.8, accuracy  # chance is 1/3


def test_round_trip_keeps_label_blocks_and_their_optimizers(tmp_path):
    model = tiny_associated(autoencoder_learning_rate_factor=3.0)
    x, y = tiny_batch(12, num_classes=3, input_shape=(6,))
    model.fit(x, y, epochs=1, batch_size=6, verbose=0)
    path = str(tmp_path / "al.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.method.autoencoder_learning_rate_factor == 3.0
    assert [int(b.optimizer.iterations) for b in loaded.extra_blocks] == [2, 2, 2]
    assert float(loaded.extra_blocks[0].optimizer.learning_rate) == pytest.approx(3 * LEARNING_RATE)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "architecture, options, components",
    [
        ("mlp", {"hidden_units": [12, 12]}, 2),
        ("cnn", {}, 4),
        ("resnet20", {}, 4),
        ("vgg", {"hidden_units": [16, 16]}, 4),
    ],
)
def test_the_backprop_twin_has_the_parameters_of_the_inference_path(architecture, options, components):
    # The recipes' fair-comparison rule: bp gets dense layers [5n, n] + [n] * (L - 1), the
    # last bridge and the decoders h_L .. h_2, before its classifier (h_1).
    width, shape = 8, (16, 16, 3) if architecture == "vgg" else (8, 8, 3)
    associated = kl.build_model(
        architecture, method="associated", input_shape=shape, num_classes=5, width=width, architecture_options=options
    )
    assert len(associated.blocks) == components
    twin = options.get("hidden_units", []) + [5 * width, width] + [width] * (components - 1)
    bp = kl.build_model(
        architecture,
        method="bp",
        num_blocks=1,
        input_shape=shape,
        num_classes=5,
        architecture_options={"hidden_units": twin},
    )
    assert kl.export_inference_model(associated).count_params() == bp.count_params()


def test_class_distance_ratio_matches_a_hand_computed_example():
    features = np.array([[0.0], [2.0], [10.0], [12.0]])
    result = kl.analysis.class_distance_ratio(features, np.array([0, 0, 1, 1]))
    assert result["intra_class_distance"] == pytest.approx(2.0)
    assert result["inter_class_distance"] == pytest.approx(10.0)
    assert result["ratio"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        kl.analysis.class_distance_ratio(features, np.zeros(4))


@pytest.mark.large  # a whole run of the CLI
def test_analyze_command_reports_the_ratio_and_writes_a_plot(tmp_path, capsys):
    import json

    from keras_local import cli

    model = kl.build_model(
        "cnn", method="associated", input_shape=(32, 32, 3), num_classes=10, width=16, bridge="pooled"
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(kl.data.load_dataset("cifar10_sample", "train", 64, training=True, num_examples=128), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    argv = [
        "analyze",
        "--model",
        str(tmp_path / "m.keras"),
        "--examples",
        "200",
        "--block",
        "1",
        "--plot",
        str(tmp_path / "f.png"),
    ]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["examples"] == 200 and result["ratio"] > 0
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert cli.main(["analyze", "--model", str(tmp_path / "m.keras"), "--block", "9"]) == 2

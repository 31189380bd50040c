"""DGL's asynchronous training with replay buffers (`keras_local.asynchronous`) against a hand-written simulation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, assert_close, ce

import keras_local as kl


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
        model = kl.build_model(
            "mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=5, architecture_options={"hidden_units": (8, 8)}
        )
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
        return model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = rng.integers(0, 5, size=40)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    model = make()
    report = fit_asynchronous(model, dataset, ticks=12, buffer_size=1, max_reuse=1, slow_block=1, slowdown=2.0, seed=7)
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
    assert_close(
        [v.numpy() for v in model.trainable_variables], [v.numpy() for v in reference.trainable_variables], atol=1e-6
    )


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
        model = kl.build_model(
            "mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=4, architecture_options={"hidden_units": (8, 8)}
        )
        model.compile(optimizer=keras.optimizers.SGD(0.2))
        reports.append(
            fit_asynchronous(
                model,
                train,
                ticks=12,
                buffer_size=2,
                seed=5,
                validation_data=validation,
                validation_every=None if validation is None else 5,
            )
        )
        models.append(model)
    plain, validated = reports
    assert plain["history"] == [] and plain["updates"] == validated["updates"]
    assert_close(
        [v.numpy() for v in models[0].trainable_variables], [v.numpy() for v in models[1].trainable_variables], atol=0
    )  # evaluating trains nothing
    history = validated["history"]
    assert [entry["tick"] for entry in history] == [5, 10, 12]
    assert history[-1]["updates"] == validated["updates"] and sum(history[0]["updates"]) <= 5
    final = models[1].evaluate(test, return_dict=True, verbose=0)
    for key in ("accuracy", "acc_0", "loss_0"):
        assert history[-1][key] == pytest.approx(float(final[key]))
    assert history[0]["loss_0"] != pytest.approx(history[-1]["loss_0"])  # measured while training, not after


def test_asynchronous_training_validates_its_input():
    from keras_local.asynchronous import fit_asynchronous

    model = kl.build_model(
        "mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=5, architecture_options={"hidden_units": (8, 8)}
    )
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

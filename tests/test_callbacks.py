"""Local-learning callbacks: each changes exactly what it claims, survives
BackupAndRestore and `.keras` round trips, and is reachable from TOML recipes."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import StopAtEpoch, assert_close, ce, tiny_batch, tiny_resnet

import keras_local as kl
from keras_local import callbacks as klc
from keras_local import cli


def dataset(batch_size=8, examples=16, seed=0):
    x, y = tiny_batch(examples, seed=seed)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def weights(block):
    return [v.numpy().copy() for v in block.weights]  # trainable and BN statistics


class Record(keras.callbacks.Callback):
    """Every block's weights and optimizer iterations at each epoch end."""

    def __init__(self):
        super().__init__()
        self.iterations, self.weights, self.functions = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.functions.append(self.model.train_function)

    def on_epoch_end(self, epoch, logs=None):
        self.iterations.append([int(block.optimizer.iterations) for block in self.model.blocks])
        self.weights.append([weights(block) for block in self.model.blocks])


def compiled(method="gll", optimizer=None, **options):
    keras.utils.set_random_seed(1)
    model = tiny_resnet(method, **options)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.1))
    return model


# -- block states ------------------------------------------------------------------


def test_a_frozen_block_feeds_the_next_in_inference_mode_and_learns_nothing():
    model = compiled()
    x, y = tiny_batch(8)
    model.set_block_state(0, "frozen")
    block0, block1 = model.blocks[0], model.blocks[1]
    before = [weights(block) for block in model.blocks]
    # Block 1's step, written out: its input is block 0 in inference mode (BN moving statistics).
    features = block0(tf.constant(x), training=False)
    with tf.GradientTape() as tape:
        loss = ce(y, block1.head(block1(features, training=True), training=True))
    expected = [
        v.numpy() - 0.1 * g.numpy()
        for v, g in zip(block1.trainable_variables, tape.gradient(loss, block1.trainable_variables))
    ]
    for block, values in zip(model.blocks, before):  # undo the moving statistics the reference step moved
        for variable, value in zip(block.weights, values):
            variable.assign(value)
    model.train_on_batch(x, y)
    assert_close(weights(block0), before[0], atol=0)  # weights and BN statistics did not move
    assert [int(b.optimizer.iterations) for b in model.blocks] == [0, 1, 1]
    assert_close([v.numpy() for v in block1.trainable_variables], expected)


def test_block_states_are_validated():
    model = compiled()
    with pytest.raises(ValueError, match="Unknown block state 'sleeping'. Allowed: train, frozen, idle"):
        model.set_block_state(0, "sleeping")
    with pytest.raises(ValueError, match="Block index must be in 0..2, got 3"):
        model.set_block_state(3, "frozen")
    with pytest.raises(ValueError, match="only a run of last blocks can be idle"):
        model.set_block_state(1, "idle")
    with pytest.raises(ValueError, match="'bp' backpropagates one loss end to end"):
        compiled("bp").set_block_state(0, "frozen")
    with pytest.raises(ValueError, match="has no numeric option 'alpha' to schedule; it has: none"):
        compiled().method_variable("alpha")


# -- progressive freezing -----------------------------------------------------------


def test_progressive_freezing_trains_blocks_in_order_then_stops():
    model, record = compiled(), Record()
    freezing = klc.ProgressiveFreezing(epochs_per_block=[1, 2, 1])
    history = model.fit(dataset(), epochs=10, verbose=0, callbacks=[freezing, record])
    assert len(history.epoch) == 4  # 1 + 2 + 1 epochs, then the last stage ended training
    assert record.iterations == [[2, 0, 0], [2, 2, 0], [2, 4, 0], [2, 4, 2]]
    assert_close(record.weights[3][0], record.weights[0][0], atol=0)  # block 0 frozen after epoch 0
    assert_close(record.weights[3][1], record.weights[2][1], atol=0)  # block 1 frozen after epoch 2
    assert [(s["block"], s["start_epoch"], s["end_epoch"]) for s in freezing.stages] == [
        (0, 0, 0),
        (1, 1, 2),
        (2, 3, 3),
    ]
    with pytest.raises(ValueError, match="Give exactly one of epochs_per_block"):
        klc.ProgressiveFreezing()


def test_greedy_fit_on_cached_features_makes_the_updates_of_progressive_freezing():
    model = compiled()
    model.fit(dataset(), epochs=10, verbose=0, callbacks=[klc.ProgressiveFreezing(epochs_per_block=[1, 2, 1])])
    cached = compiled()
    histories = kl.greedy.fit_greedy(cached, dataset(), epochs_per_block=[1, 2, 1])
    assert [len(h.epoch) for h in histories] == [1, 2, 1]
    assert [int(b.optimizer.iterations) for b in cached.blocks] == [2, 4, 2]
    assert cached.block_states == ["frozen", "frozen", "train"]
    assert_close(cached.get_weights(), model.get_weights(), atol=1e-5)
    with pytest.raises(ValueError, match="epochs_per_block must be a positive integer or one per block"):
        kl.greedy.fit_greedy(compiled(), dataset(), epochs_per_block=[1, 2])
    with pytest.raises(ValueError, match="cannot train method 'bp': one loss trains every block end to end"):
        kl.greedy.fit_greedy(compiled("bp"), dataset(), epochs_per_block=1)


def test_greedy_fit_refuses_backward_links_it_cannot_train():
    with pytest.raises(ValueError, match=r"cannot train method 'backlink': the tails of blocks \[0, 1\]"):
        kl.greedy.fit_greedy(compiled("backlink", alpha=0.5, propagation_length=1), dataset(), epochs_per_block=1)
    # HPFF's cascade loss links whole blocks; MAN's averages move in the model's step, not a block's.
    with pytest.raises(ValueError, match=r"cannot train method 'gll': the tails of blocks \[0, 1\]"):
        kl.greedy.fit_greedy(compiled("gll", hpff=True), dataset(), epochs_per_block=1)
    with pytest.raises(ValueError, match="cannot train method 'dgl': MAN's moving average of block k"):
        kl.greedy.fit_greedy(compiled("dgl", man=True), dataset(), epochs_per_block=1)
    with pytest.raises(ValueError, match="cannot train method 'associated': its label path"):
        associated = kl.build_model("mlp", "associated", input_shape=(8, 8, 3), num_classes=5)
        associated.compile(optimizer="sgd")
        kl.asynchronous.fit_asynchronous(associated, dataset(), ticks=1)
    histories = kl.greedy.fit_greedy(
        compiled("backlink", alpha=1.0, propagation_length=1), dataset(), epochs_per_block=1
    )  # alpha = 1 is gll: nothing is lost
    assert len(histories) == 3


def test_progressive_freezing_on_a_plateau_of_the_local_loss():
    model = compiled(optimizer=[keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.1), keras.optimizers.SGD(0.1)])
    freezing = klc.ProgressiveFreezing(patience=2)  # block 0 cannot improve (learning rate 0)
    model.fit(dataset(), epochs=3, verbose=0, callbacks=[freezing])
    assert freezing.stages == [{"block": 0, "start_epoch": 0, "end_epoch": 2}]
    assert model.block_states == ["frozen", "train", "idle"]


# -- block early stopping -----------------------------------------------------------


def test_block_early_stopping_reports_the_right_epochs_and_the_updates_saved():
    # An MLP (no BN, no dropout) on the full batch: blocks 0 and 1 cannot improve (learning rate 0, so
    # their validation losses stay the same); block 2 descends on their fixed features.
    keras.utils.set_random_seed(1)
    model = kl.build_model(
        "mlp", "gll", num_blocks=3, input_shape=(6,), num_classes=3, architecture_options={"hidden_units": (8, 8, 8)}
    )
    model.compile(optimizer=[keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.01)])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int64"))).batch(16)
    stopper, record = klc.BlockEarlyStopping(monitor="val_loss", patience=2), Record()
    history = model.fit(data, validation_data=data, epochs=5, verbose=0, callbacks=[stopper, record])
    assert stopper.stopped_epochs == {0: 2, 1: 2}  # best at epoch 0, no improvement at epochs 1 and 2
    assert record.iterations == [[1, 1, 1], [2, 2, 2], [3, 3, 3], [3, 3, 4], [3, 3, 5]]
    assert stopper.skipped_update_fraction == pytest.approx(4 / 15)  # 2 steps × 2 blocks of 5 × 3
    assert history.history["blocks_stopped"] == [0, 0, 2, 2, 2]
    assert model.block_states == ["frozen", "frozen", "train"]


def test_block_early_stopping_says_which_keys_exist():
    model = compiled()
    with pytest.raises(ValueError, match="Monitored key 'val_loss_0' is not in the epoch logs"):
        model.fit(dataset(), epochs=1, verbose=0, callbacks=[klc.BlockEarlyStopping()])


# -- per-block learning rates -------------------------------------------------------


def test_a_block_schedule_changes_only_that_blocks_learning_rate():
    model, seen = compiled(), []
    scheduler = klc.BlockLearningRateScheduler(lambda epoch, block, lr: 0.01 * (epoch + 1) if block == 1 else lr)

    class Rates(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append([float(b.optimizer.learning_rate) for b in self.model.blocks])

    history = model.fit(dataset(), epochs=2, verbose=0, callbacks=[scheduler, Rates()])
    assert seen == [pytest.approx([0.1, 0.01, 0.1]), pytest.approx([0.1, 0.02, 0.1])]
    assert history.history["lr_1"] == pytest.approx([0.01, 0.02])

    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model = compiled()
    model.fit(dataset(), epochs=1, verbose=0, callbacks=[klc.BlockLearningRateScheduler([None, decay, None])])
    # Set before each batch from the block's own step: the second batch ran at 0.1 · 0.5.
    assert [float(b.optimizer.learning_rate) for b in model.blocks] == pytest.approx([0.1, 0.05, 0.1])


def _associated(learning_rate=0.1):
    """Associated Learning on a small MLP: its label path's optimizers run at 2x the blocks' rate."""
    model = kl.build_model(
        "mlp",
        "associated",
        num_blocks=2,
        input_shape=(8, 8, 3),
        num_classes=5,
        architecture_options={"hidden_units": (16, 16)},
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    return model


def _rates(model):
    return [float(block.optimizer.learning_rate) for block in model.blocks + model.extra_blocks]


@pytest.mark.parametrize(
    "callback",
    [
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9),
        klc.BlockLearningRateScheduler(lambda epoch, block, lr: 0.05),
        klc.BlockLearningRateScheduler([keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)] * 2),
    ],
    ids=["keras-scheduler", "keras-plateau", "block-function", "block-schedules"],
)
def test_every_learning_rate_change_keeps_each_optimizers_factor(callback):
    model = _associated()
    assert _rates(model) == pytest.approx([0.1, 0.1, 0.2, 0.2])
    model.fit(dataset(), epochs=2, verbose=0, callbacks=[callback])
    blocks, label_path = _rates(model)[:2], _rates(model)[2:]
    assert blocks[0] < 0.1 and label_path == pytest.approx([2 * rate for rate in blocks])
    model.optimizer.learning_rate = 0.01
    assert _rates(model) == pytest.approx([0.01, 0.01, 0.02, 0.02])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)


def test_block_schedule_needs_float_learning_rates():
    model = compiled(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 10)))
    with pytest.raises(ValueError, match="Block 0's optimizer has a LearningRateSchedule"):
        model.fit(dataset(), epochs=1, verbose=0, callbacks=[klc.BlockLearningRateScheduler(lambda e, b, lr: lr)])


# -- method hyperparameter schedules ------------------------------------------------


def test_an_alpha_schedule_gives_the_tail_the_mix_of_each_epochs_alpha_without_retracing():
    x, y = tiny_batch(8)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    scheduled, record = compiled("backlink", alpha=0.5, propagation_length=1), Record()
    scheduler = klc.MethodHyperparameterScheduler("alpha", [0.25, 0.75, 0.75])
    history = scheduled.fit(data, epochs=3, verbose=0, callbacks=[scheduler, record])
    assert history.history["alpha"] == [0.25, 0.75, 0.75]
    assert record.functions[1] is record.functions[2]  # the new alpha is an assignment, not a new trace

    # The reference: one step at a fixed alpha of 0.25, then steps at 0.75 from those weights. Fixed-alpha
    # backlink is checked against the closed-form mix α·∂L_k + (1−α)·∂L_{k+1} in tests/methods/test_backlink.py.
    reference = compiled("backlink", alpha=0.25, propagation_length=1)
    reference.train_on_batch(x, y)
    assert_close(record.weights[0][0], [w for w in weights(reference.blocks[0])])
    later = compiled("backlink", alpha=0.75, propagation_length=1)
    later.set_weights(reference.get_weights())
    later.train_on_batch(x, y)
    later.train_on_batch(x, y)
    assert_close(record.weights[2][0], weights(later.blocks[0]))
    other = compiled("backlink", alpha=0.25, propagation_length=1)
    other.set_weights(reference.get_weights())
    other.train_on_batch(x, y)
    positions = [id(v) for v in scheduled.blocks[0].weights]
    tail = [positions.index(id(v)) for v in scheduled.blocks[0].units[-1].trainable_variables]
    changed = [not np.allclose(weights(other.blocks[0])[i], record.weights[1][0][i]) for i in tail]
    assert all(changed)  # alpha = 0.75 instead of 0.25 changed every tail parameter's update

    with pytest.raises(ValueError, match="alpha must be a number >= 0.0 and <= 1.0, got 1.5"):
        compiled("backlink").fit(
            data, epochs=1, verbose=0, callbacks=[klc.MethodHyperparameterScheduler("alpha", [1.5])]
        )


def test_a_scheduled_alpha_of_one_is_greedy_local_learning():
    x, y = tiny_batch(8)
    scheduled = compiled("backlink", alpha=0.5, propagation_length=1)
    scheduled.method_variable("alpha").assign(1.0)
    scheduled.train_on_batch(x, y)
    greedy = compiled("gll")
    greedy.train_on_batch(x, y)
    assert_close(scheduled.get_weights(), greedy.get_weights(), atol=1e-6)


def trainable(block):
    return [v.numpy().copy() for v in block.trainable_variables]


def test_lambda_and_beta_schedules_reach_the_losses():
    x, y = tiny_batch(8)
    weighted = compiled("bwbpf")
    weighted.method_variable("lambda_local").assign(0.0)  # the local heads' losses weigh nothing now
    before = [trainable(block) for block in weighted.blocks]
    weighted.train_on_batch(x, y)
    for block, values in zip(weighted.blocks[:-1], before):
        assert_close(trainable(block), values, atol=0)
    assert not np.allclose(trainable(weighted.blocks[-1])[0], before[-1][0])  # the output layer's λ_g·∇L_g

    scheduled = compiled("predsim", beta=0.99)
    scheduled.method_variable("beta").assign(0.5)  # read by the compiled PredSimLoss objects too
    scheduled.train_on_batch(x, y)
    fixed, untouched = compiled("predsim", beta=0.5), compiled("predsim", beta=0.99)
    fixed.train_on_batch(x, y)
    untouched.train_on_batch(x, y)
    assert_close(scheduled.get_weights(), fixed.get_weights(), atol=1e-6)
    assert not np.allclose(scheduled.get_weights()[0], untouched.get_weights()[0])


# -- BackupAndRestore and .keras round trips -------------------------------------------


@pytest.mark.large  # an interrupted and resumed fit
@pytest.mark.parametrize(
    "make",
    [
        lambda path: klc.BlockEarlyStopping(patience=1, backup_dir=path),
        lambda path: klc.ProgressiveFreezing(epochs_per_block=2, backup_dir=path),
    ],
)
def test_stateful_callbacks_resume_after_backup_and_restore(make, tmp_path):
    data = dataset(batch_size=16)
    optimizers = lambda: [keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.0), keras.optimizers.SGD(0.01)]  # noqa: E731
    reference, callback = compiled(optimizer=optimizers()), make(tmp_path / "reference")
    reference.fit(data, validation_data=data, epochs=5, verbose=0, callbacks=[callback])
    expected_state = callback.get_state()

    backup, state_dir = str(tmp_path / "backup"), tmp_path / "state"
    interrupted = compiled(optimizer=optimizers())
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            data,
            validation_data=data,
            epochs=5,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), make(state_dir), StopAtEpoch(3)],
        )
    resumed, callback = compiled(optimizer=optimizers()), make(state_dir)
    history = resumed.fit(
        data, validation_data=data, epochs=5, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), callback]
    )
    assert history.epoch[0] == 3  # resumed at the fourth epoch
    assert callback.get_state() == expected_state and resumed.block_states == reference.block_states
    assert_close(resumed.get_weights(), reference.get_weights(), atol=1e-6)
    assert not (state_dir / f"{type(callback).__name__}.json").exists()  # deleted once training ended


@pytest.mark.large  # an interrupted and resumed fit
def test_stateless_callbacks_give_the_same_epochs_after_a_resume(tmp_path):
    def run(directory, stop=None):
        model = compiled("backlink", alpha=0.5, propagation_length=1)
        callbacks = [
            keras.callbacks.BackupAndRestore(str(directory / "backup")),
            klc.BlockLogger(directory / "blocks", tensorboard=False),
            klc.BlockLearningRateScheduler(lambda epoch, block, lr: 0.1 / (1 + epoch + block)),
            klc.MethodHyperparameterScheduler("alpha", [0.2, 0.4, 0.6, 0.8]),
        ]
        if stop is not None:
            with pytest.raises(RuntimeError, match="interrupted"):
                model.fit(dataset(), epochs=4, verbose=0, callbacks=callbacks + [StopAtEpoch(stop)])
            model = compiled("backlink", alpha=0.5, propagation_length=1)
        history = model.fit(dataset(), epochs=4, verbose=0, callbacks=callbacks)
        return model, history

    reference, _ = run(tmp_path / "reference")
    resumed, history = run(tmp_path / "resumed", stop=2)
    assert history.epoch == [2, 3]
    assert history.history["alpha"] == pytest.approx([0.6, 0.8])
    assert history.history["lr_1"] == pytest.approx([0.1 / 4, 0.1 / 5])
    assert_close(resumed.get_weights(), reference.get_weights(), atol=1e-6)
    curves = klc.read_block_log(tmp_path / "resumed" / "blocks" / "blocks.csv")
    assert [point[0] for point in curves["0"]] == [0, 1, 2, 3]  # the whole run, each epoch once


def test_block_states_and_scheduled_values_survive_a_keras_file(tmp_path):
    model = compiled("backlink", alpha=0.5, propagation_length=1)
    model.fit(dataset(), epochs=2, verbose=0, callbacks=[klc.MethodHyperparameterScheduler("alpha", [0.3, 0.2])])
    model.set_block_state(0, "frozen")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.block_states == ["frozen", "train", "train"]
    assert loaded.method.alpha == pytest.approx(0.2) and isinstance(loaded.method.alpha, float)
    before = weights(loaded.blocks[0])
    history = loaded.fit(
        dataset(), epochs=1, verbose=0, callbacks=[klc.MethodHyperparameterScheduler("alpha", [0.1])]
    )  # carries on
    assert history.history["alpha"] == pytest.approx([0.1])
    assert_close(weights(loaded.blocks[0]), before, atol=0)


# -- logging and memory --------------------------------------------------------------


def test_block_logger_writes_every_heads_curves_csv_tensorboard_and_png(tmp_path):
    model = compiled()
    logger = klc.BlockLogger(tmp_path / "blocks")
    history = model.fit(dataset(), validation_data=dataset(seed=1), epochs=2, verbose=0, callbacks=[logger])
    with open(tmp_path / "blocks" / "blocks.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(r["epoch"], r["block"]) for r in rows] == [(str(e), b) for e in (0, 1) for b in ("0", "1", "2", "output")]
    for row in rows:
        key = "" if row["block"] == "output" else f"_{row['block']}"
        accuracy = "accuracy" if row["block"] == "output" else f"acc_{row['block']}"
        epoch = int(row["epoch"])
        assert float(row["val_accuracy"]) == pytest.approx(history.history[f"val_{accuracy}"][epoch])
        assert float(row["loss"]) == pytest.approx(history.history[f"loss{key}"][epoch])
    assert (tmp_path / "blocks" / "block_accuracy.png").stat().st_size > 0
    events = list((tmp_path / "blocks" / "tensorboard").glob("events.out.tfevents.*"))
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(str(events[0])) for value in event.summary.value}
    assert {"block_0/val_accuracy", "block_2/loss", "block_output/accuracy"} <= tags
    curves = klc.read_block_log(tmp_path / "blocks" / "blocks.csv")
    assert len(curves["1"]) == 2


def test_step_timer_logs_each_epoch():
    history = compiled().fit(dataset(), epochs=2, verbose=0, callbacks=[klc.StepTimer()])
    assert all(0 < value < 60 for value in history.history["step_seconds"])


def test_memory_monitor_measures_the_training_steps_working_memory():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4096, 64)).astype("float32"), rng.integers(0, 10, size=4096)

    def step_memory(method, num_blocks, block_order):
        model = kl.build_model(
            "mlp",
            method,
            num_blocks=num_blocks,
            input_shape=(64,),
            num_classes=10,
            block_order=block_order,
            architecture_options={"hidden_units": (256,) * 16},
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        history = model.fit(x, y, batch_size=2048, epochs=2, verbose=0, shuffle=False, callbacks=[klc.MemoryMonitor()])
        return history.history["step_memory_mib"][-1], history.history["peak_memory_mib"][-1]

    bp_step, bp_peak = step_memory("bp", 1, "together")
    gll_step, gll_peak = step_memory("gll", 8, "sequential")
    # bp keeps all 16 hidden layers' activations (2048 x 256 floats = 2 MiB each) for its backward
    # pass; sequential gll frees each 2-layer block's before the next block runs.
    assert bp_step >= 16 * 2.0, bp_step
    assert gll_step < 0.5 * bp_step, (gll_step, bp_step)
    assert bp_peak > bp_step and gll_peak > gll_step  # the absolute peak adds what stays in use


# -- TOML recipes ----------------------------------------------------------------------


@pytest.mark.large  # a whole run of the CLI
def test_callbacks_table_in_a_recipe(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'method = "backlink"\nnum_blocks = 2\nepochs = 2\ntrain_examples = 64\ntest_examples = 64\n'
        'batch_size = 32\neval_batch_size = 64\nverbose = 0\nlr_schedule = "cosine"\n\n'
        "[callbacks]\nblock_logger = true\nmemory_monitor = true\nstep_timer = true\n"
        "block_early_stopping = {patience = 5}\nblock_learning_rate = {multipliers = [1.0, 0.5]}\n"
        'method_schedule = {name = "alpha", values = [1.0, 0.5]}\n'
    )
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(recipe), "--run-dir", str(run)]) == 0
    with open(run / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert {"lr_0", "lr_1", "alpha", "peak_memory_mib", "step_seconds", "blocks_stopped"} <= set(rows[0])
    assert [float(r["alpha"]) for r in rows] == [1.0, 0.5]
    assert [float(r["lr_1"]) / float(r["lr_0"]) for r in rows] == pytest.approx([0.5, 0.5])
    assert float(rows[1]["lr_0"]) < float(rows[0]["lr_0"])  # the recipe's cosine decay, per block
    assert (run / "blocks" / "blocks.csv").exists() and (run / "blocks" / "block_accuracy.png").exists()
    assert json.loads((run / "summary.json").read_text())["method"] == "backlink"


@pytest.mark.parametrize(
    "table, message",
    [
        ("{early = true}", "Unknown [callbacks] entry ['early']. Allowed: block_logger"),
        ("{block_early_stopping = {patience = 0}}", "patience must be a positive integer, got 0"),
        ("{block_early_stopping = {wait = 1}}", "[callbacks] block_early_stopping:"),
        ("{block_learning_rate = {multipliers = [1.0]}}", "needs multipliers = [one number per block (4)]"),
        ('{method_schedule = {name = "alpha"}}', "method_schedule needs name and values"),
    ],
)
def test_bad_callbacks_table_fails_before_training(table, message, tmp_path, capsys):
    assert cli.main(["train", "--set", f"callbacks={table}", "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_package_exports_callbacks():
    assert kl.callbacks.BlockLogger is klc.BlockLogger


def test_a_logged_loss_is_named_in_words_with_the_methods_extra_loss():
    assert klc.describe_loss("loss") == "the output loss"
    assert klc.describe_loss("loss_2") == "block 2's loss"
    assert klc.describe_loss("autoencoder_loss_1", "autoencoder_loss") == "extra block 1's autoencoder loss"
    assert klc.describe_loss("autoencoder_loss_1") == "'autoencoder_loss_1'"  # without the method's name

"""`train_and_evaluate`: one run from a config to a run directory.

Also the glue from a config to Keras objects: `callbacks_from_config` (the
`[callbacks]` table), `make_learning_rate` and `make_optimizer`.
"""

import csv
import os
import platform
import shutil
import time
import tomllib

import keras
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_local
from keras_local import cluster, data
from keras_local.builder import build_model_from_config
from keras_local.callbacks import (
    BlockEarlyStopping,
    BlockLearningRateScheduler,
    BlockLogger,
    MemoryMonitor,
    MethodHyperparameterScheduler,
    NonFiniteLossError,
    ProgressiveFreezing,
    StepTimer,
    TerminateOnNonFiniteLoss,
)
from keras_local.checkpoint import CheckpointError, RunCheckpoint
from keras_local.config import DEFAULTS, rename_legacy_keys, to_toml
from keras_local.export import export_inference_model
from keras_local.files import atomic_path, read_json, write_json, write_text
from keras_local.optimizers import ScaledLearningRate, named_optimizer

CALLBACKS = (
    "block_logger",
    "memory_monitor",
    "step_timer",
    "block_early_stopping",
    "progressive_freezing",
    "block_learning_rate",
    "method_schedule",
)


def callbacks_from_config(table, run_dir, learning_rate=None, num_blocks=None):
    """The callbacks a `[callbacks]` table declares (see the README). The
    block logger comes first, so that it records the block states an epoch
    ran with before the freezing callbacks change them at its end.
    `learning_rate` is the recipe's rate or schedule, which
    `block_learning_rate = {multipliers = [...]}` scales per block."""
    unknown = sorted(set(table) - set(CALLBACKS))
    if unknown:
        raise ValueError(
            f"Unknown [callbacks] entr{'y' if len(unknown) == 1 else 'ies'} {unknown}. Allowed: {', '.join(CALLBACKS)}."
        )

    def options(name):
        value = table[name]
        if value is True:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"[callbacks] {name} must be true or a table of options, got {value!r}.")
        return dict(value)

    def build(name, factory, **fixed):
        try:
            return factory(**fixed, **options(name))
        except TypeError as error:
            raise ValueError(f"[callbacks] {name}: {error}") from None

    backup = os.path.join(run_dir, "backup_callbacks")
    result = []
    if table.get("block_learning_rate"):
        multipliers = options("block_learning_rate").pop("multipliers", None)
        if not isinstance(multipliers, list) or (num_blocks is not None and len(multipliers) != num_blocks):
            raise ValueError(
                f"[callbacks] block_learning_rate needs multipliers = [one number per block"
                f"{f' ({num_blocks})' if num_blocks else ''}], got {multipliers!r}."
            )
        result.append(BlockLearningRateScheduler(_scaled_schedules(learning_rate, multipliers)))
    if table.get("method_schedule"):
        settings = options("method_schedule")
        if set(settings) != {"name", "values"}:
            raise ValueError(f"[callbacks] method_schedule needs name and values (per epoch), got {settings!r}.")
        result.append(MethodHyperparameterScheduler(settings["name"], settings["values"]))
    if table.get("progressive_freezing"):
        result.append(build("progressive_freezing", ProgressiveFreezing, backup_dir=backup))
    if table.get("block_early_stopping"):
        result.append(build("block_early_stopping", BlockEarlyStopping, backup_dir=backup))
    if table.get("memory_monitor"):
        result.insert(0, build("memory_monitor", MemoryMonitor))
    if table.get("step_timer"):
        result.insert(0, build("step_timer", StepTimer))
    if table.get("block_logger"):
        result.insert(0, build("block_logger", BlockLogger, log_dir=os.path.join(run_dir, "blocks")))
    return result


def _scaled_schedules(learning_rate, multipliers):

    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return [ScaledLearningRate(learning_rate, factor) for factor in multipliers]
    return lambda epoch, block, current: float(learning_rate) * multipliers[block]


def make_learning_rate(config, steps_per_epoch):
    """The learning rate (a float or a schedule) the config describes."""
    learning_rate = config["learning_rate"]
    if config["lr_schedule"] == "cosine":
        warmup_steps = config["warmup_epochs"] * steps_per_epoch
        start = config["warmup_learning_rate"] if warmup_steps else learning_rate
        learning_rate = keras.optimizers.schedules.CosineDecay(
            start,
            decay_steps=config["epochs"] * steps_per_epoch - warmup_steps,
            alpha=config["final_learning_rate"] / learning_rate,
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    elif config["lr_schedule"] == "piecewise":
        total = config["epochs"] * steps_per_epoch
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(fraction * total) for fraction in config["lr_boundaries"]],
            [learning_rate * multiplier for multiplier in config["lr_multipliers"]],
        )
    return learning_rate


def make_optimizer(config, steps_per_epoch, learning_rate=None):
    """The optimizer the config describes (cloned per block by `compile`), at
    `learning_rate` when given (default: `make_learning_rate`)."""
    if learning_rate is None:
        learning_rate = make_learning_rate(config, steps_per_epoch)
    return named_optimizer(config["optimizer"], learning_rate, config["momentum"], config["nesterov"])


def versions():

    return {
        "keras_local": keras_local.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_datasets": tfds.__version__,
        "python": platform.python_version(),
    }


def default_run_dir(config):
    return os.path.join(
        "runs",
        f"{config['architecture'].replace(':', '.')}-{config['method']}-k{config['num_blocks']}-{config['dataset']}",
    )


class TrainingDiverged(RuntimeError):
    """A run stopped on a non-finite loss; its last good checkpoint is kept."""


# Files and folders a run writes: --overwrite removes these, and only these.
RUN_FILES = (
    "config.toml",
    "versions.json",
    "history.csv",
    "model.keras",
    "inference.keras",
    "summary.json",
    "backup",
    "backup_callbacks",
    "blocks",
    "tensorboard",
)
# Keys that change how a run reports or saves, not what it computes: a resumed run may change them.
# Keys that change how a run is reported or where it runs, not what it computes.
REPORTING_KEYS = ("run_dir", "verbose", "tensorboard", "checkpoint_every", "remote_workers")


def previous_run(config, run_dir, overwrite=False):
    """The summary of a run already in `run_dir` (None if there is none, or if it
    is unfinished and may be resumed). Refuses a run folder that holds a run
    of another config, before anything is written."""
    path = os.path.join(run_dir, "config.toml")
    if overwrite or not os.path.exists(path):
        return None
    with open(path, "rb") as file:
        try:
            saved = rename_legacy_keys(tomllib.load(file))
        except tomllib.TOMLDecodeError:
            saved = {}
    current = tomllib.loads(to_toml(config))
    # A key added to DEFAULTS after the run was written reads as its default (the value the run had).
    saved = {**{key: value for key, value in DEFAULTS.items() if key in current and key not in saved}, **saved}
    changed = [
        key
        for key in sorted(set(saved) | set(current))
        if key not in REPORTING_KEYS and saved.get(key) != current.get(key)
    ]
    if changed:
        shown = "; ".join(f"{key}: {saved.get(key, 'unset')!r} -> {current.get(key, 'unset')!r}" for key in changed[:6])
        raise ValueError(
            f"{run_dir!r} holds a run of another config ({shown}{'; ...' if len(changed) > 6 else ''}); "
            f"pass --run-dir NEW_FOLDER for a new run, or --overwrite to replace it."
        )
    summary_path = os.path.join(run_dir, "summary.json")
    return read_json(summary_path) if os.path.exists(summary_path) else None


def check_writable(run_dir):
    """Creates `run_dir` and checks a file can be written in it (a clear
    error for a read-only folder, before training)."""
    try:
        os.makedirs(run_dir, exist_ok=True)
        write_text(os.path.join(run_dir, ".write-check"), "")
        os.remove(os.path.join(run_dir, ".write-check"))
    except OSError as error:
        raise ValueError(f"Cannot write to the run folder {run_dir!r}: {error.strerror or error}.") from None


def _clear(run_dir):
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _trim_history(path, epoch):
    """Keeps the rows of `history.csv` for epochs before `epoch` (a kill
    between an epoch's row and its checkpoint would repeat it)."""
    if not os.path.exists(path):
        return
    if epoch == 0:
        os.remove(path)
        return
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epoch]
    if len(kept) != len(rows):
        with atomic_path(path) as partial, open(partial, "w", newline="") as file:
            csv.writer(file).writerows(kept)


class _ContinuedFit(keras.callbacks.CallbackList):
    """The callbacks of `parts` `fit` calls that continue one another (one
    per epoch): they see one training, with one `on_train_begin` and one
    `on_train_end`."""

    def __init__(self, callbacks, parts, **kwargs):
        super().__init__(callbacks, **kwargs)
        self._parts, self._done = parts, 0

    def on_train_begin(self, logs=None):
        if self._done == 0:
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        self._done += 1
        if self._done == self._parts:
            super().on_train_end(logs)


def train_and_evaluate(config, run_dir=None, overwrite=False, callbacks=()):
    """Trains and evaluates the model a resolved config describes.

    Writes to `run_dir`: `config.toml` (resolved), `versions.json`,
    `history.csv` (per-epoch, per-block metrics), `model.keras`,
    `inference.keras` (plain Keras, see `export_inference_model`) and
    `summary.json`; each is written under a temporary name and renamed, so
    none is ever half-written. `backup/` holds a `RunCheckpoint` (every
    `checkpoint_every` batches and at every epoch end): re-running an
    interrupted command resumes at the batch it stopped at, with every
    block's optimizer state, and ends with the weights an uninterrupted run
    has. Re-running a finished command returns its summary
    (`"already_finished": True`) unless `overwrite`; a run folder that holds
    another config is refused. A nan or infinite loss (any block's) stops
    training: `summary.json` says where (`status = "diverged"`), the last
    good checkpoint stays in `backup/`, and `TrainingDiverged` is raised.
    `callbacks` are added to the run's own.

    With `TF_CONFIG` set (see `keras_local.cluster`), this process is one
    worker of a `MultiWorkerMirroredStrategy` run: `batch_size` is the global
    batch, each worker trains on its share; the chief writes `run_dir`, the
    other workers write to temporary folders (deleted at the end) and resume
    from the chief's checkpoint.

    Returns the summary dict (`test_accuracy`, per-block accuracies, ...).
    """
    start = time.time()
    # Before any TensorFlow operation; the default (no-op) strategy without a cluster.
    strategy = cluster.strategy_from_environment()
    if config["strategy"] == "mirrored":
        if strategy is not None or config["remote_workers"] or config["devices"]:
            raise ValueError(
                'strategy = "mirrored" trains data-parallel over this machine\'s GPUs in one process; it cannot be '
                "combined with TF_CONFIG (a multi-worker run), remote_workers or devices (blocks placed by hand)."
            )
        strategy = tf.distribute.MirroredStrategy()
    strategy = strategy or tf.distribute.get_strategy()
    if config["remote_workers"]:
        if cluster.cluster_config() is not None:
            raise ValueError(
                "remote_workers puts blocks on other machines' TensorFlow servers; it cannot be "
                "combined with a multi-worker run (TF_CONFIG)."
            )
        devices = cluster.connect({"worker": list(config["remote_workers"])})
        config = {**config, "devices": config["devices"] or devices}
    run_dir = run_dir or config["run_dir"] or default_run_dir(config)
    config = {**config, "run_dir": run_dir}
    # Everything that can be wrong with the config, the data or the run folder fails here, before training.
    input_shape, num_classes = data.dataset_info(config["dataset"], config["data_dir"])
    for split in (config["train_split"], config["test_split"]):
        data.check_files(config["dataset"], split, config["data_dir"])
    summary = previous_run(config, run_dir, overwrite)
    if summary is not None and summary.get("status", "finished") == "diverged":
        raise TrainingDiverged(f"{summary['error']} (an earlier run; pass --overwrite to train again)")
    if summary is not None:
        return {**summary, "already_finished": True}
    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        model = build_model_from_config(config, input_shape, num_classes)
    epochs = data.TrainingEpochs(
        config["dataset"],
        config["train_split"],
        config["batch_size"],
        config["data_dir"],
        config["train_examples"],
        config["seed"],
    )
    steps_per_epoch = epochs.steps
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={config['batch_size']} is larger than the training split: no full batch.")
    learning_rate = make_learning_rate(config, steps_per_epoch)
    # A worker other than the chief writes what every worker writes (saving may need them all) to a
    # temporary folder; it reads the chief's run folder.
    write_dir = cluster.worker_path(run_dir)
    local_callbacks = callbacks_from_config(config["callbacks"], write_dir, learning_rate, len(model.blocks))
    per_block = any(isinstance(c, BlockLearningRateScheduler) for c in local_callbacks)
    # Per-block schedules set each optimizer's (float) rate at every batch.
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(
                config, steps_per_epoch, learning_rate=config["learning_rate"] if per_block else learning_rate
            ),
            jit_compile=config["jit_compile"],
        )
    check_writable(write_dir)
    if overwrite and write_dir == run_dir:
        _clear(run_dir)
    write_text(os.path.join(write_dir, "config.toml"), to_toml(config))
    write_json(os.path.join(write_dir, "versions.json"), versions())
    test = cluster.shard_by_example(
        data.load_dataset(
            config["dataset"],
            config["test_split"],
            config["eval_batch_size"],
            data_dir=config["data_dir"],
            num_examples=config["test_examples"],
        )
    )
    checkpoint = RunCheckpoint(
        os.path.join(write_dir, "backup"),
        every=config["checkpoint_every"],
        restore_from=os.path.join(run_dir, "backup") if not overwrite else None,
    )
    try:
        first_epoch, first_batch = checkpoint.restore(model)
    except CheckpointError as error:
        raise CheckpointError(f"{error} Pass --overwrite to start the run afresh.") from None
    history = os.path.join(write_dir, "history.csv")
    _trim_history(history, first_epoch)
    run_callbacks = [
        TerminateOnNonFiniteLoss(),  # first: nothing after it sees a diverged batch
        *local_callbacks,  # before the CSV: their log entries (lr_k, peak_memory_mib, ...) reach it
        *callbacks,
        keras.callbacks.CSVLogger(history, append=True),
        checkpoint,
    ]
    if config["tensorboard"]:
        run_callbacks.append(keras.callbacks.TensorBoard(os.path.join(write_dir, "tensorboard")))
    if first_batch:  # the checkpoint puts the resumed epoch's running metrics back: build them all first
        model.evaluate(test.take(1), verbose=0)
    verbose = config["verbose"]
    # One fit per epoch, each on that epoch's batches (a function of seed and epoch): the first may
    # resume inside its epoch. The callbacks see one training.
    run_callbacks = _ContinuedFit(
        run_callbacks,
        config["epochs"] - first_epoch,
        add_history=True,
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=config["epochs"],
        steps=steps_per_epoch,
        model=model,
    )
    validate = config["validation_freq"] > 0
    try:
        for epoch in range(first_epoch, config["epochs"]):
            skip = first_batch if epoch == first_epoch else 0
            model.fit(
                cluster.shard_by_example(epochs(epoch, initial_batch=skip)),
                steps_per_epoch=steps_per_epoch - skip,
                initial_epoch=epoch,
                epochs=epoch + 1,
                validation_data=test if validate else None,
                validation_freq=max(config["validation_freq"], 1),
                callbacks=run_callbacks,
                verbose=verbose,
                shuffle=False,
            )
    except NonFiniteLossError as error:
        batch = error.batch + 1 + (first_batch if error.epoch == first_epoch else 0)
        step = error.epoch * steps_per_epoch + batch
        saved = checkpoint.state()
        kept = (
            f"the last good checkpoint (step {saved['step']}) is kept in {checkpoint.directory}"
            if saved
            else "no checkpoint was saved before it"
        )
        message = (
            f"{error.description} became {error.value} at step {step} (epoch {error.epoch + 1}, batch {batch}); {kept}"
        )
        write_json(
            os.path.join(write_dir, "summary.json"),
            {
                "status": "diverged",
                "error": message,
                "loss": error.key,
                "step": step,
                "epoch": error.epoch + 1,
                "checkpoint_step": saved["step"] if saved else None,
                **_identity(config, model),
                "run_dir": run_dir,
            },
        )
        raise TrainingDiverged(message) from None
    results = model.evaluate(test, return_dict=True, verbose=0)
    with atomic_path(os.path.join(write_dir, "model.keras")) as partial:
        model.save(partial)
    with atomic_path(os.path.join(write_dir, "inference.keras")) as partial:
        export_inference_model(model, partial, normalization=data.normalization(config["dataset"]))
    summary = {
        "status": "finished",
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "block_accuracies": {key: float(value) for key, value in results.items() if key.startswith("acc_")},
        **_identity(config, model),
        "seconds": round(time.time() - start, 1),
        "run_dir": run_dir,
    }
    write_json(os.path.join(write_dir, "summary.json"), summary)
    shutil.rmtree(checkpoint.directory, ignore_errors=True)
    if write_dir != run_dir:
        shutil.rmtree(write_dir, ignore_errors=True)
    return summary


def _identity(config, model):
    return {
        "architecture": config["architecture"],
        "method": config["method"],
        "num_blocks": len(model.blocks),
        "dataset": config["dataset"],
        "epochs": config["epochs"],
    }

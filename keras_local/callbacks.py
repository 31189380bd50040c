"""Local-learning callbacks for `model.fit`: they know a LocalModel is made of
blocks, each with its own optimizer, head and loss.

- `BlockLogger`: per-block loss / accuracy (train and validation) to a CSV,
  TensorBoard scalars grouped per block, and a PNG of every head's accuracy.
- `BlockLearningRateScheduler`: a learning-rate schedule per block.
- `ProgressiveFreezing`: train the blocks in order, each until a criterion,
  then freeze it (DGL's sequential greedy baseline).
- `BlockEarlyStopping`: stop updating a block whose local validation loss no
  longer improves; reports when and the share of block updates saved.
- `MethodHyperparameterScheduler`: change BackLink's α, BWBPF's λ or
  PredSim's β during training, without retracing every step.
- `MemoryMonitor`: each epoch's training-step memory (working and absolute peak) in the logs.
- `StepTimer`: the median training-step time of each epoch in the logs.
- `TerminateOnNonFiniteLoss`: stop at the first batch where any loss is nan or infinite.

A run configuration's `[callbacks]` table becomes these callbacks in
`keras_local.train.callbacks_from_config`.

Stateful callbacks take `backup_dir`: their state is written there at every
epoch end and read back at the start of `fit`, so that a run resumed by
`keras.callbacks.BackupAndRestore` carries on where it stopped; it is deleted
when training ends normally, as BackupAndRestore deletes its own.

Example (the classes' examples below reuse its `model`, `train` and `test`):

```python
model = kl.build_model("resnet8", "backlink", num_blocks=2, alpha=0.5)
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
train = kl.data.load_dataset("cifar10_sample", "train", batch_size=128, training=True, num_examples=512)
test = kl.data.load_dataset("cifar10_sample", "test", batch_size=500, num_examples=500)
callbacks = [
    keras.callbacks.BackupAndRestore("runs/x/backup"),
    kl.callbacks.BlockLogger("runs/x/blocks"),
    kl.callbacks.BlockEarlyStopping(patience=3, backup_dir="runs/x/backup_callbacks"),
    kl.callbacks.MethodHyperparameterScheduler("alpha", [1.0, 0.75, 0.5, 0.25]),
    kl.callbacks.MemoryMonitor(),
]
model.fit(train, validation_data=test, epochs=2, callbacks=callbacks)
```
"""

import csv
import math
import os
import statistics
import time

import keras
import tensorflow as tf

from keras_local import plots, profiling
from keras_local.files import read_json, write_json
from keras_local.optimizers import _inner


def _block_keys(model):
    """`(block index, loss key, accuracy key)` of every block whose head is logged."""
    return [(index, f"loss_{index}", f"acc_{index}") for index in model.logged_blocks]


class _StatefulCallback(keras.callbacks.Callback):
    """A callback whose state survives an interrupted `fit` (see the module doc)."""

    def __init__(self, backup_dir=None):
        super().__init__()
        self.backup_dir = None if backup_dir is None else os.fspath(backup_dir)

    @property
    def _state_path(self):
        return os.path.join(self.backup_dir, f"{type(self).__name__}.json")

    def get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError

    def _restore(self):
        if self.backup_dir is not None and os.path.exists(self._state_path):
            self.set_state(read_json(self._state_path))
            return True
        return False

    def _save(self):
        if self.backup_dir is not None:
            os.makedirs(self.backup_dir, exist_ok=True)
            write_json(self._state_path, self.get_state())

    def _delete(self):
        if self.backup_dir is not None and os.path.exists(self._state_path):
            os.remove(self._state_path)


def _check_local_model(callback, model):
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(callback).__name__} needs a keras_local LocalModel, got {type(model).__name__}.")


# -- per-block logging ----------------------------------------------------------


class BlockLogger(keras.callbacks.Callback):
    """Writes every block head's loss and accuracy per epoch.

    Under `log_dir`: `blocks.csv` (one row per epoch and block: `epoch`,
    `block`, `state`, `loss`, `accuracy`, `val_loss`, `val_accuracy`; the
    network's output is the block `output`), TensorBoard scalars
    `block_k/loss`, `block_k/accuracy`, `block_k/val_loss`, ... (one group per
    block) under `log_dir/tensorboard`, and `block_accuracy.png` (matplotlib,
    when installed): each head's validation (solid) and training (dashed)
    accuracy over the epochs — where information is lost along the depth.
    A resumed run appends to the CSV and plots the whole run.

    Example:

    ```python
    model.fit(train, validation_data=test, epochs=1, callbacks=[kl.callbacks.BlockLogger("runs/x/blocks")])
    ```
    """

    FIELDS = ("epoch", "block", "state", "loss", "accuracy", "val_loss", "val_accuracy")

    def __init__(self, log_dir, tensorboard=True, plot=True):
        super().__init__()
        self.log_dir, self.tensorboard, self.plot = os.fspath(log_dir), tensorboard, plot
        self._writer = None

    @property
    def csv_path(self):
        return os.path.join(self.log_dir, "blocks.csv")

    @property
    def plot_path(self):
        return os.path.join(self.log_dir, "block_accuracy.png")

    def on_train_begin(self, logs=None):
        _check_local_model(self, self.model)
        os.makedirs(self.log_dir, exist_ok=True)
        if self.tensorboard and self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "tensorboard"))

    def rows(self, epoch, logs):
        """This epoch's rows (dicts with `FIELDS`), from Keras' epoch logs."""
        entries = [(str(index), self.model.block_states[index], loss, accuracy)
                   for index, loss, accuracy in _block_keys(self.model)]
        entries.append(("output", self.model.block_states[-1], "loss", "accuracy"))
        rows = []
        for block, state, loss, accuracy in entries:
            row = {"epoch": epoch, "block": block, "state": state}
            for field, key in (("loss", loss), ("accuracy", accuracy), ("val_loss", f"val_{loss}"),
                               ("val_accuracy", f"val_{accuracy}")):
                value = logs.get(key)
                row[field] = None if value is None else float(value)
            if state != "train":  # a frozen or idle block's training metrics saw no batch
                row["loss"] = row["accuracy"] = None
            rows.append(row)
        return rows

    def on_epoch_end(self, epoch, logs=None):
        rows = self.rows(epoch, logs or {})
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerows(rows)
        if self._writer is not None:
            with self._writer.as_default():
                for row in rows:
                    for field in ("loss", "accuracy", "val_loss", "val_accuracy"):
                        if row[field] is not None:
                            tf.summary.scalar(f"block_{row['block']}/{field}", row[field], step=epoch)
            self._writer.flush()
        if self.plot:
            try:
                plots.plot_block_accuracy(self.csv_path, self.plot_path)
            except ImportError:
                self.plot = False

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_block_log(path):
    """`blocks.csv` as `{block: [(epoch, accuracy, val_accuracy), ...]}`."""
    curves = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            value = [int(row["epoch"])] + [float(row[k]) if row[k] not in ("", None) else math.nan
                                           for k in ("accuracy", "val_accuracy")]
            curves.setdefault(row["block"], {})[value[0]] = tuple(value)  # a resumed epoch replaces its row
    return {block: [points[epoch] for epoch in sorted(points)] for block, points in curves.items()}


# -- per-block learning rates ---------------------------------------------------


class BlockLearningRateScheduler(keras.callbacks.Callback):
    """A learning-rate schedule per block, applied to that block's optimizer only.

    `schedule` is either a function `(epoch, block_index, learning_rate) ->
    learning_rate`, called at the start of every epoch, or a list with one
    `keras.optimizers.schedules.LearningRateSchedule` (or None: leave the
    block alone) per block, evaluated at every batch at the block's own
    optimizer step. The optimizers need a plain (float) learning rate. Logs
    `lr_k` at every epoch end. It holds no state of its own: on resume the
    epoch and each optimizer's `iterations` give the same rates.

    Example:

    ```python
    halve_deep_blocks = kl.callbacks.BlockLearningRateScheduler(
        lambda epoch, block, lr: 0.1 * (0.5 if block >= 1 else 1.0) * 0.95 ** epoch)
    model.fit(train, epochs=1, callbacks=[halve_deep_blocks])
    [float(block.optimizer.learning_rate) for block in model.blocks]   # [0.1, 0.05]
    ```
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule) and not isinstance(schedule, (list, tuple)):
            raise ValueError(f"schedule must be a function (epoch, block, lr) -> lr or a list of "
                             f"LearningRateSchedule, got {schedule!r}.")
        if isinstance(schedule, (list, tuple)):
            for item in schedule:
                if item is not None and not isinstance(item, keras.optimizers.schedules.LearningRateSchedule):
                    raise ValueError(f"schedule list items must be LearningRateSchedule or None, got {item!r}.")
        self.schedule, self.verbose = schedule, verbose

    def _optimizers(self):
        """(block index, optimizer) of every block, then of each extra block (Associated Learning's
        label path: extra block k follows block k's schedule at its own learning-rate factor)."""
        num_blocks = len(self.model.blocks)
        return [
            (position % num_blocks, optimizer) for position, optimizer in enumerate(self.model.optimizer.optimizers)
        ]

    def on_train_begin(self, logs=None):
        _check_local_model(self, self.model)
        if isinstance(self.schedule, (list, tuple)) and len(self.schedule) != len(self.model.blocks):
            raise ValueError(f"Got {len(self.schedule)} schedules for {len(self.model.blocks)} blocks.")
        for index, optimizer in self._optimizers():
            if isinstance(_inner(optimizer).get_config()["learning_rate"], dict):  # a serialized schedule
                raise ValueError(
                    f"Block {index}'s optimizer has a LearningRateSchedule; compile with a float learning rate "
                    f"for BlockLearningRateScheduler to set it."
                )

    def on_epoch_begin(self, epoch, logs=None):
        if callable(self.schedule) and not isinstance(self.schedule, (list, tuple)):
            for position, (index, optimizer) in enumerate(self._optimizers()):
                value = self.schedule(epoch, index, float(optimizer.learning_rate))
                optimizer.learning_rate = float(value)  # × the optimizer's factor, where it has one
                if self.verbose and position < len(self.model.blocks):
                    print(f"Epoch {epoch + 1}: block {index} learning rate {float(value):.6g}.")

    def on_train_batch_begin(self, batch, logs=None):
        if isinstance(self.schedule, (list, tuple)):
            for index, optimizer in self._optimizers():
                if self.schedule[index] is not None:
                    optimizer.learning_rate = float(self.schedule[index](optimizer.iterations))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for index, optimizer in self._optimizers()[:len(self.model.blocks)]:
                logs[f"lr_{index}"] = float(optimizer.learning_rate)


# -- freezing and early stopping of blocks ----------------------------------------


class _Plateau:
    """Best value and epochs without an improvement of `min_delta` (lower is better)."""

    @staticmethod
    def update(best, wait, value, min_delta):
        if best is None or value < best - min_delta:
            return value, 0
        return best, wait + 1


def _monitored(logs, key):
    if key not in logs:
        raise ValueError(f"Monitored key {key!r} is not in the epoch logs; they have: {', '.join(sorted(logs))}.")
    return float(logs[key])


class ProgressiveFreezing(_StatefulCallback):
    """Trains the blocks in order (greedy sequential training), each until a
    criterion, then freezes it and moves on.

    During block s's stage, blocks before s are frozen (forward only, in
    inference mode: no head, no update), block s trains and the blocks after
    it are idle (not run at all). A stage ends after `epochs_per_block`
    epochs (an int, or one per block) or when the block's local loss
    (`monitor`, e.g. `loss_k` for `"loss"` or `val_loss_k` for
    `"val_loss"`) has not improved by `min_delta` for `patience` epochs.
    When the last block's stage ends, training stops. `stages` records
    `{"block", "start_epoch", "end_epoch"}` of every stage.

    Example:

    ```python
    model.fit(train, epochs=1 * len(model.blocks),
              callbacks=[kl.callbacks.ProgressiveFreezing(epochs_per_block=1)])
    ```
    """

    def __init__(self, epochs_per_block=None, patience=None, monitor="loss", min_delta=0.0, backup_dir=None):
        super().__init__(backup_dir)
        if (epochs_per_block is None) == (patience is None):
            raise ValueError("Give exactly one of epochs_per_block (a number of epochs) and patience (a plateau).")
        if epochs_per_block is not None:
            values = epochs_per_block if isinstance(epochs_per_block, (list, tuple)) else [epochs_per_block]
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f"epochs_per_block must be a positive integer or a list of them, "
                                 f"got {epochs_per_block!r}.")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be a positive integer, got {patience!r}.")
        self.epochs_per_block, self.patience = epochs_per_block, patience
        self.monitor, self.min_delta = monitor, float(min_delta)
        self.stage, self.stage_start, self.best, self.wait, self.stages = 0, 0, None, 0, []

    def get_state(self):
        return {"stage": self.stage, "stage_start": self.stage_start, "best": self.best, "wait": self.wait,
                "stages": self.stages}

    def set_state(self, state):
        self.stage, self.stage_start = state["stage"], state["stage_start"]
        self.best, self.wait, self.stages = state["best"], state["wait"], state["stages"]

    def _epochs_for(self, block):
        if isinstance(self.epochs_per_block, (list, tuple)):
            return self.epochs_per_block[block]
        return self.epochs_per_block

    def _apply(self):
        """Blocks before the stage frozen, the stage's block training, the rest idle."""
        num_blocks = len(self.model.blocks)
        for index in reversed(range(self.stage + 1, num_blocks)):  # from the end: idle stays a run of last blocks
            self.model.set_block_state(index, "idle")
        for index in range(self.stage):
            self.model.set_block_state(index, "frozen")
        self.model.set_block_state(self.stage, "train")

    def on_train_begin(self, logs=None):
        _check_local_model(self, self.model)
        if isinstance(self.epochs_per_block, (list, tuple)) and len(self.epochs_per_block) != len(self.model.blocks):
            raise ValueError(f"epochs_per_block has {len(self.epochs_per_block)} entries for "
                             f"{len(self.model.blocks)} blocks.")
        if not self._restore():
            self.stage, self.stage_start, self.best, self.wait, self.stages = 0, 0, None, 0, []
        self._apply()

    def on_epoch_end(self, epoch, logs=None):
        last = len(self.model.blocks) - 1
        if self.epochs_per_block is not None:
            done = epoch + 1 - self.stage_start >= self._epochs_for(self.stage)
        else:
            self.best, self.wait = _Plateau.update(self.best, self.wait,
                                                   _monitored(logs or {}, f"{self.monitor}_{self.stage}"),
                                                   self.min_delta)
            done = self.wait >= self.patience
        if done:
            self.stages.append({"block": self.stage, "start_epoch": self.stage_start, "end_epoch": epoch})
            if self.stage == last:
                self.model.stop_training = True
            else:
                self.stage, self.stage_start, self.best, self.wait = self.stage + 1, epoch + 1, None, 0
                self._apply()
        self._save()

    def on_train_end(self, logs=None):
        self._delete()


class BlockEarlyStopping(_StatefulCallback):
    """Stops updating a block whose local validation loss has not improved.

    Block k is frozen (forward only, no head, no update) once
    `f"{monitor}_{k}"` has not improved by `min_delta` for `patience`
    epochs; the others go on. When every block has stopped, training stops.
    After `fit`: `stopped_epochs` (`{block: epoch}`) and
    `skipped_update_fraction` (block updates skipped / block updates a full
    run would make), also in the logs as `blocks_stopped` and
    `skipped_update_fraction` at every epoch end.

    Example:

    ```python
    stopper = kl.callbacks.BlockEarlyStopping(patience=2)
    model.fit(train, validation_data=test, epochs=2, callbacks=[stopper])
    stopper.stopped_epochs, stopper.skipped_update_fraction
    ```
    """

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, backup_dir=None, verbose=0):
        super().__init__(backup_dir)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}.")
        self.monitor, self.patience, self.min_delta, self.verbose = monitor, patience, float(min_delta), verbose
        self._reset()

    def _reset(self):
        self.best, self.wait, self.stopped_epochs = {}, {}, {}
        self.steps, self.skipped = 0, 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "stopped_epochs": self.stopped_epochs,
                "steps": self.steps, "skipped": self.skipped}

    def set_state(self, state):
        self.best, self.wait = dict(state["best"]), dict(state["wait"])
        self.stopped_epochs = {int(k): v for k, v in state["stopped_epochs"].items()}
        self.steps, self.skipped = state["steps"], state["skipped"]

    @property
    def skipped_update_fraction(self):
        total = self.steps * len(self.model.blocks) if self.model is not None else 0
        return self.skipped / total if total else 0.0

    def on_train_begin(self, logs=None):
        _check_local_model(self, self.model)
        if not self._restore():
            self._reset()
        for index in self.stopped_epochs:
            self.model.set_block_state(index, "frozen")

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.skipped += len(self.stopped_epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for index, _, _ in _block_keys(self.model):
            if index in self.stopped_epochs:
                continue
            key = str(index)
            best, wait = _Plateau.update(self.best.get(key), self.wait.get(key, 0),
                                         _monitored(logs, f"{self.monitor}_{index}"), self.min_delta)
            self.best[key], self.wait[key] = best, wait
            if wait >= self.patience:
                self.stopped_epochs[index] = epoch
                self.model.set_block_state(index, "frozen")
                if self.verbose:
                    print(f"Epoch {epoch + 1}: block {index} stopped ({self.monitor}_{index} has not improved "
                          f"for {self.patience} epochs).")
        if len(self.stopped_epochs) == len(_block_keys(self.model)):
            self.model.stop_training = True
        logs["blocks_stopped"] = len(self.stopped_epochs)
        logs["skipped_update_fraction"] = self.skipped_update_fraction
        self._save()

    def on_train_end(self, logs=None):
        self._delete()


# -- method hyperparameters -----------------------------------------------------


class MethodHyperparameterScheduler(keras.callbacks.Callback):
    """Changes a method's numeric option during training (BackLink's `alpha`,
    BWBPF's `lambda_global` / `lambda_local`, PredSim's `beta`).

    `schedule` is a function `epoch -> value` or a list of per-epoch values
    (the last one holds after the list ends). The option becomes a variable
    (`LocalModel.method_variable`) the first time: one retrace, then only
    assignments. Logs the value as `name`. It holds no state: on resume the
    epoch gives the value, and a `.keras` file keeps the current one as the
    method's option.

    Example:

    ```python
    anneal = kl.callbacks.MethodHyperparameterScheduler("alpha", lambda epoch: max(0.0, 1.0 - 0.1 * epoch))
    model.fit(train, epochs=1, callbacks=[anneal])
    ```
    """

    def __init__(self, name, schedule, verbose=0):
        super().__init__()
        if not callable(schedule) and not (isinstance(schedule, (list, tuple)) and schedule):
            raise ValueError(f"schedule must be a function epoch -> value or a non-empty list, got {schedule!r}.")
        self.name, self.schedule, self.verbose = name, schedule, verbose

    def value(self, epoch):
        if callable(self.schedule):
            return float(self.schedule(epoch))
        return float(self.schedule[min(epoch, len(self.schedule) - 1)])

    def on_train_begin(self, logs=None):
        _check_local_model(self, self.model)
        self.model.method_variable(self.name)  # validates the name against the method

    def on_epoch_begin(self, epoch, logs=None):
        value = self.value(epoch)
        self.model.method.__class__(**{**self.model.method_options(), self.name: value})  # validates it
        self.model.method_variable(self.name).assign(value)
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.name} = {value:.6g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.name] = float(self.model.method_variable(self.name).numpy())


# -- divergence -------------------------------------------------------------------


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss became nan or infinite."""

    def __init__(self, key, value, epoch, batch):
        self.key, self.value, self.epoch, self.batch = key, value, epoch, batch
        super().__init__(f"{describe_loss(key)} became {value} at epoch {epoch + 1}, batch {batch + 1}")


def describe_loss(key):
    """`loss_2` → "block 2's loss", `autoencoder_loss_1` → ..., `loss` → "the output loss"."""
    prefix, _, index = key.rpartition("_")
    if prefix == "loss":
        return f"block {index}'s loss"
    if prefix == "autoencoder_loss":
        return f"block {index}'s label-autoencoder loss"
    return "the output loss" if key == "loss" else repr(key)


class TerminateOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first batch where any loss it logs (the output's,
    every block's) is nan or infinite, by raising `NonFiniteLossError`.

    Unlike Keras' `TerminateOnNaN` (which watches `loss` only and lets the
    epoch end run), nothing after that batch runs: callbacks listed after it
    (e.g. `RunCheckpoint`) never see the diverged state, and an interrupted
    fit keeps its last good checkpoint.

    Example:

    ```python
    model.fit(train, callbacks=[kl.callbacks.TerminateOnNonFiniteLoss(), keras.callbacks.BackupAndRestore("runs/y")])
    ```
    """

    def on_train_batch_end(self, batch, logs=None):
        for key, value in (logs or {}).items():
            if "loss" in key and not math.isfinite(float(value)):
                raise NonFiniteLossError(key, float(value), self._epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


# -- memory ----------------------------------------------------------------------


class MemoryMonitor(keras.callbacks.Callback):
    """Puts the memory of each epoch's training steps into the logs, from
    `tf.config.experimental.get_memory_info` on `device` (default: the first
    GPU, else the CPU, whose allocator keeps statistics only with
    `TF_CPU_ALLOCATOR_USE_BFC=true` set before TensorFlow starts):

    - `step_memory_mib`: the largest allocator peak of one training step
      above the memory in use when it began (activations, gradients and
      temporaries; what local training shrinks), over the epoch's steps;
    - `peak_memory_mib`: the largest absolute allocator peak of a training
      step (it adds weights, optimizer slots and the input pipeline's
      buffers; validation and callbacks are not counted).

    Without statistics it warns once and logs nothing.

    Example:

    ```python
    model.fit(train, epochs=2, callbacks=[kl.callbacks.MemoryMonitor(), keras.callbacks.CSVLogger("h.csv")])
    ```
    """

    def __init__(self, device=None):
        super().__init__()
        self.device = device
        self.available = True

    def on_train_begin(self, logs=None):
        self._device = self.device or profiling.memory_device()  # once, not at every step

    def on_epoch_begin(self, epoch, logs=None):
        self._step, self._peak, self._before = 0, 0, None

    def on_train_batch_begin(self, batch, logs=None):
        if not self.available:
            return
        try:
            tf.config.experimental.reset_memory_stats(self._device)
        except (ValueError, tf.errors.OpError) as error:
            self.available = False
            print(f"MemoryMonitor: no memory statistics on {self._device} ({error}); logging none.")
            return
        self._before = tf.config.experimental.get_memory_info(self._device)["current"]

    def on_train_batch_end(self, batch, logs=None):
        if self.available and self._before is not None:
            peak = tf.config.experimental.get_memory_info(self._device)["peak"]
            self._step = max(self._step, peak - self._before)
            self._peak = max(self._peak, peak)

    def on_epoch_end(self, epoch, logs=None):
        if self.available and logs is not None and self._peak:
            logs["step_memory_mib"] = self._step / 2**20
            logs["peak_memory_mib"] = self._peak / 2**20


class StepTimer(keras.callbacks.Callback):
    """Puts the median wall time of the epoch's training steps (seconds)
    into the logs as `step_seconds` (the first epoch's includes tracing in
    its first steps; the median keeps it out).

    Example:

    ```python
    history = model.fit(train, epochs=2, callbacks=[kl.callbacks.StepTimer()])
    history.history["step_seconds"]
    ```
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._start is not None:
            self._times.append(time.perf_counter() - self._start)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._times:
            logs["step_seconds"] = float(statistics.median(self._times))

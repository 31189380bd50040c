"""Blocks that stop training: `ProgressiveFreezing` (one block after the other) and `BlockEarlyStopping`
(each on its own plateau).

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

from keras_local.callbacks.base import Plateau, StatefulCallback, block_keys, check_local_model, monitored
from keras_local.validation import check_number


class ProgressiveFreezing(StatefulCallback):
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
                raise ValueError(
                    f"epochs_per_block must be a positive integer or a list of them, got {epochs_per_block!r}."
                )
        check_number("patience", patience, 1, integer=True, optional=True)
        self.epochs_per_block, self.patience = epochs_per_block, patience
        self.monitor, self.min_delta = monitor, float(min_delta)
        self.stage, self.stage_start, self.best, self.wait, self.stages = 0, 0, None, 0, []

    def get_state(self):
        return {
            "stage": self.stage,
            "stage_start": self.stage_start,
            "best": self.best,
            "wait": self.wait,
            "stages": self.stages,
        }

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
        check_local_model(self, self.model)
        if isinstance(self.epochs_per_block, (list, tuple)) and len(self.epochs_per_block) != len(self.model.blocks):
            raise ValueError(
                f"epochs_per_block has {len(self.epochs_per_block)} entries for {len(self.model.blocks)} blocks."
            )
        if not self._restore():
            self.stage, self.stage_start, self.best, self.wait, self.stages = 0, 0, None, 0, []
        self._apply()

    def on_epoch_end(self, epoch, logs=None):
        last = len(self.model.blocks) - 1
        if self.epochs_per_block is not None:
            done = epoch + 1 - self.stage_start >= self._epochs_for(self.stage)
        else:
            self.best, self.wait = Plateau.update(
                self.best, self.wait, monitored(logs or {}, f"{self.monitor}_{self.stage}"), self.min_delta
            )
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


class BlockEarlyStopping(StatefulCallback):
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
        check_number("patience", patience, 1, integer=True)
        self.monitor, self.patience, self.min_delta, self.verbose = monitor, patience, float(min_delta), verbose
        self._reset()

    def _reset(self):
        self.best, self.wait, self.stopped_epochs = {}, {}, {}
        self.steps, self.skipped = 0, 0

    def get_state(self):
        return {
            "best": self.best,
            "wait": self.wait,
            "stopped_epochs": self.stopped_epochs,
            "steps": self.steps,
            "skipped": self.skipped,
        }

    def set_state(self, state):
        self.best, self.wait = dict(state["best"]), dict(state["wait"])
        self.stopped_epochs = {int(k): v for k, v in state["stopped_epochs"].items()}
        self.steps, self.skipped = state["steps"], state["skipped"]

    @property
    def skipped_update_fraction(self):
        total = self.steps * len(self.model.blocks) if self.model is not None else 0
        return self.skipped / total if total else 0.0

    def on_train_begin(self, logs=None):
        check_local_model(self, self.model)
        if not self._restore():
            self._reset()
        for index in self.stopped_epochs:
            self.model.set_block_state(index, "frozen")

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.skipped += len(self.stopped_epochs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        for index, _, _ in block_keys(self.model):
            if index in self.stopped_epochs:
                continue
            key = str(index)
            best, wait = Plateau.update(
                self.best.get(key), self.wait.get(key, 0), monitored(logs, f"{self.monitor}_{index}"), self.min_delta
            )
            self.best[key], self.wait[key] = best, wait
            if wait >= self.patience:
                self.stopped_epochs[index] = epoch
                self.model.set_block_state(index, "frozen")
                if self.verbose:
                    print(
                        f"Epoch {epoch + 1}: block {index} stopped ({self.monitor}_{index} has not improved "
                        f"for {self.patience} epochs)."
                    )
        if len(self.stopped_epochs) == len(block_keys(self.model)):
            self.model.stop_training = True
        logs["blocks_stopped"] = len(self.stopped_epochs)
        logs["skipped_update_fraction"] = self.skipped_update_fraction
        self._save()

    def on_train_end(self, logs=None):
        self._delete()

"""`BlockLogger`: every block head's loss and accuracy per epoch, to a CSV, TensorBoard and a plot.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import csv
import os

import keras
import tensorflow as tf

from keras_local import plots
from keras_local.callbacks.base import block_keys, check_local_model
from keras_local.files import read_block_log  # noqa: F401  (re-exported: the CSV's reader)


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
        check_local_model(self, self.model)
        os.makedirs(self.log_dir, exist_ok=True)
        if self.tensorboard and self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "tensorboard"))

    def rows(self, epoch, logs):
        """This epoch's rows (dicts with `FIELDS`), from Keras' epoch logs."""
        entries = [
            (str(index), self.model.block_states[index], loss, accuracy)
            for index, loss, accuracy in block_keys(self.model)
        ]
        entries.append(("output", self.model.block_states[-1], "loss", "accuracy"))
        rows = []
        for block, state, loss, accuracy in entries:
            row = {"epoch": epoch, "block": block, "state": state}
            for field, key in (
                ("loss", loss),
                ("accuracy", accuracy),
                ("val_loss", f"val_{loss}"),
                ("val_accuracy", f"val_{accuracy}"),
            ):
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

"""`TerminateOnNonFiniteLoss`: stop at the first batch where any logged loss is nan or infinite.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import math

import keras


class NonFiniteLossError(RuntimeError):
    """Training stopped because a loss became nan or infinite."""

    def __init__(self, key, value, epoch, batch, description=None):
        self.key, self.value, self.epoch, self.batch = key, value, epoch, batch
        self.description = description or describe_loss(key)
        super().__init__(f"{self.description} became {value} at epoch {epoch + 1}, batch {batch + 1}")


def describe_loss(key, extra_loss_name=None):
    """A logged loss in words: `loss` → "the output loss", `loss_2` →
    "block 2's loss", and with the method's `extra_loss_name` (Associated
    Learning's `autoencoder_loss`) `autoencoder_loss_1` → "extra block 1's
    autoencoder loss"."""
    prefix, _, index = key.rpartition("_")
    if prefix == "loss":
        return f"block {index}'s loss"
    if extra_loss_name and prefix == extra_loss_name:
        return f"extra block {index}'s {prefix.replace('_', ' ')}"
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
                extra_loss_name = getattr(getattr(self.model, "method", None), "extra_loss_name", None)
                raise NonFiniteLossError(key, float(value), self._epoch, batch, describe_loss(key, extra_loss_name))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

"""`BlockLearningRateScheduler`: a learning-rate schedule per block.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import keras

from keras_local.callbacks.base import check_local_model
from keras_local.optimizers import _inner


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
            raise ValueError(
                f"schedule must be a function (epoch, block, lr) -> lr or a list of "
                f"LearningRateSchedule, got {schedule!r}."
            )
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
        check_local_model(self, self.model)
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
            for index, optimizer in self._optimizers()[: len(self.model.blocks)]:
                logs[f"lr_{index}"] = float(optimizer.learning_rate)

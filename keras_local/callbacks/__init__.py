"""Local-learning callbacks for `model.fit`: they know a LocalModel is made of
blocks, each with its own optimizer, head and loss.

One module per concern, re-exported here:

- `BlockLogger` (`block_logger`): per-block loss / accuracy (train and validation) to a CSV,
  TensorBoard scalars grouped per block, and a PNG of every head's accuracy.
- `BlockLearningRateScheduler` (`learning_rate`): a learning-rate schedule per block.
- `ProgressiveFreezing` (`freezing`): train the blocks in order, each until a criterion,
  then freeze it (DGL's sequential greedy baseline).
- `BlockEarlyStopping` (`freezing`): stop updating a block whose local validation loss no
  longer improves; reports when and the share of block updates saved.
- `MethodHyperparameterScheduler` (`hyperparameters`): change BackLink's α, BWBPF's λ or
  PredSim's β during training, without retracing every step.
- `MemoryMonitor` (`resources`): each epoch's training-step memory (working and absolute peak) in the logs.
- `StepTimer` (`resources`): the median training-step time of each epoch in the logs.
- `TerminateOnNonFiniteLoss` (`non_finite`): stop at the first batch where any loss is nan or infinite.

A run configuration's `[callbacks]` table becomes these callbacks in
`keras_local.train.callbacks_from_config`.

Stateful callbacks take `backup_dir`: their state is written there at every
epoch end and read back at the start of `fit`, so that a run resumed by
`keras.callbacks.BackupAndRestore` carries on where it stopped; it is deleted
when training ends normally, as BackupAndRestore deletes its own.

Example:

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

from keras_local.callbacks.block_logger import BlockLogger, read_block_log
from keras_local.callbacks.freezing import BlockEarlyStopping, ProgressiveFreezing
from keras_local.callbacks.hyperparameters import MethodHyperparameterScheduler
from keras_local.callbacks.learning_rate import BlockLearningRateScheduler
from keras_local.callbacks.non_finite import NonFiniteLossError, TerminateOnNonFiniteLoss, describe_loss
from keras_local.callbacks.resources import MemoryMonitor, StepTimer

__all__ = [
    "BlockEarlyStopping",
    "BlockLearningRateScheduler",
    "BlockLogger",
    "MemoryMonitor",
    "MethodHyperparameterScheduler",
    "NonFiniteLossError",
    "ProgressiveFreezing",
    "StepTimer",
    "TerminateOnNonFiniteLoss",
    "describe_loss",
    "read_block_log",
]

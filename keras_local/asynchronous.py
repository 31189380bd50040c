"""Asynchronous local training with replay buffers, simulated in one process (DGL §4.3).

Each block is a worker. At every tick one worker is drawn at random (a slow
block is drawn `slowdown` times less often than the others); block 0 takes
the next batch of the dataset, block k > 0 takes a batch from the buffer
that block k − 1 fills (with its labels); the worker makes one local step
and pushes its stopped output into its own buffer. A buffer holds at most
`buffer_size` batches (the oldest is dropped) and serves the least-used
batch, the freshest among those (DGL's `priority_lifo`); a batch is dropped
after `max_reuse` uses. Works with every method whose blocks can train alone
(`Method.why_blocks_cannot_train_alone`: gradients cut, no label path, no
backward link, no MAN average, no loss reading the images); the others are
refused in one line. With `validation_data`, every block head's accuracy is
measured every `validation_every` ticks and at the end (`report["history"]`),
so one sees how a slow block holds back the blocks after it.

Example:

```python
model = kl.build_model("dgl_cnn4", "dgl", num_blocks=4)
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
train = kl.data.load_dataset("cifar10_sample", "train", batch_size=32, training=True)
test = kl.data.load_dataset("cifar10_sample", "test", batch_size=500, num_examples=500)
report = kl.asynchronous.fit_asynchronous(model, train, ticks=40, buffer_size=50, slow_block=1, slowdown=2.0,
                                          validation_data=test, validation_every=20)   # ticks=2000 to learn
report["updates"]            # updates made by each block
report["history"][-1]        # {"tick": 40, "updates": [...], "accuracy": ..., "acc_0": ..., ...}
```
"""

import numpy as np
import tensorflow as tf

from keras_local.block import unpack_batch
from keras_local.validation import check_number


class ReplayBuffer:
    """At most `size` (features, labels) batches; `pop` serves the least-used
    one, the freshest among those, and drops a batch used `max_reuse` times."""

    def __init__(self, size, max_reuse=None):
        self.size, self.max_reuse = size, max_reuse
        self.entries = []  # [features, labels, uses, arrival]
        self._arrivals = 0

    def push(self, features, labels):
        self.entries.append([features, labels, 0, self._arrivals])
        self._arrivals += 1
        if len(self.entries) > self.size:
            self.entries.pop(0)  # the oldest

    def pop(self):
        if not self.entries:
            return None
        entry = min(self.entries, key=lambda e: (e[2], -e[3]))
        entry[2] += 1
        if self.max_reuse is not None and entry[2] >= self.max_reuse:
            self.entries.remove(entry)
        return entry[0], entry[1]

    def __len__(self):
        return len(self.entries)


def fit_asynchronous(
    model,
    dataset,
    ticks,
    buffer_size=50,
    max_reuse=None,
    slow_block=None,
    slowdown=1.0,
    seed=0,
    validation_data=None,
    validation_every=None,
):
    """Runs `ticks` worker draws on a compiled `model` (see the module doc).

    Returns `{"updates": [...], "idle": [...], "history": [...]}`: updates
    per block, draws that found an empty buffer, and (with
    `validation_data`) one entry per evaluation, every `validation_every`
    ticks and after the last: the tick, the updates so far, and
    `model.evaluate`'s results (`accuracy`, `loss`, `acc_k`, `loss_k`).
    """
    _validate(model, ticks, buffer_size, max_reuse, slow_block, slowdown, validation_data, validation_every)
    num_blocks = len(model.blocks)
    weights = np.ones(num_blocks)
    if slow_block is not None:
        weights[slow_block] = 1.0 / slowdown
    probabilities = weights / weights.sum()
    rng = np.random.default_rng(seed)
    buffers = [ReplayBuffer(buffer_size, max_reuse) for _ in range(num_blocks - 1)]
    steps = [_block_step(model, index) for index in range(num_blocks)]
    batches = iter(dataset.repeat())
    updates, idle, history = [0] * num_blocks, [0] * num_blocks, []

    def evaluate(tick):
        results = model.evaluate(validation_data, return_dict=True, verbose=0)
        history.append({"tick": tick, "updates": list(updates), **{k: float(v) for k, v in results.items()}})

    for tick in range(1, ticks + 1):
        index = int(rng.choice(num_blocks, p=probabilities))
        if index == 0:
            inputs, labels = unpack_batch(next(batches))
        else:
            taken = buffers[index - 1].pop()
            inputs, labels = taken if taken is not None else (None, None)
        if inputs is None:
            idle[index] += 1
        else:
            features = steps[index](inputs, labels)
            updates[index] += 1
            if index < num_blocks - 1:
                buffers[index].push(features, labels)
        if validation_data is not None and (tick == ticks or (validation_every and tick % validation_every == 0)):
            evaluate(tick)
    return {"updates": updates, "idle": idle, "history": history}


def _block_step(model, index):
    block = model.blocks[index]
    weight = model.method.loss_weights(len(model.blocks))[index]

    @tf.function(reduce_retracing=True)
    def step(inputs, labels):
        local = block.compute_local_gradients(tf.stop_gradient(inputs), labels, loss_weight=weight)
        block.optimizer.apply(local.gradients, block.trainable_variables)
        return tf.stop_gradient(local.features)

    return step


def _validate(model, ticks, buffer_size, max_reuse, slow_block, slowdown, validation_data, validation_every):
    method = model.method
    reason = method.why_blocks_cannot_train_alone(len(model.blocks))
    if reason:
        raise ValueError(
            f"Asynchronous training needs blocks that learn from their own input and labels only, "
            f"and cannot train method {method.name!r}: {reason}."
        )
    if not model.compiled:
        raise ValueError("Compile the model (its block optimizers) before fit_asynchronous.")
    check_number("ticks", ticks, 1, integer=True)
    check_number("buffer_size", buffer_size, 1, integer=True)
    check_number("max_reuse", max_reuse, 1, integer=True, optional=True)
    if slow_block is not None and not (isinstance(slow_block, int) and 0 <= slow_block < len(model.blocks)):
        raise ValueError(f"slow_block must be a block index in 0..{len(model.blocks) - 1}, got {slow_block!r}.")
    check_number("slowdown", slowdown, 1)
    if check_number("validation_every", validation_every, 1, integer=True, optional=True) and validation_data is None:
        raise ValueError("validation_every needs validation_data to evaluate on.")

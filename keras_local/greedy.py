"""Greedy sequential training with the frozen blocks' features cached.

`fit_greedy` trains the blocks of a compiled LocalModel one after another,
as `keras_local.callbacks.ProgressiveFreezing(epochs_per_block=...)` does
inside one `fit`, but block s trains on its own (`Block.fit`, its own
optimizer and loss) on the features of the frozen blocks before it, computed
once and cached (`tf.data.Dataset.cache`) for the rest of its stage. Blocks
0..s−1 then cost one forward pass per example instead of one per epoch.
This is only right when the input pipeline gives the same images every
epoch: no augmentation, no shuffling, or the cache would freeze one draw of
them.

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2)
model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
train = kl.data.load_dataset("cifar10_sample", "train", batch_size=128)   # training=False: no augmentation
histories = kl.greedy.fit_greedy(model, train, epochs_per_block=1)   # one Keras History per block
```
"""

import tensorflow as tf


def fit_greedy(model, dataset, epochs_per_block, validation_data=None, cache_features=True, verbose=0):
    """Trains `model.blocks` in order, each for `epochs_per_block` epochs
    (an int or one per block); the blocks before it are frozen (inference
    mode). Leaves every block but the last frozen and returns one Keras
    `History` per block."""
    num_blocks = len(model.blocks)
    epochs = list(epochs_per_block) if isinstance(epochs_per_block, (list, tuple)) else [epochs_per_block] * num_blocks
    if len(epochs) != num_blocks or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs):
        raise ValueError(
            f"epochs_per_block must be a positive integer or one per block ({num_blocks}), got {epochs_per_block!r}."
        )
    if not model.compiled:
        raise ValueError("Compile the model (its block optimizers) before fit_greedy.")
    reason = model.method.why_blocks_cannot_train_alone(num_blocks)
    if reason:
        raise ValueError(
            f"fit_greedy trains each block on its own input and labels, and cannot train method "
            f"{model.method.name!r}: {reason}; train it with model.fit."
        )
    histories = []
    for stage, block in enumerate(model.blocks):
        prefix = model.blocks[:stage]

        @tf.function
        def frozen_features(x, prefix=prefix):
            for earlier in prefix:
                x = earlier(x, training=False)
            return x

        def through_prefix(data, prefix=prefix, frozen_features=frozen_features):
            mapped = data.map(lambda x, y: (frozen_features(x), y))
            return mapped.cache() if cache_features and prefix else mapped

        validation = None if validation_data is None else through_prefix(validation_data)
        histories.append(
            block.fit(through_prefix(dataset), validation_data=validation, epochs=epochs[stage], verbose=verbose)
        )
        if stage < num_blocks - 1:
            model.set_block_state(stage, "frozen")
    return histories

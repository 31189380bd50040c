"""Losses across replicas: the scaling Keras' `Loss` objects apply under a distribution strategy.

A method's own losses live in its folder (`keras_local.methods.predsim.loss`,
`...infopro.loss`, `...hpff.loss`); as `keras.losses.Loss` subclasses they
are divided by the number of replicas like Keras' own. The hand-written
terms of a step (weight decay, the logged losses) use these two functions.

Example:

```python
scale_for_replicas(keras.ops.convert_to_tensor(2.0))   # 2.0 with one replica, 1.0 with two
```
"""

import tensorflow as tf
from keras import ops

from keras_local.deprecation import moved_names


def _replicas():

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """`value / replicas` under a `tf.distribute` strategy (what Keras' `Loss`
    objects do to their result): summed over replicas, the gradients are the
    mean over the global batch. Unchanged with one replica."""
    replicas = _replicas()
    return value if replicas == 1 else ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))


def unscale_for_replicas(value):
    """The inverse of `scale_for_replicas`: the loss of the replica's batch, for the metrics."""
    replicas = _replicas()
    return value if replicas == 1 else ops.multiply(value, ops.cast(replicas, value.dtype))


# Moved to the method that owns them (keras_local 0.4); the old names warn for a version.
__getattr__ = moved_names(
    "keras_local.losses",
    {
        "PredSimLoss": "keras_local.methods.predsim",
        "similarity_matrix": "keras_local.methods.predsim",
        "InfoProLoss": "keras_local.methods.infopro",
        "supervised_contrastive": "keras_local.methods.infopro",
        "AUX_LOSSES": "keras_local.methods.infopro",
    },
)

"""MAN's auxiliary head: `head(LB(x) + EMA(x))`."""

import keras

from keras_local.repairs import restore_layer


def fresh_copy(layer, name):
    """A new, unbuilt layer of `layer`'s class and config (new weights), named `name` (a layer of another
    library through `keras_local.repairs`, whose configs it corrects)."""
    serialized = keras.saving.serialize_keras_object(layer)
    serialized = {**serialized, "config": {**serialized["config"], "name": name}, "build_config": None}
    return restore_layer(serialized)


@keras.saving.register_keras_serializable(package="keras_local")
class MomentumHead(keras.layers.Layer):
    """Momentum Auxiliary Network (Su et al., ECCV 2024): block k's
    auxiliary head reads `local(x) + average(x)` instead of `x`.

    `local` (LB_k) is a trainable copy of the next block's first unit,
    trained by block k's local loss; `average` (EMA_k) is another copy whose
    weights no gradient reaches: after each step they move towards the next
    block's first unit, `w ← m·w + (1 − m)·w_next` (`update_average`). Both
    start from fresh weights, as the reference re-initialises them. The
    average still normalises with the batch's statistics in training (its
    layers stay trainable; only its variables are marked non-trainable), as
    the reference's frozen copy in `train()` mode does.

    Example:

    ```python
    from keras_local.heads import LinearHead
    from keras_local.layers import ResidualUnit

    head = MomentumHead(LinearHead(10), local=ResidualUnit(32, strides=2), average=ResidualUnit(32, strides=2))
    head(keras.ops.zeros((2, 16, 16, 16))).shape   # (2, 10)
    ```
    """

    def __init__(self, head, local, average, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.local = local
        self.average = average

    def build(self, input_shape):
        for layer in (self.local, self.average):
            if not layer.built:
                layer.build(input_shape)
        for variable in self.average.weights:
            variable.trainable = False  # moved by update_average, never by a gradient
        if not self.head.built:
            self.head.build(self.local.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        features = self.local(inputs, training=training) + self.average(inputs, training=training)
        return self.head(features, training=training)

    def compute_output_shape(self, input_shape):
        return self.head.compute_output_shape(self.local.compute_output_shape(input_shape))

    def update_average(self, source, momentum):
        """`w ← momentum·w + (1 − momentum)·w_source` for each weight of
        `source` (the next block's first unit) that a gradient trains; its
        other weights (batch-norm statistics) are the average's own."""
        for average, current in zip(self.average.weights, source.weights):
            if current.trainable:
                average.assign(momentum * average + (1.0 - momentum) * keras.ops.cast(current, average.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            **{key: keras.saving.serialize_keras_object(getattr(self, key)) for key in ("head", "local", "average")},
        }

    @classmethod
    def from_config(cls, config):
        layers = {key: restore_layer(config.pop(key)) for key in ("head", "local", "average")}
        return cls(**layers, **config)

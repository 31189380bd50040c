"""AugLocal's auxiliary net: new units shaped like later layers of the network."""

import math

import keras

from keras_local.layers import ConvBNReLU, ResidualUnit
from keras_local.layers import batch_norm as make_batch_norm


def sampled_layers(layer, num_layers, depth):
    """The later layers AugLocal copies for the module ending at `layer`:
    `round(layer + (num_layers − layer − 1) / depth · i)` for i = 1..depth
    (every later layer when fewer than `depth` are left)."""
    if depth >= num_layers - 1 - layer:
        return list(range(layer + 1, num_layers))
    return [round(layer + (num_layers - layer - 1) / depth * i) for i in range(1, depth + 1)]


def pyramid_depth(depth, tau, index, num_blocks):
    """Block `index`'s auxiliary depth: `max(1, round(d·(1 − k·τ/(K−2)) + k·τ/(K−2)))`,
    shrinking from d at the first block towards 1 (τ = 0: d everywhere)."""
    ratio = index * tau / (num_blocks - 2) if num_blocks > 2 else 0.0
    return max(1, round(depth * (1 - ratio) + ratio))


def copy_unit(unit, width, downsample, name):
    """A new unit of `unit`'s kind with `width` channels, halving the resolution if `downsample`."""
    strides = 2 if downsample else 1
    if isinstance(unit, ResidualUnit):
        return ResidualUnit(width, strides=strides, activation=unit.activation, name=name)
    if isinstance(unit, ConvBNReLU):
        return ConvBNReLU(
            width,
            kernel_size=unit.kernel_size,
            strides=strides,
            activation=unit.activation,
            batch_norm=unit.batch_norm,
            name=name,
        )
    raise ValueError(
        f"AugLocal builds its auxiliary nets from copies of the network's later layers, which must be "
        f"residual or conv units (the CIFAR ResNets, VGG); got {type(unit).__name__} {unit.name!r}."
    )


def augmented_units(units, widths, layer, depth, prefix):
    """The auxiliary units of the module ending at unit `layer` (AugLocal's `unifSamp` net):
    copies of the sampled later units, strided where the width has doubled."""
    new, width, pending = [], widths[layer], 0
    for position, index in enumerate(sampled_layers(layer, len(units), depth)):
        if widths[index] < width:
            raise ValueError(
                f"AugLocal copies later layers, which must not be narrower than the block they "
                f"serve: unit {index} has {widths[index]} channels after {width}."
            )
        pending += int(math.log2(widths[index] // width))
        new.append(copy_unit(units[index], widths[index], pending >= 1, f"{prefix}_aux{position + 1}"))
        pending -= 1 if pending >= 1 else 0
        width = widths[index]
    return new


@keras.saving.register_keras_serializable(package="keras_local")
class AugmentedHead(keras.layers.Layer):
    """The AugLocal auxiliary net: `units` (copies of later layers), global
    average pooling, BatchNorm (the reference's, when the depth is at most 1)
    and Dense(num_classes).

    Example:

    ```python
    from keras_local.layers import ResidualUnit

    head = AugmentedHead([ResidualUnit(32, strides=2), ResidualUnit(64, strides=2)], 10)
    head(keras.ops.zeros((2, 32, 32, 16))).shape   # (2, 10)
    ```
    """

    def __init__(self, units, num_classes, batch_norm=False, **kwargs):
        super().__init__(**kwargs)
        self.units = list(units)
        self.num_classes = num_classes
        self.batch_norm = batch_norm
        dtype = self.dtype_policy
        self.pool = keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool", dtype=dtype)
        self.norm = make_batch_norm(f"{self.name}_bn", dtype=dtype) if batch_norm else None
        self.dense = keras.layers.Dense(num_classes, name=f"{self.name}_dense", dtype=dtype)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            if not unit.built:
                unit.build(shape)
            shape = tuple(unit.compute_output_shape(shape))
        pooled = (shape[0], shape[-1])
        for layer in (self.norm, self.dense):
            if layer is not None and not layer.built:
                layer.build(pooled)

    def call(self, inputs, training=None):
        x = inputs
        for unit in self.units:
            x = unit(x, training=training)
        x = self.pool(x)
        if self.norm is not None:
            x = self.norm(x, training=training)
        return self.dense(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "units": [keras.saving.serialize_keras_object(u) for u in self.units],
            "num_classes": self.num_classes,
            "batch_norm": self.batch_norm,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["units"] = [keras.saving.deserialize_keras_object(unit) for unit in config["units"]]
        return cls(**config)

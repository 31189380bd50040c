"""Backbones as lists of units that a split may cut between.

A unit is never cut inside: the stem and each residual block of a ResNet, each
conv layer of a VGG (its max-pool attached), each hidden layer of an MLP. The
network's own classifier (GAP → Dense) is the output head, not a unit.

Every factory takes the example's `input_shape` (some networks adapt to it,
e.g. the bottleneck ResNets' stem) and its own keyword options.

Example:

```python
units = get_architecture("resnet32")
len(units)   # 16: the stem + 15 residual blocks
units = get_architecture("resnet101", input_shape=(64, 64, 3))   # 7x7 stride-2 stem
```
"""

import functools
import inspect

from keras_local.deprecation import moved_names
from keras_local.layers import BottleneckUnit, ConvBNReLU, DenseReLU, ResidualUnit
from keras_local.registry import Registry

ARCHITECTURES = Registry("architecture")


def list_architectures():
    """Names accepted by `build_model(architecture)`."""
    return ARCHITECTURES.names()


def architecture_option_names(name):
    """The keyword options architecture `name` accepts (besides `input_shape`)."""
    factory = ARCHITECTURES.get(name)
    return [p for p in inspect.signature(factory).parameters if p != "input_shape"]


def get_architecture(name, input_shape=(32, 32, 3), **options):
    """Returns a fresh list of the units of architecture `name`.

    `options` are the architecture's own keyword arguments (e.g. `stem` for
    the bottleneck ResNets); unknown ones raise a `ValueError`.
    """
    factory = ARCHITECTURES.get(name)
    allowed = architecture_option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for architecture {name!r}. Allowed: {', '.join(allowed) or 'none'}."
        )
    return factory(input_shape=tuple(input_shape), **options)


def cifar_resnet(depth, input_shape=None, activation="relu", hidden_units=()):
    """He et al.'s CIFAR ResNet-`depth`: a 16-channel stem, then 3 stages of
    (depth − 2) / 6 basic blocks with 16, 32, 64 channels; then optional
    hidden dense layers on the flattened map (backprop twins of Associated
    Learning's inference path)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}.")
    blocks_per_stage = (depth - 2) // 6
    units = [ConvBNReLU(16, activation=activation, name="stem")]
    for stage, filters in enumerate((16, 32, 64)):
        for index in range(blocks_per_stage):
            strides = 2 if stage > 0 and index == 0 else 1
            units.append(
                ResidualUnit(filters, strides=strides, activation=activation, name=f"stage{stage + 1}_unit{index + 1}")
            )
    return dense_units(units, hidden_units, activation)


VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def dense_units(units, hidden_units, activation, dropout=0.0):
    for index, width in enumerate(hidden_units):
        units.append(
            DenseReLU(width, flatten=index == 0, dropout=dropout, activation=activation, name=f"fc{len(units) + 1}")
        )
    return units


def vgg(name, input_shape=None, hidden_units=(), dropout=0.5):
    """VGG with batch norm: one unit per conv layer, each max-pool attached to
    the conv before it; then optional hidden dense layers (e.g. `(4096, 4096)`
    as in the original VGG and BackLink's VGG16), each with dropout before it.
    The classifier is the output head."""
    config = VGG_CONFIGS[name]
    units = []
    for index, item in enumerate(config):
        if item == "M":
            continue
        pool = index + 1 < len(config) and config[index + 1] == "M"
        units.append(ConvBNReLU(item, pool=pool, name=f"conv{len(units) + 1}"))
    return dense_units(units, hidden_units, "relu", dropout)


def mlp(hidden_units=(1024, 1024, 1024), input_shape=None, activation="relu"):
    """A multilayer perceptron: one unit per hidden layer (the first flattens)."""
    return [
        DenseReLU(width, flatten=index == 0, activation=activation, name=f"dense{index + 1}")
        for index, width in enumerate(hidden_units)
    ]


def cnn(input_shape=None, activation="relu", batch_norm=False, hidden_units=()):
    """Associated Learning's vanilla CNN (its reference code's CNN_AL): eight
    3x3 conv layers, 32, 32, 32, 32 (stride 2), 64, 64, 64, 64 (stride 2)
    filters, no BN by default; then optional hidden dense layers. With
    `hidden_units=(5n, n, n, n, n)` it is the backprop network with the
    parameters of AL's inference path (bridge Dense(5n) → Dense(n), decoders)."""
    filters_and_strides = [(32, 1), (32, 1), (32, 1), (32, 2), (64, 1), (64, 1), (64, 1), (64, 2)]
    units = [
        ConvBNReLU(filters, strides=strides, activation=activation, batch_norm=batch_norm, name=f"conv{i + 1}")
        for i, (filters, strides) in enumerate(filters_and_strides)
    ]
    return dense_units(units, hidden_units, activation)


CIFAR_RESNET_DEPTHS = {f"resnet{depth}": depth for depth in (8, 14, 20, 32, 56, 110)}
BOTTLENECK_DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
STEMS = ("cifar", "tiny_imagenet")


def bottleneck_resnet(name, input_shape=(32, 32, 3), stem=None):
    """He et al.'s ResNet-50/101/152 (base width 64, bottleneck expansion 4)
    for small images, as in BWBPF's code: a stem unit, then one unit per
    bottleneck block (17, 34 and 51 units), so K = 4, 8, 12, 16 splits of the
    true [3, 4, 23, 3] / [3, 8, 36, 3] depths exist.

    Args:
        stem: "cifar" (3x3 conv, stride 1, no max-pool) or "tiny_imagenet"
            (7x7 conv, stride 2, no max-pool: 64x64 inputs become 32x32).
            Default: "tiny_imagenet" for inputs of 64 pixels or more,
            "cifar" otherwise.
    """
    if stem is None:
        stem = "tiny_imagenet" if min(input_shape[:2]) >= 64 else "cifar"
    if stem not in STEMS:
        raise ValueError(f"Unknown stem {stem!r}. Allowed: {', '.join(STEMS)}.")
    kernel_size, strides = (3, 1) if stem == "cifar" else (7, 2)
    units = [ConvBNReLU(64, kernel_size=kernel_size, strides=strides, name="stem")]
    for stage, (count, filters) in enumerate(zip(BOTTLENECK_DEPTHS[name], (64, 128, 256, 512))):
        for index in range(count):
            strides = 2 if stage > 0 and index == 0 else 1
            units.append(BottleneckUnit(filters, strides=strides, name=f"stage{stage + 1}_unit{index + 1}"))
    return units


def alexnet(input_shape=None, hidden_units=(4096, 4096), dropout=0.5):
    """AlexNet for 32x32 images (BackLink's variant): five 3x3 conv + BN +
    ReLU layers (64, 192, 384, 256, 256 filters; 2x2 max-pools after the
    1st, 2nd and 5th), then two hidden dense layers with dropout 0.5 before
    each (dropout only in the FC layers). Seven units; the third FC layer is
    the output head."""
    units = [
        ConvBNReLU(64, pool=True, name="conv1"),
        ConvBNReLU(192, pool=True, name="conv2"),
        ConvBNReLU(384, name="conv3"),
        ConvBNReLU(256, name="conv4"),
        ConvBNReLU(256, pool=True, name="conv5"),
    ]
    return dense_units(units, hidden_units, "relu", dropout)


for _name, _depth in CIFAR_RESNET_DEPTHS.items():
    ARCHITECTURES.register(_name)(functools.partial(cifar_resnet, _depth))
for _name in BOTTLENECK_DEPTHS:
    ARCHITECTURES.register(_name)(functools.partial(bottleneck_resnet, _name))
for _name in VGG_CONFIGS:
    ARCHITECTURES.register(_name)(functools.partial(vgg, _name))
ARCHITECTURES.register("mlp")(mlp)
ARCHITECTURES.register("alexnet")(alexnet)
ARCHITECTURES.register("cnn")(cnn)


# Moved to the method that owns them (keras_local 0.4); the old names warn for a version.
__getattr__ = moved_names(
    "keras_local.architectures",
    {
        "dgl_cnn": "keras_local.methods.dgl.networks",
        "DGL_CNNS": "keras_local.methods.dgl.networks",
        "predsim_vgg8b": "keras_local.methods.predsim.networks",
        "associated_vgg": "keras_local.methods.associated.networks",
    },
)

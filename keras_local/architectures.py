"""Backbones as lists of units that a split may cut between.

A unit is never cut inside: the stem and each residual block of a ResNet, each
conv layer of a VGG (its max-pool attached), each hidden layer of an MLP. The
network's own classifier (GAP → Dense) is the output head, not a unit.

Example:

```python
units = get_architecture("resnet32")
len(units)   # 16: the stem + 15 residual blocks
```
"""

from keras_local.layers import ConvBNReLU, DenseReLU, ResidualUnit
from keras_local.registry import Registry

ARCHITECTURES = Registry("architecture")


def list_architectures():
    """Names accepted by `build_model(architecture)`."""
    return ARCHITECTURES.names()


def get_architecture(name):
    """Returns a fresh list of the units of architecture `name`."""
    return ARCHITECTURES.get(name)()


def cifar_resnet(depth):
    """He et al.'s CIFAR ResNet-`depth`: a 16-channel stem, then 3 stages of
    (depth − 2) / 6 basic blocks with 16, 32, 64 channels."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}.")
    blocks_per_stage = (depth - 2) // 6
    units = [ConvBNReLU(16, name="stem")]
    for stage, filters in enumerate((16, 32, 64)):
        for index in range(blocks_per_stage):
            strides = 2 if stage > 0 and index == 0 else 1
            units.append(
                ResidualUnit(filters, strides=strides, name=f"stage{stage + 1}_unit{index + 1}")
            )
    return units


VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(name):
    """VGG with batch norm for 32x32 inputs: one unit per conv layer, each
    max-pool attached to the conv before it."""
    config = VGG_CONFIGS[name]
    units = []
    for index, item in enumerate(config):
        if item == "M":
            continue
        pool = index + 1 < len(config) and config[index + 1] == "M"
        units.append(ConvBNReLU(item, pool=pool, name=f"conv{len(units) + 1}"))
    return units


def mlp(hidden_units=(1024, 1024, 1024)):
    """A multilayer perceptron: one unit per hidden layer (the first flattens)."""
    return [
        DenseReLU(width, flatten=index == 0, name=f"dense{index + 1}")
        for index, width in enumerate(hidden_units)
    ]


for _depth in (20, 32, 56, 110):
    ARCHITECTURES.register(f"resnet{_depth}")(lambda depth=_depth: cifar_resnet(depth))
for _name in VGG_CONFIGS:
    ARCHITECTURES.register(_name)(lambda name=_name: vgg(name))
ARCHITECTURES.register("mlp")(mlp)

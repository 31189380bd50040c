"""DGL's CIFAR CNNs, registered as architectures `dgl_cnn4` and `dgl_cnn6`."""

import functools

from keras_local.architectures import ARCHITECTURES
from keras_local.layers import ConvBNReLU

DGL_CNNS = {
    # DGL's CIFAR networks: (filters, max-pool before the conv) per layer.
    "dgl_cnn4": [(64, False), (128, True), (128, False), (256, True)],
    "dgl_cnn6": [(128, False), (256, True), (256, False), (512, True), (512, False), (512, False)],
}


def dgl_cnn(name, input_shape=None):
    """DGL's CIFAR CNNs (its `Net`): 3x3 conv (with bias, as PyTorch's
    default) + BN + ReLU layers, 2x2 max-pools before the second and fourth
    conv. `dgl_cnn6` is the auxiliary-net study's network (feature size 128,
    downsample at layers 1 and 3), `dgl_cnn4` the learning-curve one (64, 128,
    128, 256). One unit per layer; `num_blocks=len(units)` is DGL's layer-wise
    training."""
    return [
        ConvBNReLU(filters, pool="before" if pool else False, use_bias=True, name=f"conv{i + 1}")
        for i, (filters, pool) in enumerate(DGL_CNNS[name])
    ]


for _name in DGL_CNNS:
    ARCHITECTURES.register(_name)(functools.partial(dgl_cnn, _name))

"""PredSim's `vgg8b` for CIFAR, registered as architecture `vgg8b`."""

from keras_local.architectures import ARCHITECTURES
from keras_local.layers import ConvBNReLU, DenseReLU


@ARCHITECTURES.register("vgg8b")
def predsim_vgg8b(input_shape=None, dropout=0.2, activation="leaky_relu"):
    """PredSim's `vgg8b` for CIFAR: 3x3 conv + BN + leaky ReLU (slope 0.01)
    layers of 128, 256, (pool) 256, 512, (pool) 512, (pool) 512 (pool)
    filters, then one Dense(1024) + BN + leaky ReLU layer. One unit per
    layer (PredSim trains every layer locally: `num_blocks=7`, plus the
    output layer). Channel dropout on every conv's input but the first, so a
    block's head sees its features before the dropout, as in the reference
    (the dense layer's dropout is element-wise, after its pool)."""
    convs = [(128, False), (256, False), (256, True), (512, False), (512, True), (512, True)]
    units = [
        ConvBNReLU(
            filters,
            pool="before" if pool else False,
            activation=activation,
            dropout=dropout if index else 0.0,
            name=f"conv{index + 1}",
        )
        for index, (filters, pool) in enumerate(convs)
    ]
    return units + [
        DenseReLU(1024, flatten=True, pool=True, dropout=dropout, activation=activation, batch_norm=True, name="dense1")
    ]

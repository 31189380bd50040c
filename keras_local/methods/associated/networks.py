"""Associated Learning's VGG, registered as architecture `vgg`."""

from keras_local.architectures import ARCHITECTURES, dense_units
from keras_local.layers import ConvBNReLU


@ARCHITECTURES.register("vgg")
def associated_vgg(input_shape=None, activation="relu", batch_norm=False, hidden_units=(1024, 1024)):
    """Associated Learning's VGG (its reference code's VGG_AL, no BN): conv
    128, 256 (pool), 256, 512 (pool), 512 (pool), 512 (pool), then two
    Dense(1024) layers: 8 units, two per AL component."""
    convs = [(128, False), (256, True), (256, False), (512, True), (512, True), (512, True)]
    units = [
        ConvBNReLU(filters, pool=pool, activation=activation, batch_norm=batch_norm, name=f"conv{i + 1}")
        for i, (filters, pool) in enumerate(convs)
    ]
    return dense_units(units, hidden_units, activation)

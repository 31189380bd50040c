"""Backbone units: the pieces an architecture is made of and a split never cuts inside.

Every unit is composed only of built-in Keras layers and calls nothing else, so
`export_inference_model` can replay it on symbolic tensors and produce a plain
Keras model that loads without `keras_local`.
"""

import keras

# PyTorch's BatchNorm constants (momentum 0.1 there = 0.9 here, eps 1e-5): the
# reference implementations of every method in this library use them.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(name, dtype=None):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, dtype=dtype)


_batch_norm = batch_norm  # for classes with a `batch_norm` argument


def activation_layer(activation, name, dtype=None):
    """ReLU as its own layer (the common case), `"leaky_relu"` with PyTorch's
    slope 0.01 (Keras' default is 0.2), any other Keras activation by name."""
    if activation == "relu":
        return keras.layers.ReLU(name=name, dtype=dtype)
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.01, name=name, dtype=dtype)
    return keras.layers.Activation(activation, name=name, dtype=dtype)


def conv(filters, kernel_size, strides, name, dtype=None, use_bias=False):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer="he_normal",
        name=name,
        dtype=dtype,
    )


def build_shortcut(layer, input_shape, channels, strides):
    """Creates and builds `layer.shortcut_conv` / `layer.shortcut_bn` (a strided
    1x1 conv + BN) when the block changes shape; the identity otherwise."""
    if strides != 1 or input_shape[-1] != channels:
        layer.shortcut_conv = conv(channels, 1, strides, name=f"{layer.name}_shortcut_conv", dtype=layer.dtype_policy)
        layer.shortcut_bn = batch_norm(f"{layer.name}_shortcut_bn", dtype=layer.dtype_policy)
        layer.shortcut_conv.build(input_shape)
        layer.shortcut_bn.build(layer.shortcut_conv.compute_output_shape(input_shape))


def apply_shortcut(layer, inputs, training):
    if layer.shortcut_conv is None:
        return inputs
    return layer.shortcut_bn(layer.shortcut_conv(inputs), training=training)


@keras.saving.register_keras_serializable(package="keras_local")
class ConvBNReLU(keras.layers.Layer):
    """Conv2D → BatchNorm → ReLU, with an optional 2x2 max-pool.

    `pool=True` (or `"after"`) pools after the ReLU (VGG: the pool belongs to
    the conv before it); `pool="before"` pools the input first (DGL's layers,
    so that a cut after this unit sees the pre-pool map of the previous one).
    `activation` replaces the ReLU (e.g. "elu", Associated Learning's feature
    path) and `batch_norm=False` drops the BN (the conv then has a bias);
    `use_bias=True` keeps a conv bias before the BN (PyTorch's default);
    `dropout` drops whole channels of the input (before the pool; PredSim
    drops the previous block's output after its local loss).

    Example:

    ```python
    unit = ConvBNReLU(64, pool=True)
    unit(keras.ops.zeros((2, 32, 32, 3))).shape   # (2, 16, 16, 64)
    ```
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        strides=1,
        pool=False,
        activation="relu",
        batch_norm=True,
        use_bias=None,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pool not in (False, True, "after", "before"):
            raise ValueError(f"pool must be False, True / 'after' or 'before', got {pool!r}.")
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.pool = pool
        self.activation = activation
        self.batch_norm = batch_norm
        self.use_bias = use_bias
        self.dropout = dropout
        self.dropout_layer = (
            keras.layers.SpatialDropout2D(dropout, name=f"{self.name}_dropout", dtype=self.dtype_policy)
            if dropout
            else None
        )
        self.conv = conv(
            filters,
            kernel_size,
            strides,
            name=f"{self.name}_conv",
            dtype=self.dtype_policy,
            use_bias=not batch_norm if use_bias is None else use_bias,
        )
        self.bn = _batch_norm(f"{self.name}_bn", dtype=self.dtype_policy) if batch_norm else None
        self.relu = activation_layer(activation, f"{self.name}_relu", self.dtype_policy)
        self.max_pool = (
            keras.layers.MaxPooling2D(2, name=f"{self.name}_pool", dtype=self.dtype_policy) if pool else None
        )

    def build(self, input_shape):
        if self.pool == "before":
            input_shape = self.max_pool.compute_output_shape(input_shape)
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.dropout_layer(inputs, training=training) if self.dropout else inputs
        x = self.max_pool(x) if self.pool == "before" else x
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x, training=training)
        x = self.relu(x)
        return self.max_pool(x) if self.pool in (True, "after") else x

    def compute_output_shape(self, input_shape):
        if self.pool == "before":
            input_shape = self.max_pool.compute_output_shape(input_shape)
        shape = self.conv.compute_output_shape(input_shape)
        if self.pool in (True, "after"):
            shape = self.max_pool.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "pool": self.pool,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "use_bias": self.use_bias,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="keras_local")
class ResidualUnit(keras.layers.Layer):
    """The CIFAR ResNet basic block: two 3x3 convs with an identity or 1x1 shortcut.

    The shortcut is a strided 1x1 convolution + BN when the shape changes
    (BackLink §3.1), the identity otherwise.

    Example:

    ```python
    unit = ResidualUnit(32, strides=2)
    unit(keras.ops.zeros((2, 32, 32, 16))).shape   # (2, 16, 16, 32)
    ```
    """

    def __init__(self, filters, strides=1, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.activation = activation
        self.conv1 = conv(filters, 3, strides, name=f"{self.name}_conv1", dtype=self.dtype_policy)
        self.bn1 = batch_norm(f"{self.name}_bn1", dtype=self.dtype_policy)
        self.relu1 = activation_layer(activation, f"{self.name}_relu1", self.dtype_policy)
        self.conv2 = conv(filters, 3, 1, name=f"{self.name}_conv2", dtype=self.dtype_policy)
        self.bn2 = batch_norm(f"{self.name}_bn2", dtype=self.dtype_policy)
        self.add = keras.layers.Add(name=f"{self.name}_add", dtype=self.dtype_policy)
        self.relu2 = activation_layer(activation, f"{self.name}_relu2", self.dtype_policy)
        self.shortcut_conv = None
        self.shortcut_bn = None

    def build(self, input_shape):
        build_shortcut(self, input_shape, self.filters, self.strides)
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(shape)
        self.conv2.build(shape)
        self.bn2.build(shape)

    def call(self, inputs, training=None):
        x = self.relu1(self.bn1(self.conv1(inputs), training=training))
        x = self.bn2(self.conv2(x), training=training)
        shortcut = apply_shortcut(self, inputs, training)
        return self.relu2(self.add([x, shortcut]))

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "activation": self.activation,
        }


@keras.saving.register_keras_serializable(package="keras_local")
class BottleneckUnit(keras.layers.Layer):
    """The ResNet-50/101/152 bottleneck: 1x1 → 3x3 (strided) → 1x1 convs with
    `expansion · filters` outputs, and an identity or 1x1 conv + BN shortcut.

    Example:

    ```python
    unit = BottleneckUnit(64)
    unit(keras.ops.zeros((2, 32, 32, 64))).shape   # (2, 32, 32, 256)
    ```
    """

    def __init__(self, filters, strides=1, expansion=4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.expansion = expansion
        dtype = self.dtype_policy
        self.conv1 = conv(filters, 1, 1, name=f"{self.name}_conv1", dtype=dtype)
        self.bn1 = batch_norm(f"{self.name}_bn1", dtype=dtype)
        self.relu1 = keras.layers.ReLU(name=f"{self.name}_relu1", dtype=dtype)
        self.conv2 = conv(filters, 3, strides, name=f"{self.name}_conv2", dtype=dtype)
        self.bn2 = batch_norm(f"{self.name}_bn2", dtype=dtype)
        self.relu2 = keras.layers.ReLU(name=f"{self.name}_relu2", dtype=dtype)
        self.conv3 = conv(expansion * filters, 1, 1, name=f"{self.name}_conv3", dtype=dtype)
        self.bn3 = batch_norm(f"{self.name}_bn3", dtype=dtype)
        self.add = keras.layers.Add(name=f"{self.name}_add", dtype=dtype)
        self.relu3 = keras.layers.ReLU(name=f"{self.name}_relu3", dtype=dtype)
        self.shortcut_conv = None
        self.shortcut_bn = None

    def build(self, input_shape):
        build_shortcut(self, input_shape, self.expansion * self.filters, self.strides)
        shape = input_shape
        for conv_layer, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            conv_layer.build(shape)
            shape = conv_layer.compute_output_shape(shape)
            bn.build(shape)

    def call(self, inputs, training=None):
        x = self.relu1(self.bn1(self.conv1(inputs), training=training))
        x = self.relu2(self.bn2(self.conv2(x), training=training))
        x = self.bn3(self.conv3(x), training=training)
        shortcut = apply_shortcut(self, inputs, training)
        return self.relu3(self.add([x, shortcut]))

    def compute_output_shape(self, input_shape):
        shape = self.conv2.compute_output_shape(input_shape)
        return (*shape[:-1], self.expansion * self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "expansion": self.expansion,
        }


@keras.saving.register_keras_serializable(package="keras_local")
class DenseReLU(keras.layers.Layer):
    """(2x2 max-pool →) (Flatten →) (Dropout →) Dense (→ BN) → ReLU: one hidden layer of an MLP.

    `width` is the Dense layer's number of outputs (Keras' `units`; "unit" in
    keras_local means a piece of a backbone, like this layer).

    `batch_norm=True` puts a BatchNorm between the Dense and its activation
    (PredSim's local Linear block).

    Example:

    ```python
    unit = DenseReLU(256, flatten=True)
    unit(keras.ops.zeros((2, 28, 28, 1))).shape   # (2, 256)
    ```
    """

    def __init__(self, width, flatten=False, dropout=0.0, activation="relu", batch_norm=False, pool=False, **kwargs):
        super().__init__(**kwargs)
        self.pool = pool
        self.max_pool = (
            keras.layers.MaxPooling2D(2, name=f"{self.name}_pool", dtype=self.dtype_policy) if pool else None
        )
        self.width = width
        self.flatten = flatten
        self.dropout = dropout
        self.activation = activation
        self.batch_norm = batch_norm
        self.bn = _batch_norm(f"{self.name}_bn", dtype=self.dtype_policy) if batch_norm else None
        self.activation_layer = (
            activation_layer(activation, f"{self.name}_act", self.dtype_policy) if batch_norm else None
        )
        self.flatten_layer = (
            keras.layers.Flatten(name=f"{self.name}_flatten", dtype=self.dtype_policy) if flatten else None
        )
        self.dropout_layer = (
            keras.layers.Dropout(dropout, name=f"{self.name}_dropout", dtype=self.dtype_policy) if dropout else None
        )
        self.dense = keras.layers.Dense(
            width,
            activation=None if batch_norm else activation,
            kernel_initializer="he_normal",
            name=f"{self.name}_dense",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        if self.pool:
            input_shape = self.max_pool.compute_output_shape(input_shape)
        if self.flatten:
            input_shape = self.flatten_layer.compute_output_shape(input_shape)
        self.dense.build(input_shape)
        if self.bn is not None:
            self.bn.build((input_shape[0], self.width))

    def call(self, inputs, training=None):
        x = self.max_pool(inputs) if self.pool else inputs
        x = self.flatten_layer(x) if self.flatten else x
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        x = self.dense(x)
        if self.bn is not None:
            x = self.activation_layer(self.bn(x, training=training))
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.width)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "flatten": self.flatten,
            "dropout": self.dropout,
            "activation": self.activation,
            "batch_norm": self.batch_norm,
            "pool": self.pool,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "units" in config:  # its name in files saved by keras_local 0.2 and earlier
            config["width"] = config.pop("units")
        return cls(**config)

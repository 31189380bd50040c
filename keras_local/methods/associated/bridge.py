"""Associated Learning's bridge: the map from a level's features to its label code."""

import keras


@keras.saving.register_keras_serializable(package="keras_local")
class Bridge(keras.layers.Layer):
    """Associated Learning's bridge b_i: Flatten (or global average pooling,
    `pooled=True`) → Dense(expansion·width) → Dense(width), both with
    `activation` (sigmoid in the reference).

    Example:

    ```python
    bridge = Bridge(300)
    bridge(keras.ops.zeros((2, 8, 8, 64))).shape   # (2, 300)
    ```
    """

    def __init__(self, width, expansion=5, activation="sigmoid", pooled=False, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.expansion = expansion
        self.activation = activation
        self.pooled = pooled
        dtype = self.dtype_policy
        self.reduce = (
            keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool", dtype=dtype)
            if pooled
            else keras.layers.Flatten(name=f"{self.name}_flatten", dtype=dtype)
        )
        self.hidden = keras.layers.Dense(
            expansion * width,
            activation=activation,
            kernel_initializer="he_normal",
            name=f"{self.name}_hidden",
            dtype=dtype,
        )
        self.dense = keras.layers.Dense(
            width, activation=activation, kernel_initializer="he_normal", name=f"{self.name}_dense", dtype=dtype
        )

    def build(self, input_shape):
        if self.pooled and len(input_shape) != 4:
            raise ValueError(
                f"A pooled bridge reads feature maps (rank 4), got features of shape "
                f"{tuple(input_shape)}; use pooled=False, which flattens them."
            )
        shape = self.reduce.compute_output_shape(input_shape) if len(input_shape) > 2 else input_shape
        self.hidden.build(shape)
        self.dense.build((shape[0], self.expansion * self.width))

    def call(self, inputs, training=None):
        x = self.reduce(inputs) if len(inputs.shape) > 2 else inputs
        return self.dense(self.hidden(x))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.width)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "expansion": self.expansion,
            "activation": self.activation,
            "pooled": self.pooled,
        }

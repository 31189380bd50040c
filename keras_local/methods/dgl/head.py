"""DGL's auxiliary networks (`mlp_sr`, `mlp`, `cnn`), registered as heads."""

import functools
import itertools

import keras

from keras_local.heads import HEADS
from keras_local.layers import batch_norm, conv


@keras.saving.register_keras_serializable(package="keras_local")
class DGLHead(keras.layers.Layer):
    """DGL's auxiliary networks (`auxillary_classifier2` of its reference code).

    - `"mlp_sr"` (DGL's default): adaptive average pool to ⌈s/4⌉ × ⌈s/4⌉,
      three [1x1 conv (no bias) + BN + ReLU] keeping the F channels, adaptive
      average pool to 2x2, flatten (4F), three [Dense(4F) + BN + ReLU], Dense.
    - `"mlp"`: adaptive average pool to ⌈s/4⌉ then to 2x2, flatten, the same
      three-layer MLP, Dense.
    - `"cnn"`: two [3x3 conv (no bias) + BN + ReLU] at full resolution,
      adaptive average pool to 2x2, BN, flatten, Dense.

    `mlp_layers` sets the MLP's depth (3 in the auxiliary nets; the
    reference's last module has `"mlp"` with 2, DGL's output head).

    Example:

    ```python
    head = DGLHead(10, variant="mlp_sr")
    head(keras.ops.zeros((2, 16, 16, 128))).shape   # (2, 10)
    ```
    """

    VARIANTS = ("mlp_sr", "mlp", "cnn")

    def __init__(self, num_classes, variant="mlp_sr", mlp_layers=3, **kwargs):
        super().__init__(**kwargs)
        if variant not in self.VARIANTS:
            raise ValueError(f"Unknown DGL head variant {variant!r}. Allowed: {', '.join(self.VARIANTS)}.")
        self.num_classes = num_classes
        self.variant = variant
        self.mlp_layers = mlp_layers
        self.stack = []

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"DGL heads need image features (rank 4), got shape {tuple(input_shape)}: they pool "
                f"and convolve a feature map, which tokens or vectors do not have; use head='linear' "
                f"or 'conv'."
            )
        size, channels, dtype = input_shape[1], input_shape[-1], self.dtype_policy
        reduced = -(-size // 4)  # ⌈s/4⌉
        counter = itertools.count()

        def name(part):
            return f"{self.name}_{part}{next(counter)}"

        def pool(output_size, input_size=None):
            if input_size == 1 and output_size > 1:  # PyTorch's adaptive pooling of a 1x1 map repeats it
                return keras.layers.UpSampling2D(output_size, name=name("pool"), dtype=dtype)
            if output_size == 1:  # Keras' adaptive pooling to 1x1 fails in graph mode (a 5-wide window on 4x4)
                return keras.layers.GlobalAveragePooling2D(keepdims=True, name=name("pool"), dtype=dtype)
            return keras.layers.AdaptiveAveragePooling2D(output_size, name=name("pool"), dtype=dtype)

        def conv_bn_relu(kernel_size):
            return [
                conv(channels, kernel_size, 1, name=name("conv"), dtype=dtype),
                batch_norm(name("bn"), dtype=dtype),
                keras.layers.ReLU(name=name("relu"), dtype=dtype),
            ]

        layers = []
        if self.variant == "mlp_sr":
            layers += [pool(reduced)]
            for _ in range(3):
                layers += conv_bn_relu(1)
            layers += [pool(2, reduced)]
        elif self.variant == "mlp":  # (on maps of 4x4 or less, ⌈s/4⌉ is 1: nothing left to pool)
            layers += [pool(reduced), pool(min(reduced, 2))]
        else:
            for _ in range(2):
                layers += conv_bn_relu(3)
            layers += [pool(2), batch_norm(name("bn"), dtype=dtype)]
        layers.append(keras.layers.Flatten(name=name("flatten"), dtype=dtype))
        if self.variant != "cnn":
            for _ in range(self.mlp_layers):
                layers += [
                    keras.layers.Dense(4 * channels, name=name("dense"), dtype=dtype),
                    batch_norm(name("bn"), dtype=dtype),
                    keras.layers.ReLU(name=name("relu"), dtype=dtype),
                ]
        layers.append(keras.layers.Dense(self.num_classes, name=name("logits"), dtype=dtype))
        shape = tuple(input_shape)
        for layer in layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
            self.stack.append(layer)

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.stack:
            x = layer(x, training=training) if isinstance(layer, keras.layers.BatchNormalization) else layer(x)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "variant": self.variant,
            "mlp_layers": self.mlp_layers,
        }


for _variant in DGLHead.VARIANTS:
    HEADS.register(_variant)(functools.partial(DGLHead, variant=_variant))

"""Auxiliary heads: the small classifiers that give each block its local loss.

`linear` is global average pooling → Dense (the network's own classifier for
the CIFAR ResNets and VGGs); `conv` is BackLink's "one 3x3 conv + two FC of 128"
(InfoPro's `1c2f` head). Both accept image features (rank 4) and token
sequences (rank 3, e.g. a ViT block's output: pooled by `token_pooling`,
the mean or the class token), and `linear` also accepts vectors (rank 2,
e.g. from an MLP).
"""

import keras

from keras_local.deprecation import moved_names
from keras_local.layers import batch_norm, conv
from keras_local.registry import Registry

HEADS = Registry("head")


def list_heads():
    """Names accepted by `build_model(head=...)`."""
    return HEADS.names()


def logits_of(outputs):
    """The class logits among a head's outputs (a tensor, or a dict with "logits"), as float32 (under a mixed
    dtype policy the head computes in float16 or bfloat16)."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    return logits if logits is None or logits.dtype == "float32" else keras.ops.cast(logits, "float32")


TOKEN_POOLINGS = ("mean", "class")


def pool_tokens(tokens, token_pooling):
    """A token sequence (batch, tokens, width) as one vector per example:
    the mean of its tokens, or its first (class) token."""
    return tokens[:, 0] if token_pooling == "class" else keras.ops.mean(tokens, axis=1)


def check_token_pooling(token_pooling):
    if token_pooling not in TOKEN_POOLINGS:
        raise ValueError(f"Unknown token_pooling {token_pooling!r}. Allowed: {', '.join(TOKEN_POOLINGS)}.")
    return token_pooling


def set_token_pooling(head, token_pooling):
    """Makes `head` pool token sequences by `token_pooling`, if it pools them."""
    if hasattr(head, "token_pooling"):
        head.token_pooling = check_token_pooling(token_pooling)


def get_head(name, num_classes, name_prefix="head", image_shape=None, **options):
    """Builds the head registered as `name` (heads that reconstruct the
    image, like InfoPro's, also get `image_shape`)."""
    factory = HEADS.get(name)
    if getattr(factory, "needs_image_shape", False) and image_shape is not None:
        options["image_shape"] = image_shape
    return factory(num_classes, name=name_prefix, **options)


@keras.saving.register_keras_serializable(package="keras_local")
class LinearHead(keras.layers.Layer):
    """Global average pooling (for image features; `token_pooling` for
    token sequences) → Dense(num_classes) logits.

    Example:

    ```python
    head = LinearHead(10)
    head(keras.ops.zeros((2, 8, 8, 64))).shape   # (2, 10)
    LinearHead(10, token_pooling="class")(keras.ops.zeros((2, 17, 32))).shape   # (2, 10): the class token's
    ```
    """

    def __init__(self, num_classes, kernel_initializer="glorot_uniform", token_pooling="mean", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.kernel_initializer = kernel_initializer
        self.token_pooling = check_token_pooling(token_pooling)
        self.pool = keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool", dtype=self.dtype_policy)
        self.dense = keras.layers.Dense(
            num_classes, kernel_initializer=kernel_initializer, name=f"{self.name}_dense", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.dense.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, training=None):
        rank = len(inputs.shape)
        x = self.pool(inputs) if rank == 4 else pool_tokens(inputs, self.token_pooling) if rank == 3 else inputs
        return self.dense(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "token_pooling": self.token_pooling,
            "kernel_initializer": keras.saving.serialize_keras_object(self.kernel_initializer),
        }


@keras.saving.register_keras_serializable(package="keras_local")
class ConvHead(keras.layers.Layer):
    """3x3 conv + BN + ReLU → GAP → Dense(hidden) + ReLU → Dense(num_classes).

    The conv has `min(2C, 64)` filters for C < 64 input channels and 64
    otherwise, with stride 2 while the feature map is larger than 8x8: for the
    CIFAR ResNets this is exactly InfoPro's / BackLink's `1c2f` head
    (16→32 s2, 32→64 s2, 64→64 s1). A token sequence (rank 3) has no map to
    convolve: its tokens are pooled (`token_pooling`) into the two FC layers.

    Example:

    ```python
    head = ConvHead(10)
    head(keras.ops.zeros((2, 32, 32, 16))).shape   # (2, 10)
    ```
    """

    def __init__(self, num_classes, hidden_units=128, token_pooling="mean", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.hidden_units = hidden_units
        self.token_pooling = check_token_pooling(token_pooling)
        self.conv = None
        self.bn = batch_norm(f"{self.name}_bn", dtype=self.dtype_policy)
        self.relu = keras.layers.ReLU(name=f"{self.name}_relu", dtype=self.dtype_policy)
        self.pool = keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool", dtype=self.dtype_policy)
        self.hidden = keras.layers.Dense(
            hidden_units, activation="relu", name=f"{self.name}_hidden", dtype=self.dtype_policy
        )
        self.dense = keras.layers.Dense(num_classes, name=f"{self.name}_dense", dtype=self.dtype_policy)

    def build(self, input_shape):
        if len(input_shape) == 3:
            self.hidden.build((input_shape[0], input_shape[-1]))
            self.dense.build((input_shape[0], self.hidden_units))
            return
        if len(input_shape) != 4:
            raise ValueError(
                f"The 'conv' head needs image features (rank 4) or tokens (rank 3), got shape "
                f"{tuple(input_shape)}. Use head='linear' for vector features."
            )
        channels = input_shape[-1]
        filters = min(2 * channels, 64)
        strides = 2 if (input_shape[1] or 0) > 8 else 1
        self.conv = conv(filters, 3, strides, name=f"{self.name}_conv", dtype=self.dtype_policy)
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))
        self.hidden.build((input_shape[0], filters))
        self.dense.build((input_shape[0], self.hidden_units))

    def call(self, inputs, training=None):
        if len(inputs.shape) == 3:
            return self.dense(self.hidden(pool_tokens(inputs, self.token_pooling)))
        x = self.relu(self.bn(self.conv(inputs), training=training))
        return self.dense(self.hidden(self.pool(x)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "hidden_units": self.hidden_units,
            "token_pooling": self.token_pooling,
        }


HEADS.register("linear")(LinearHead)
HEADS.register("conv")(ConvHead)


# Moved to the method that owns them (keras_local 0.4); the old names warn for a version.
__getattr__ = moved_names(
    "keras_local.heads",
    {
        "DGLHead": "keras_local.methods.dgl",
        "PredSimHead": "keras_local.methods.predsim",
        "InfoProHead": "keras_local.methods.infopro",
        "Bridge": "keras_local.methods.associated",
        "pooled_size": "keras_local.methods.predsim",
    },
)

"""Auxiliary heads: the small classifiers that give each block its local loss.

`linear` is global average pooling → Dense (the network's own classifier for
the CIFAR ResNets and VGGs); `conv` is BackLink's "one 3x3 conv + two FC of 128"
(InfoPro's `1c2f` head). Both accept image features (rank 4) and token
sequences (rank 3, e.g. a ViT block's output: pooled by `token_pooling`,
the mean or the class token), and `linear` also accepts vectors (rank 2,
e.g. from an MLP).
"""

import functools
import itertools

import keras
import tensorflow as tf

from keras_local.layers import batch_norm, conv
from keras_local.registry import Registry

HEADS = Registry("head")


def list_heads():
    """Names accepted by `build_model(head=...)`."""
    return HEADS.names()


def logits_of(outputs):
    """The class logits among a head's outputs (a tensor, or a dict with "logits")."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs


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
        self.pool = keras.layers.GlobalAveragePooling2D(
            name=f"{self.name}_pool", dtype=self.dtype_policy
        )
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
        return {**super().get_config(), "num_classes": self.num_classes, "token_pooling": self.token_pooling,
                "kernel_initializer": keras.saving.serialize_keras_object(self.kernel_initializer)}


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
        self.pool = keras.layers.GlobalAveragePooling2D(
            name=f"{self.name}_pool", dtype=self.dtype_policy
        )
        self.hidden = keras.layers.Dense(
            hidden_units, activation="relu", name=f"{self.name}_hidden", dtype=self.dtype_policy
        )
        self.dense = keras.layers.Dense(
            num_classes, name=f"{self.name}_dense", dtype=self.dtype_policy
        )

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
            raise ValueError(f"DGL heads need image features (rank 4), got shape {tuple(input_shape)}: they pool "
                             f"and convolve a feature map, which tokens or vectors do not have; use head='linear' "
                             f"or 'conv'.")
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
            return [conv(channels, kernel_size, 1, name=name("conv"), dtype=dtype),
                    batch_norm(name("bn"), dtype=dtype), keras.layers.ReLU(name=name("relu"), dtype=dtype)]

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
                layers += [keras.layers.Dense(4 * channels, name=name("dense"), dtype=dtype),
                           batch_norm(name("bn"), dtype=dtype), keras.layers.ReLU(name=name("relu"), dtype=dtype)]
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
        return {**super().get_config(), "num_classes": self.num_classes, "variant": self.variant,
                "mlp_layers": self.mlp_layers}


@keras.saving.register_keras_serializable(package="keras_local")
class PredSimHead(keras.layers.Layer):
    """PredSim's local head: `{"logits", "similarity"}` for `PredSimLoss`.

    Prediction branch: image features are average-pooled (kernel doubled in
    height, then width, until the flattened size is at most `dim_in_decoder`),
    flattened, then a zero-initialised Dense gives the logits. Similarity
    branch: the extra 3x3 conv C→C without bias (a Dense C→C for vectors),
    whose output `similarity_matrix` compares with the labels'.

    Example:

    ```python
    head = PredSimHead(10, dim_in_decoder=2048)
    outputs = head(keras.ops.zeros((2, 32, 32, 128)))
    outputs["logits"].shape, outputs["similarity"].shape   # (2, 10), (2, 32, 32, 128)
    ```
    """

    def __init__(self, num_classes, dim_in_decoder=2048, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dim_in_decoder = dim_in_decoder
        self.pool = None
        self.flatten = keras.layers.Flatten(name=f"{self.name}_flatten", dtype=self.dtype_policy)
        self.decoder = keras.layers.Dense(num_classes, kernel_initializer="zeros", name=f"{self.name}_decoder",
                                          dtype=self.dtype_policy)
        self.similarity = None

    def build(self, input_shape):
        channels, dtype = input_shape[-1], self.dtype_policy
        if len(input_shape) == 4:
            height, width = pooled_size(input_shape[1], input_shape[2], channels, self.dim_in_decoder)
            if (height, width) != tuple(input_shape[1:3]):
                self.pool = keras.layers.AdaptiveAveragePooling2D((height, width), name=f"{self.name}_pool",
                                                                  dtype=dtype)
            self.similarity = keras.layers.Conv2D(channels, 3, padding="same", use_bias=False,
                                                  name=f"{self.name}_similarity", dtype=dtype)
            pooled = (input_shape[0], height, width, channels)
        else:
            self.similarity = keras.layers.Dense(channels, use_bias=False, name=f"{self.name}_similarity",
                                                 dtype=dtype)
            pooled = input_shape
        self.similarity.build(input_shape)
        self.decoder.build(self.flatten.compute_output_shape(pooled))

    def call(self, inputs, training=None):
        pooled = self.pool(inputs) if self.pool is not None else inputs
        return {"logits": self.decoder(self.flatten(pooled)), "similarity": self.similarity(inputs)}

    def compute_output_shape(self, input_shape):
        return {"logits": (input_shape[0], self.num_classes), "similarity": tuple(input_shape)}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim_in_decoder": self.dim_in_decoder}


@keras.saving.register_keras_serializable(package="keras_local")
class InfoProHead(keras.layers.Layer):
    """InfoPro's local head: `{"logits", "reconstruction"}` for `InfoProLoss`.

    The auxiliary branch is the `1c2f` net (`ConvHead`) giving class logits,
    or a 128-d embedding with `aux_loss="contrast"`; the decoder upsamples the
    features bilinearly (align_corners) to the image size, then 3x3 conv
    (→12) + BN + ReLU, 3x3 conv (→3), sigmoid.

    Example:

    ```python
    head = InfoProHead(10, image_shape=(32, 32, 3))
    outputs = head(keras.ops.zeros((2, 16, 16, 32)))
    outputs["reconstruction"].shape   # (2, 32, 32, 3)
    ```
    """

    needs_image_shape = True

    def __init__(self, num_classes, image_shape=(32, 32, 3), aux_loss="cross_entropy", embedding_size=128,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.aux_loss = aux_loss
        self.embedding_size = embedding_size
        dtype = self.dtype_policy
        outputs = embedding_size if aux_loss == "contrast" else num_classes
        self.aux = ConvHead(outputs, name=f"{self.name}_aux", dtype=dtype)
        self.decoder_conv = conv(12, 3, 1, name=f"{self.name}_decoder_conv", dtype=dtype)
        self.decoder_bn = batch_norm(f"{self.name}_decoder_bn", dtype=dtype)
        self.decoder_relu = keras.layers.ReLU(name=f"{self.name}_decoder_relu", dtype=dtype)
        self.decoder_output = keras.layers.Conv2D(self.image_shape[-1], 3, padding="same", activation="sigmoid",
                                                  name=f"{self.name}_decoder_output", dtype=dtype)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"InfoPro's head reconstructs the image from a feature map (rank 4), but this block gives "
                f"features of shape {tuple(input_shape)}, which have no spatial layout; use another method."
            )
        self.aux.build(input_shape)
        upsampled = (input_shape[0], *self.image_shape[:2], input_shape[-1])
        self.decoder_conv.build(upsampled)
        self.decoder_bn.build((input_shape[0], *self.image_shape[:2], 12))
        self.decoder_output.build((input_shape[0], *self.image_shape[:2], 12))

    def call(self, inputs, training=None):
        # Bilinear resize with align_corners, as the reference.
        upsampled = tf.compat.v1.image.resize_bilinear(inputs, self.image_shape[:2], align_corners=True)
        upsampled = keras.ops.cast(upsampled, inputs.dtype)
        x = self.decoder_relu(self.decoder_bn(self.decoder_conv(upsampled), training=training))
        return {"logits": self.aux(inputs, training=training), "reconstruction": self.decoder_output(x)}

    def compute_output_shape(self, input_shape):
        outputs = self.embedding_size if self.aux_loss == "contrast" else self.num_classes
        return {"logits": (input_shape[0], outputs), "reconstruction": (input_shape[0], *self.image_shape)}

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "image_shape": list(self.image_shape),
                "aux_loss": self.aux_loss, "embedding_size": self.embedding_size}


def pooled_size(height, width, channels, limit):
    """PredSim's decoder input size: double the pooling kernel in height, then
    in width, until channels·h·w ≤ `limit` (or the kernel covers the map)."""
    kernel_h = kernel_w = 1
    out_h, out_w = height, width
    while channels * out_h * out_w > limit and kernel_h < height:
        kernel_h *= 2
        out_h = -(-height // kernel_h)
        if channels * out_h * out_w > limit:
            kernel_w *= 2
            out_w = -(-width // kernel_w)
    return out_h, out_w


HEADS.register("linear")(LinearHead)
HEADS.register("predsim")(PredSimHead)
HEADS.register("infopro")(InfoProHead)
HEADS.register("conv")(ConvHead)
for _variant in DGLHead.VARIANTS:
    HEADS.register(_variant)(functools.partial(DGLHead, variant=_variant))


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
            keras.layers.GlobalAveragePooling2D(name=f"{self.name}_pool", dtype=dtype) if pooled
            else keras.layers.Flatten(name=f"{self.name}_flatten", dtype=dtype)
        )
        self.hidden = keras.layers.Dense(expansion * width, activation=activation, kernel_initializer="he_normal",
                                         name=f"{self.name}_hidden", dtype=dtype)
        self.dense = keras.layers.Dense(width, activation=activation, kernel_initializer="he_normal",
                                        name=f"{self.name}_dense", dtype=dtype)

    def build(self, input_shape):
        if self.pooled and len(input_shape) != 4:
            raise ValueError(f"A pooled bridge reads feature maps (rank 4), got features of shape "
                             f"{tuple(input_shape)}; use pooled=False, which flattens them.")
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
            **super().get_config(), "width": self.width, "expansion": self.expansion,
            "activation": self.activation, "pooled": self.pooled,
        }

"""Small user models for the own-model tests (importable as `own_models:residual_model` by the CLI)."""

import keras
from keras import layers


def residual_model(input_shape=(8, 8, 3), num_classes=5):
    """Stem, an identity residual block, a projection residual block, a two-branch concatenation, then
    a GAP → Dense classifier: every kind of skip a cut must not fall into."""
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(4, 3, padding="same", name="res1_conv1")(x)
    y = layers.ReLU(name="res1_relu1")(y)
    y = layers.Conv2D(4, 3, padding="same", name="res1_conv2")(y)
    x = layers.ReLU(name="res1_out")(layers.Add(name="res1_add")([x, y]))
    y = layers.Conv2D(8, 3, strides=2, padding="same", name="res2_conv1")(x)
    y = layers.ReLU(name="res2_relu1")(y)
    y = layers.Conv2D(8, 3, padding="same", name="res2_conv2")(y)
    shortcut = layers.Conv2D(8, 1, strides=2, name="res2_shortcut")(x)
    x = layers.ReLU(name="res2_out")(layers.Add(name="res2_add")([shortcut, y]))
    a = layers.Conv2D(4, 1, name="mix_a")(x)
    b = layers.Conv2D(4, 3, padding="same", name="mix_b")(x)
    x = layers.Concatenate(name="mix_concat")([a, b])
    outputs = layers.Dense(num_classes, name="logits")(layers.GlobalAveragePooling2D(name="pool")(x))
    return keras.Model(inputs, outputs, name="residual")


def token_model(input_shape=(8, 8, 3)):
    """Patches → tokens → two token-wise layers: a backbone whose features are (batch, tokens, width)."""
    inputs = keras.Input(input_shape, name="pixels")
    x = layers.Conv2D(8, 4, strides=4, name="patches")(inputs)
    x = layers.Reshape((4, 8), name="tokens")(x)
    x = layers.Dense(8, activation="relu", name="mix1")(x)
    x = layers.LayerNormalization(name="norm")(x)
    outputs = layers.Dense(8, name="mix2")(x)
    return keras.Model(inputs, outputs, name="tokens")

"""InfoPro's local head (registered as `infopro`): the auxiliary net and the image decoder."""

import keras
import tensorflow as tf

from keras_local.heads import HEADS, ConvHead
from keras_local.layers import batch_norm, conv


@HEADS.register("infopro")
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

    def __init__(self, num_classes, image_shape=(32, 32, 3), aux_loss="cross_entropy", embedding_size=128, **kwargs):
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
        self.decoder_output = keras.layers.Conv2D(
            self.image_shape[-1],
            3,
            padding="same",
            activation="sigmoid",
            name=f"{self.name}_decoder_output",
            dtype=dtype,
        )

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
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "aux_loss": self.aux_loss,
            "embedding_size": self.embedding_size,
        }

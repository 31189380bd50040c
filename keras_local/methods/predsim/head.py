"""PredSim's local head (registered as `predsim`)."""

import keras

from keras_local.heads import HEADS


@HEADS.register("predsim")
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
        self.decoder = keras.layers.Dense(
            num_classes, kernel_initializer="zeros", name=f"{self.name}_decoder", dtype=self.dtype_policy
        )
        self.similarity = None

    def build(self, input_shape):
        channels, dtype = input_shape[-1], self.dtype_policy
        if len(input_shape) == 4:
            height, width = pooled_size(input_shape[1], input_shape[2], channels, self.dim_in_decoder)
            if (height, width) != tuple(input_shape[1:3]):
                self.pool = keras.layers.AdaptiveAveragePooling2D(
                    (height, width), name=f"{self.name}_pool", dtype=dtype
                )
            self.similarity = keras.layers.Conv2D(
                channels, 3, padding="same", use_bias=False, name=f"{self.name}_similarity", dtype=dtype
            )
            pooled = (input_shape[0], height, width, channels)
        else:
            self.similarity = keras.layers.Dense(channels, use_bias=False, name=f"{self.name}_similarity", dtype=dtype)
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

"""HPFF's heads: patch feature fusion (`PatchFusion`) and the cascade pair (`CascadeHead`)."""

import keras
from keras import ops

from keras_local.heads import logits_of
from keras_local.repairs import restore_layer


@keras.saving.register_keras_serializable(package="keras_local")
class PatchFusion(keras.layers.Layer):
    """PFF: the wrapped head reads the feature map cut into a `grid` x `grid`
    array of patches (all patches of the batch at once) and its outputs are
    fused: class logits (or embeddings) are averaged over the patches, and an
    image reconstruction is put back together patch by patch (each patch
    reconstructs its part of the image, as HPFF's patch decoders do).
    `grid=1` is the head unchanged.

    Example:

    ```python
    from keras_local.heads import LinearHead

    head = PatchFusion(LinearHead(10), grid=2)
    head(keras.ops.zeros((2, 8, 8, 16))).shape   # (2, 10): the mean of 4 patches' logits
    ```
    """

    def __init__(self, head, grid=2, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.grid = grid

    def _patch_shape(self, input_shape):
        if self.grid == 1:
            return tuple(input_shape)
        if len(input_shape) != 4 or input_shape[1] % self.grid or input_shape[2] % self.grid:
            raise ValueError(
                f"hpff_patch_grid={self.grid} cuts a feature map into {self.grid}x{self.grid} patches, but this "
                f"block gives features of shape {tuple(input_shape)}: they need rank 4 and a height and width "
                f"divisible by {self.grid}. Use hpff_patch_grid=1 (no patches) or other cuts."
            )
        return (None, input_shape[1] // self.grid, input_shape[2] // self.grid, input_shape[3])

    def build(self, input_shape):
        if not self.head.built:
            self.head.build(self._patch_shape(input_shape))

    def call(self, inputs, training=None):
        if self.grid == 1:
            return self.head(inputs, training=training)
        grid, (height, width, channels) = self.grid, inputs.shape[1:]
        h, w = height // grid, width // grid
        # (B, g, h, g, w, C) → (g, g, B, h, w, C) → one batch of g²·B patches.
        patches = ops.transpose(ops.reshape(inputs, (-1, grid, h, grid, w, channels)), (1, 3, 0, 2, 4, 5))
        outputs = self.head(ops.reshape(patches, (-1, h, w, channels)), training=training)
        return keras.tree.map_structure(self._fuse, outputs)

    def _fuse(self, output):
        grid = self.grid
        if len(output.shape) == 4:  # a reconstruction: tile the patches' images back into one
            _, h, w, channels = output.shape
            tiles = ops.reshape(output, (grid, grid, -1, h, w, channels))
            return ops.reshape(ops.transpose(tiles, (2, 0, 3, 1, 4, 5)), (-1, grid * h, grid * w, channels))
        return ops.mean(ops.reshape(output, (grid * grid, -1, *output.shape[1:])), axis=0)

    def compute_output_shape(self, input_shape):
        shape = self.head.compute_output_shape(self._patch_shape(input_shape))

        def fused(each):
            each = tuple(each)
            if len(each) == 4:
                return (input_shape[0], each[1] * self.grid, each[2] * self.grid, each[3])
            return (input_shape[0], *each[1:])

        if isinstance(shape, dict):
            return {key: fused(value) for key, value in shape.items()}
        return fused(shape)

    def get_config(self):
        return {**super().get_config(), "head": keras.saving.serialize_keras_object(self.head), "grid": self.grid}

    @classmethod
    def from_config(cls, config):
        return cls(head=restore_layer(config.pop("head")), **config)


@keras.saving.register_keras_serializable(package="keras_local")
class CascadeHead(keras.layers.Layer):
    """HiLo's two auxiliary nets on one block's features: `own` (the
    independent module's) and `cascade` (the cascade module's, whose loss
    also trains the previous block). Returns `{"logits": the cascade net's
    logits (the block's readout, `acc_k`: the net trained with weight
    `cascade_weight`), "own": ..., "cascade": ...}` for `HiLoLoss`.

    Example:

    ```python
    from keras_local.heads import LinearHead

    head = CascadeHead(LinearHead(10, name="own"), LinearHead(10, name="cascade"))
    head(keras.ops.zeros((2, 8, 8, 16)))["cascade"].shape   # (2, 10)
    ```
    """

    def __init__(self, own, cascade, **kwargs):
        super().__init__(**kwargs)
        self.own = own
        self.cascade = cascade

    def build(self, input_shape):
        for head in (self.own, self.cascade):
            if not head.built:
                head.build(input_shape)

    def call(self, inputs, training=None):
        own, cascade = self.own(inputs, training=training), self.cascade(inputs, training=training)
        return {"logits": logits_of(cascade), "own": own, "cascade": cascade}

    def compute_output_shape(self, input_shape):
        own, cascade = self.own.compute_output_shape(input_shape), self.cascade.compute_output_shape(input_shape)
        return {"logits": cascade["logits"] if isinstance(cascade, dict) else cascade, "own": own, "cascade": cascade}

    def get_config(self):
        return {
            **super().get_config(),
            "own": keras.saving.serialize_keras_object(self.own),
            "cascade": keras.saving.serialize_keras_object(self.cascade),
        }

    @classmethod
    def from_config(cls, config):
        return cls(own=restore_layer(config.pop("own")), cascade=restore_layer(config.pop("cascade")), **config)

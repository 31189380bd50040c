"""A block: a run of backbone units, an optional head, and its own optimizer."""

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses.loss import scale_loss_for_distribution, unscale_loss_for_distribution


@keras.saving.register_keras_serializable(package="keras_local")
class Block(keras.Model):
    """A contiguous run of units with an auxiliary head, trained by its own optimizer.

    `call` returns the block's features (what the next block reads); `head`
    turns them into logits for the block's local loss. A compiled block trains
    on its own with `fit` (greedy sequential training): its `train_step`
    differentiates its local loss w.r.t. its own variables only.

    Args:
        units: list of backbone layers, applied in order.
        head: a layer giving logits from the features, or None (a block of
            `bp` that is not the last one has no head).
        weight_decay: coupled L2 as in PyTorch's `SGD(weight_decay=...)`:
            adds `weight_decay * w` to the gradient of every trainable
            variable of the block (Keras' optimizer `weight_decay` is the
            decoupled kind, which differs once momentum is used).

    Example:

    ```python
    block = Block([ConvBNReLU(16)], head=LinearHead(10))
    block.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    block.fit(images, labels, epochs=1)
    features = block.predict(images)     # the input of the next block
    ```
    """

    def __init__(self, units, head=None, weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
        self.units = list(units)
        self.head = head
        self.weight_decay = float(weight_decay)

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.input_shape_without_batch = shape[1:]
        for unit in self.units:  # units may come built (deserialized with their build config)
            if not unit.built:
                unit.build(shape)
            shape = tuple(unit.compute_output_shape(shape))
        if self.head is not None and not self.head.built:
            self.head.build(shape)
        self.features_shape = shape

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def call(self, inputs, training=None):
        x = inputs
        for unit in self.units:
            x = unit(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            shape = tuple(unit.compute_output_shape(shape))
        return shape

    def weight_decay_loss(self):
        """½·λ·Σ‖w‖² over the block's trainable variables (gradient λ·w),
        scaled for the number of replicas like any Keras loss."""
        if not self.weight_decay:
            return 0.0
        total = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) for v in self.trainable_variables]))
        return scale_loss_for_distribution(0.5 * self.weight_decay * total)

    def local_loss(self, y, logits):
        """The block's compiled loss (e.g. cross-entropy) on its head's logits."""
        return self.compute_loss(y=y, y_pred=logits, training=True)

    def compute_local_gradients(self, inputs, y):
        """Forward through the block and its head, and the gradients of the
        local loss (+ weight decay) w.r.t. `self.trainable_variables`.

        Returns `(features, logits, loss, gradients)`; `loss` is the local
        loss without weight decay, as Keras' losses return it (divided by the
        number of replicas under a distribution strategy). The gradients are
        scaled by the optimizer's loss scale under mixed precision, as
        `optimizer.apply` expects.
        """
        with tf.GradientTape() as tape:
            features = self(inputs, training=True)
            logits = self.head(features, training=True)
            loss = self.local_loss(y, logits)
            scaled = self.optimizer.scale_loss(loss + self.weight_decay_loss())
        gradients = tape.gradient(scaled, self.trainable_variables)
        return features, logits, loss, gradients

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        _, logits, loss, gradients = self.compute_local_gradients(x, y)
        self.optimizer.apply(gradients, self.trainable_variables)
        self._loss_tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=ops.shape(x)[0])
        return self.compute_metrics(x, y, logits)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.head(self(x, training=False), training=False)
        loss = self.compute_loss(y=y, y_pred=logits, training=False)
        self._loss_tracker.update_state(unscale_loss_for_distribution(loss), sample_weight=ops.shape(x)[0])
        return self.compute_metrics(x, y, logits)

    def get_config(self):
        return {
            "name": self.name,
            "units": [keras.saving.serialize_keras_object(unit) for unit in self.units],
            "head": keras.saving.serialize_keras_object(self.head),
            "weight_decay": self.weight_decay,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["units"] = [keras.saving.deserialize_keras_object(unit) for unit in config["units"]]
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        config["dtype"] = keras.saving.deserialize_keras_object(config.get("dtype"))
        return cls(**config)

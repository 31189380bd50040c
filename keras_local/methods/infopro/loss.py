"""InfoPro's local loss: image reconstruction plus cross-entropy or supervised contrast."""

import keras
from keras import ops

AUX_LOSSES = ("cross_entropy", "contrast")  # InfoPro's auxiliary objectives


def supervised_contrastive(embeddings, labels, temperature=0.07, base_temperature=0.07):
    """Per-example supervised contrastive loss (Khosla et al.; InfoPro's
    `SupConLoss`, one view, contrast mode "all") of L2-normalised embeddings:
    −(τ/τ_base)·mean over positives p of log softmax_{a≠i}(z_i·z_a/τ)[p].
    Examples without a positive in the batch get 0."""
    z = ops.cast(embeddings, "float32")
    z = z / ops.maximum(ops.sqrt(ops.sum(ops.square(z), axis=1, keepdims=True)), 1e-12)
    logits = ops.matmul(z, ops.transpose(z)) / temperature
    batch = ops.shape(z)[0]
    others = 1.0 - ops.eye(batch)
    logits = logits - ops.stop_gradient(ops.max(logits, axis=1, keepdims=True))
    log_probability = logits - ops.log(ops.sum(ops.exp(logits) * others, axis=1, keepdims=True))
    labels = ops.reshape(labels, (-1, 1))
    positives = ops.cast(ops.equal(labels, ops.transpose(labels)), "float32") * others
    count = ops.sum(positives, axis=1)
    mean_log_probability = ops.sum(positives * log_probability, axis=1) / ops.maximum(count, 1.0)
    return -(temperature / base_temperature) * mean_log_probability


@keras.saving.register_keras_serializable(package="keras_local")
class InfoProLoss(keras.losses.Loss):
    """InfoPro's local loss: λ1·reconstruction + λ2·(cross-entropy or contrastive).

    `y_true` is `{"labels", "images"}` (the normalised input images), `y_pred`
    an InfoPro head's `{"logits", "reconstruction"}` (`"logits"` holds the
    128-d embedding in contrast mode). The reconstruction term is the binary
    cross-entropy between the decoder's sigmoid output and the
    un-normalised image (`images · std + mean`), averaged over pixels. Plain
    logits (the network's output layer) give the cross-entropy alone.
    """

    def __init__(
        self,
        reconstruction_weight=1.0,
        aux_weight=1.0,
        aux_loss="cross_entropy",
        temperature=0.07,
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
        name="infopro",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if aux_loss not in AUX_LOSSES:
            raise ValueError(f"Unknown aux_loss {aux_loss!r}. Allowed: {', '.join(AUX_LOSSES)}.")
        self.reconstruction_weight = float(reconstruction_weight)
        self.aux_weight = float(aux_weight)
        self.aux_loss = aux_loss
        self.temperature = float(temperature)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]

    def call(self, y_true, y_pred):
        labels = y_true["labels"] if isinstance(y_true, dict) else y_true
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        if not isinstance(y_pred, dict):
            return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        if self.aux_loss == "contrast":
            aux = supervised_contrastive(y_pred["logits"], labels, self.temperature, self.temperature)
        else:
            aux = keras.losses.sparse_categorical_crossentropy(labels, y_pred["logits"], from_logits=True)
        images = ops.cast(y_true["images"], "float32") * ops.convert_to_tensor(self.image_std) + ops.convert_to_tensor(
            self.image_mean
        )
        reconstruction = ops.clip(ops.cast(y_pred["reconstruction"], "float32"), 1e-7, 1 - 1e-7)
        bce = -(images * ops.log(reconstruction) + (1 - images) * ops.log(1 - reconstruction))
        return self.reconstruction_weight * ops.mean(bce, axis=(1, 2, 3)) + self.aux_weight * aux

    def get_config(self):
        return {
            **super().get_config(),
            "reconstruction_weight": self.reconstruction_weight,
            "aux_weight": self.aux_weight,
            "aux_loss": self.aux_loss,
            "temperature": self.temperature,
            "image_mean": self.image_mean,
            "image_std": self.image_std,
        }

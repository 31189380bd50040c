"""Local losses beyond cross-entropy, as `keras.losses.Loss` subclasses.

Being `Loss` objects, they are divided by the number of replicas under a
distribution strategy like Keras' own losses.

Example:

```python
similarity_matrix(keras.ops.one_hot([0, 0, 1], 3))   # 1 within a class, -1/2 across
labels, logits, features = np.array([0, 0, 1]), np.random.normal(size=(3, 10)), np.random.normal(size=(3, 64))
loss = PredSimLoss(beta=0.99)
loss(labels, {"logits": logits, "similarity": features})
```
"""

import keras
from keras import ops


def _replicas():
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """`value / replicas` under a `tf.distribute` strategy (what Keras' `Loss`
    objects do to their result): summed over replicas, the gradients are the
    mean over the global batch. Unchanged with one replica."""
    replicas = _replicas()
    return value if replicas == 1 else ops.multiply(value, ops.cast(1.0 / replicas, value.dtype))


def unscale_for_replicas(value):
    """The inverse of `scale_for_replicas`: the loss of the replica's batch, for the metrics."""
    replicas = _replicas()
    return value if replicas == 1 else ops.multiply(value, ops.cast(replicas, value.dtype))
AUX_LOSSES = ("cross_entropy", "contrast")  # InfoPro's auxiliary objectives


def similarity_matrix(x):
    """PredSim's similarity matrix S(x) (its reference `similarity_matrix`).

    Image features (rank 4, more than 3 channels, larger than 1x1) are first
    reduced to each channel's standard deviation over the spatial positions
    (unbiased, as `torch.std`); anything else is flattened. Rows are centred,
    divided by (1e-8 + their L2 norm), and S = X·Xᵀ clamped to [−1, 1].
    """
    x = ops.cast(x, "float32")
    if len(x.shape) == 4 and x.shape[-1] > 3 and x.shape[1] * x.shape[2] > 1:
        positions = x.shape[1] * x.shape[2]
        flat = ops.reshape(x, (-1, positions, x.shape[-1]))
        mean = ops.mean(flat, axis=1, keepdims=True)
        x = ops.sqrt(ops.sum(ops.square(flat - mean), axis=1) / (positions - 1))
    else:
        x = ops.reshape(x, (ops.shape(x)[0], -1))
    x = x - ops.mean(x, axis=1, keepdims=True)
    x = x / (1e-8 + ops.sqrt(ops.sum(ops.square(x), axis=1, keepdims=True)))
    return ops.clip(ops.matmul(x, ops.transpose(x)), -1.0, 1.0)


@keras.saving.register_keras_serializable(package="keras_local")
class PredSimLoss(keras.losses.Loss):
    """PredSim's local loss: (1 − β)·CE(prediction) + β·MSE(S(similarity), S(one-hot y)).

    `y_pred` is a PredSim head's `{"logits", "similarity"}` (the similarity
    branch's features); plain logits (the network's output layer) give
    (1 − β)·CE, PredSim's global loss. Per example: (1 − β)·CE_i +
    β·mean_j (S_h − S_y)²_ij, whose batch mean is the reference's loss.
    """

    def __init__(self, beta=0.99, num_classes=None, name="predsim", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise ValueError(f"beta must be a number in [0, 1], got {beta!r}.")
        self.beta = float(beta)
        self.num_classes = num_classes

    def call(self, y_true, y_pred):
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if not isinstance(y_pred, dict):
            return (1.0 - self.beta) * cross_entropy
        one_hot = ops.one_hot(labels, self.num_classes or logits.shape[-1])
        difference = similarity_matrix(y_pred["similarity"]) - similarity_matrix(one_hot)
        return (1.0 - self.beta) * cross_entropy + self.beta * ops.mean(ops.square(difference), axis=1)

    def get_config(self):
        return {**super().get_config(), "beta": float(self.beta), "num_classes": self.num_classes}


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

    def __init__(self, reconstruction_weight=1.0, aux_weight=1.0, aux_loss="cross_entropy", temperature=0.07,
                 image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), name="infopro", **kwargs):
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
            self.image_mean)
        reconstruction = ops.clip(ops.cast(y_pred["reconstruction"], "float32"), 1e-7, 1 - 1e-7)
        bce = -(images * ops.log(reconstruction) + (1 - images) * ops.log(1 - reconstruction))
        return self.reconstruction_weight * ops.mean(bce, axis=(1, 2, 3)) + self.aux_weight * aux

    def get_config(self):
        return {**super().get_config(), "reconstruction_weight": self.reconstruction_weight,
                "aux_weight": self.aux_weight, "aux_loss": self.aux_loss, "temperature": self.temperature,
                "image_mean": self.image_mean, "image_std": self.image_std}

"""PredSim's local loss: cross-entropy and the similarity matching loss.

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

from keras_local.validation import check_number


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

    def __init__(self, beta=0.99, name="predsim", **kwargs):
        super().__init__(name=name, **kwargs)
        self.beta = check_number("beta", beta, 0, 1)

    def call(self, y_true, y_pred):
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if not isinstance(y_pred, dict):
            return (1.0 - self.beta) * cross_entropy
        one_hot = ops.one_hot(labels, logits.shape[-1])
        difference = similarity_matrix(y_pred["similarity"]) - similarity_matrix(one_hot)
        return (1.0 - self.beta) * cross_entropy + self.beta * ops.mean(ops.square(difference), axis=1)

    def get_config(self):
        return {**super().get_config(), "beta": float(self.beta)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("num_classes", None)  # saved before 0.4, unused: the one-hot labels are as wide as the logits
        return cls(**config)

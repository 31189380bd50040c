"""HiLo's loss: the independent module's and the cascade module's, weighted."""

import keras


def per_example(loss, y_true, y_pred):
    """A loss's per-example values (a `keras.losses.Loss` before its reduction, or a loss function)."""
    loss = keras.losses.get(loss)
    return loss.call(y_true, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="keras_local")
class HiLoLoss(keras.losses.Loss):
    """`own_weight · own_loss(y, own) + cascade_weight · cascade_loss(y, cascade)`
    for a `CascadeHead`'s `{"own", "cascade"}` outputs; a plain prediction
    (the network's output head, which HPFF's last module shares between both
    terms) counts for both. `part="cascade"` keeps the cascade term alone:
    the error a block sends back to the previous one.

    Example:

    ```python
    import numpy as np
    loss = HiLoLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True), cascade_weight=0.999)
    loss(np.array([0, 1]), {"own": np.zeros((2, 10)), "cascade": np.zeros((2, 10))})   # log(10)
    ```
    """

    PARTS = ("all", "cascade")

    def __init__(self, cascade_loss, own_loss=None, cascade_weight=0.999, part="all", name="hilo", **kwargs):
        super().__init__(name=name, **kwargs)
        if part not in self.PARTS:
            raise ValueError(f"Unknown part {part!r}. Allowed: {', '.join(self.PARTS)}.")
        self.cascade_loss = keras.losses.get(cascade_loss)
        self.own_loss = self.cascade_loss if own_loss is None else keras.losses.get(own_loss)
        self.cascade_weight = float(cascade_weight)
        self.part = part

    def call(self, y_true, y_pred):
        own, cascade = (y_pred["own"], y_pred["cascade"]) if "cascade" in _keys(y_pred) else (y_pred, y_pred)
        total = self.cascade_weight * per_example(self.cascade_loss, y_true, cascade)
        if self.part == "all":
            total = total + (1.0 - self.cascade_weight) * per_example(self.own_loss, y_true, own)
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "cascade_loss": keras.saving.serialize_keras_object(self.cascade_loss),
            "own_loss": keras.saving.serialize_keras_object(self.own_loss),
            "cascade_weight": self.cascade_weight,
            "part": self.part,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("cascade_loss", "own_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _keys(value):
    return value.keys() if isinstance(value, dict) else ()

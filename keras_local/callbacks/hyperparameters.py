"""`MethodHyperparameterScheduler`: a method's option (BackLink's α, BWBPF's λ, PredSim's β) changed during training.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import keras

from keras_local.callbacks.base import check_local_model


class MethodHyperparameterScheduler(keras.callbacks.Callback):
    """Changes a method's numeric option during training (BackLink's `alpha`,
    BWBPF's `lambda_global` / `lambda_local`, PredSim's `beta`).

    `schedule` is a function `epoch -> value` or a list of per-epoch values
    (the last one holds after the list ends). The option becomes a variable
    (`LocalModel.method_variable`) the first time: one retrace, then only
    assignments. Logs the value as `name`. It holds no state: on resume the
    epoch gives the value, and a `.keras` file keeps the current one as the
    method's option.

    Example:

    ```python
    anneal = kl.callbacks.MethodHyperparameterScheduler("alpha", lambda epoch: max(0.0, 1.0 - 0.1 * epoch))
    model.fit(train, epochs=1, callbacks=[anneal])
    ```
    """

    def __init__(self, name, schedule, verbose=0):
        super().__init__()
        if not callable(schedule) and not (isinstance(schedule, (list, tuple)) and schedule):
            raise ValueError(f"schedule must be a function epoch -> value or a non-empty list, got {schedule!r}.")
        self.name, self.schedule, self.verbose = name, schedule, verbose

    def value(self, epoch):
        if callable(self.schedule):
            return float(self.schedule(epoch))
        return float(self.schedule[min(epoch, len(self.schedule) - 1)])

    def on_train_begin(self, logs=None):
        check_local_model(self, self.model)
        self.model.method_variable(self.name)  # validates the name against the method

    def on_epoch_begin(self, epoch, logs=None):
        value = self.value(epoch)
        self.model.method.__class__(**{**self.model.method_options(), self.name: value})  # validates it
        self.model.method_variable(self.name).assign(value)
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.name} = {value:.6g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.name] = float(self.model.method_variable(self.name).numpy())

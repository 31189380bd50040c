"""What a training step costs: `MemoryMonitor` (memory) and `StepTimer` (time), per epoch in the logs.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import statistics
import time

import keras
import tensorflow as tf

from keras_local.memory import memory_devices


class MemoryMonitor(keras.callbacks.Callback):
    """Puts the memory of each epoch's training steps into the logs, from
    `tf.config.experimental.get_memory_info` on `devices` (default: every
    GPU, else the CPU, whose allocator keeps statistics only with
    `TF_CPU_ALLOCATOR_USE_BFC=true` set before TensorFlow starts):

    - `step_memory_mib`: the largest allocator peak of one training step
      above the memory in use when it began (activations, gradients and
      temporaries; what local training shrinks), over the epoch's steps;
    - `peak_memory_mib`: the largest absolute allocator peak of a training
      step (it adds weights, optimizer slots and the input pipeline's
      buffers; validation and callbacks are not counted).

    With several devices these are the largest over the devices, and each
    device's own are logged too, as `step_memory_mib_GPU_1`,
    `peak_memory_mib_GPU_1`, ... Without statistics it warns once and logs
    nothing.

    Example:

    ```python
    model.fit(train, epochs=2, callbacks=[kl.callbacks.MemoryMonitor(), keras.callbacks.CSVLogger("h.csv")])
    ```
    """

    def __init__(self, device=None, devices=None):
        super().__init__()
        if device is not None and devices is not None:
            raise ValueError(f"Give device or devices, not both (got {device!r} and {devices!r}).")
        self.devices = [device] if device is not None else None if devices is None else list(devices)
        self.available = True

    @property
    def device(self):
        """The first measured device (the one device of earlier versions)."""
        return None if self.devices is None else self.devices[0]

    def on_train_begin(self, logs=None):
        self._devices = self.devices or memory_devices()  # once, not at every step

    def on_epoch_begin(self, epoch, logs=None):
        self._step = dict.fromkeys(self._devices, 0)
        self._peak = dict.fromkeys(self._devices, 0)
        self._before = None

    def on_train_batch_begin(self, batch, logs=None):
        if not self.available:
            return
        try:
            for device in self._devices:
                tf.config.experimental.reset_memory_stats(device)
            self._before = {d: tf.config.experimental.get_memory_info(d)["current"] for d in self._devices}
        except (ValueError, tf.errors.OpError) as error:
            self.available = False
            print(f"MemoryMonitor: no memory statistics on {', '.join(self._devices)} ({error}); logging none.")

    def on_train_batch_end(self, batch, logs=None):
        if self.available and self._before is not None:
            for device in self._devices:
                peak = tf.config.experimental.get_memory_info(device)["peak"]
                self._step[device] = max(self._step[device], peak - self._before[device])
                self._peak[device] = max(self._peak[device], peak)

    def on_epoch_end(self, epoch, logs=None):
        if not (self.available and logs is not None and any(self._peak.values())):
            return
        logs["step_memory_mib"] = max(self._step.values()) / 2**20
        logs["peak_memory_mib"] = max(self._peak.values()) / 2**20
        if len(self._devices) > 1:
            for device in self._devices:
                name = device.split("device:")[-1].replace(":", "_")
                logs[f"step_memory_mib_{name}"] = self._step[device] / 2**20
                logs[f"peak_memory_mib_{name}"] = self._peak[device] / 2**20


class StepTimer(keras.callbacks.Callback):
    """Puts the median wall time of the epoch's training steps (seconds)
    into the logs as `step_seconds` (the first epoch's includes tracing in
    its first steps; the median keeps it out). `times` holds every timed
    step since the callback was made, over every `fit` it was given to.

    Example:

    ```python
    history = model.fit(train, epochs=2, callbacks=[kl.callbacks.StepTimer()])
    history.history["step_seconds"]
    ```
    """

    def __init__(self):
        super().__init__()
        self.times, self._times, self._start = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self._times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._start is not None:
            seconds = time.perf_counter() - self._start
            self._times.append(seconds)
            self.times.append(seconds)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._times:
            logs["step_seconds"] = float(statistics.median(self._times))

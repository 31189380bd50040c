"""What a training step costs: `MemoryMonitor` (memory) and `StepTimer` (time), per epoch in the logs.

The classes' examples reuse the `model`, `train` and `test` of `keras_local.callbacks`' example.
"""

import statistics
import time

import keras
import tensorflow as tf

from keras_local import profiling


class MemoryMonitor(keras.callbacks.Callback):
    """Puts the memory of each epoch's training steps into the logs, from
    `tf.config.experimental.get_memory_info` on `device` (default: the first
    GPU, else the CPU, whose allocator keeps statistics only with
    `TF_CPU_ALLOCATOR_USE_BFC=true` set before TensorFlow starts):

    - `step_memory_mib`: the largest allocator peak of one training step
      above the memory in use when it began (activations, gradients and
      temporaries; what local training shrinks), over the epoch's steps;
    - `peak_memory_mib`: the largest absolute allocator peak of a training
      step (it adds weights, optimizer slots and the input pipeline's
      buffers; validation and callbacks are not counted).

    Without statistics it warns once and logs nothing.

    Example:

    ```python
    model.fit(train, epochs=2, callbacks=[kl.callbacks.MemoryMonitor(), keras.callbacks.CSVLogger("h.csv")])
    ```
    """

    def __init__(self, device=None):
        super().__init__()
        self.device = device
        self.available = True

    def on_train_begin(self, logs=None):
        self._device = self.device or profiling.memory_device()  # once, not at every step

    def on_epoch_begin(self, epoch, logs=None):
        self._step, self._peak, self._before = 0, 0, None

    def on_train_batch_begin(self, batch, logs=None):
        if not self.available:
            return
        try:
            tf.config.experimental.reset_memory_stats(self._device)
        except (ValueError, tf.errors.OpError) as error:
            self.available = False
            print(f"MemoryMonitor: no memory statistics on {self._device} ({error}); logging none.")
            return
        self._before = tf.config.experimental.get_memory_info(self._device)["current"]

    def on_train_batch_end(self, batch, logs=None):
        if self.available and self._before is not None:
            peak = tf.config.experimental.get_memory_info(self._device)["peak"]
            self._step = max(self._step, peak - self._before)
            self._peak = max(self._peak, peak)

    def on_epoch_end(self, epoch, logs=None):
        if self.available and logs is not None and self._peak:
            logs["step_memory_mib"] = self._step / 2**20
            logs["peak_memory_mib"] = self._peak / 2**20


class StepTimer(keras.callbacks.Callback):
    """Puts the median wall time of the epoch's training steps (seconds)
    into the logs as `step_seconds` (the first epoch's includes tracing in
    its first steps; the median keeps it out).

    Example:

    ```python
    history = model.fit(train, epochs=2, callbacks=[kl.callbacks.StepTimer()])
    history.history["step_seconds"]
    ```
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._start is not None:
            self._times.append(time.perf_counter() - self._start)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._times:
            logs["step_seconds"] = float(statistics.median(self._times))

"""Allocator memory of the devices a step runs on: a leaf (TensorFlow only), for the profiler and the
`MemoryMonitor` callback alike.

Example:

```python
devices = memory_devices()                       # every GPU, else ["CPU:0"]
device_peaks(devices, lambda: tf.ones((256, 256)) @ tf.ones((256, 256)))   # {device: bytes or None}
```
"""

import tensorflow as tf


def memory_devices():
    """The devices whose allocators are measured: every GPU, else the CPU (logical CPUs share one allocator)."""
    gpus = [device.name.split("device:")[-1] for device in tf.config.list_logical_devices("GPU")]
    return gpus or ["CPU:0"]


def memory_device():
    """The first of `memory_devices()`."""
    return memory_devices()[0]


def device_peaks(devices, step):
    """Runs `step()` and returns each device's allocator peak during it above the memory in use before it
    (bytes; None where the allocator keeps no statistics)."""
    before = {}
    for device in devices:
        tf.config.experimental.reset_memory_stats(device)
        before[device] = tf.config.experimental.get_memory_info(device)["current"]
    step()
    peaks = {}
    for device in devices:
        peak = tf.config.experimental.get_memory_info(device)["peak"]
        peaks[device] = None if peak == 0 else peak - before[device]
    return peaks

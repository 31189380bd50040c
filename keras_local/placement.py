"""Which device each block runs on.

A block's variables, its optimizer's slots and its forward/backward pass all
go to its device, so that with the `"pipelined"` block order the K block updates
of one step run at the same time on K devices. An XLA program runs on one
device, so with XLA on a model placed on several devices compiles each block
as its own program on its own device (`keras_local.compilation`). Blocks are
placed by hand or replicated by a distribution strategy, not both: a model
with `devices` refuses to be built under a strategy's scope.

Example (two logical CPUs, set up before TensorFlow starts):

```python
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
place_blocks(4, ["/cpu:0", "/cpu:1"])   # ['/device:CPU:0', '/device:CPU:0', '/device:CPU:1', '/device:CPU:1']
model = kl.build_model("resnet20", "gll", num_blocks=4, block_order="pipelined", devices=["/cpu:0", "/cpu:1"])
```
"""

import tensorflow as tf


def _key(spec):
    """(job, task, device type, index) of a `tf.DeviceSpec`; job and task None for this process."""
    job = None if spec.job in (None, "localhost") else spec.job
    return job, (spec.task or 0) if job else None, (spec.device_type or "").upper(), spec.device_index or 0


def _name(key):
    job, task, kind, index = key
    return f"/device:{kind}:{index}" if job is None else f"/job:{job}/replica:0/task:{task}/device:{kind}:{index}"


def canonical_device(name):
    """'/cpu:1', 'CPU:1', '/device:CPU:1' or a full name → '/device:CPU:1';
    a remote one ('/job:worker/task:1/device:CPU:0', once connected to the
    cluster, see `keras_local.cluster`) → '/job:worker/replica:0/task:1/device:CPU:0'.
    Checked against the logical devices TensorFlow has."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"A device must be a string like '/cpu:1' or '/gpu:0', got {name!r}.")
    text = name.strip()
    if not text.startswith("/"):
        text = "/device:" + text
    try:
        spec = tf.DeviceSpec.from_string(text)
    except (ValueError, TypeError):
        spec = None
    available = {_key(tf.DeviceSpec.from_string(device.name)) for device in tf.config.list_logical_devices()}
    key = None if spec is None or spec.device_type is None else _key(spec)
    if key not in available:
        names = ", ".join(sorted(_name(item) for item in available))
        remote = (
            ""
            if spec is None or spec.job in (None, "localhost")
            else " A remote device exists once this process is connected to its cluster (keras_local.cluster.connect)."
        )
        raise ValueError(f"Unknown device {name!r}. Available logical devices: {names}.{remote}")
    return _name(key)


def device_exists(name):
    """Whether `canonical_device(name)` finds the device."""
    try:
        canonical_device(name)
    except ValueError:
        return False
    return True


def place_blocks(num_blocks, devices):
    """The device of each of `num_blocks` blocks: contiguous groups, as even as
    possible, in the order of `devices` (at most one device per block)."""
    if isinstance(devices, str):
        devices = [devices]
    devices = [canonical_device(device) for device in devices]
    if not devices:
        raise ValueError("devices must name at least one device, got an empty list.")
    if len(devices) > num_blocks:
        raise ValueError(
            f"{len(devices)} devices for {num_blocks} blocks: give at most one device per block (devices={devices})."
        )
    return [devices[index * len(devices) // num_blocks] for index in range(num_blocks)]

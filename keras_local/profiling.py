"""Where a step's time and memory go, block by block.

`profile_model` reports, for a model and one batch: each block's forward,
head, backward and update time; the peak memory of a training step under each
block order; and the speed-up the pipelined block order could reach with one device
per block, Σ block times / max block time (BackLink's "simulation runtime",
AL's O(n + ℓ) argument). Everything runs on copies of the model (same config,
fresh weights): the model itself is not trained.

Peak memory is the allocator's peak during a few steps minus the memory in
use before them (activations, gradients, temporaries; weights and optimizer
slots excluded), read with `tf.config.experimental.get_memory_info`. On CPU
the allocator keeps these statistics only with `TF_CPU_ALLOCATOR_USE_BFC=true`
set before TensorFlow starts (the `keras-local profile` command sets it);
without it the peak is reported as None.

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2)
x, y = next(iter(kl.data.load_dataset("cifar10_sample", "train", batch_size=64)))
report = kl.profiling.profile_model(model, x, y, repeats=2)
report["projected_speedup"], report["peak_memory_mib"]["sequential"]
```
"""

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_local.block_order import BLOCK_ORDERS
from keras_local.builder import build_model, build_model_from_config
from keras_local.memory import device_peaks, memory_device, memory_devices  # noqa: F401  (kl.profiling's too)
from keras_local.model import LocalModel
from keras_local.splitting import balanced_cuts


def fresh_copy(model, **changes):
    """A new model with `model`'s config (overridden by `changes`), built and
    compiled with SGD for measurement."""
    config = {**model.get_config(), **changes}
    copy = LocalModel.from_config(config)
    copy.build((None, *model.blocks[0].input_shape_without_batch))
    copy.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=False)
    return copy


def _median_seconds(function, arguments, repeats):
    for _ in range(2):  # trace and warm up
        function(*arguments)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = function(*arguments)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, outputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def block_times(model, x, y, repeats=10):
    """Median seconds of each block's forward, head, backward (its local
    gradients minus forward and head) and optimizer update on (x, y), each
    block reading the previous blocks' output of x."""
    copy = fresh_copy(model, block_order="together")
    targets = copy.method.targets(copy, tf.constant(x), tf.constant(y), training=False, update_metrics=False)
    features, rows = tf.constant(x), []
    for index, block in enumerate(copy.blocks):
        labels = targets[index]
        forward = tf.function(lambda inputs, block=block: block(inputs, training=True))
        outputs = forward(features)
        row = {"block": index, "units": len(block.units), "forward": _median_seconds(forward, (features,), repeats)}
        if block.head is not None and copy.method.cut_gradients:
            head = tf.function(lambda inputs, block=block: block.head(inputs, training=True))
            local = tf.function(
                lambda inputs, labels, block=block: block.compute_local_gradients(inputs, labels).gradients
            )
            row["head"] = _median_seconds(head, (outputs,), repeats)
            total = _median_seconds(local, (features, labels), repeats)
            row["backward"] = max(total - row["forward"] - row["head"], 0.0)
            gradients = local(features, labels)
            update = tf.function(
                lambda block=block, gradients=gradients: block.optimizer.apply(gradients, block.trainable_variables)
            )
            row["update"] = _median_seconds(update, (), repeats)
        row["total"] = sum(value for key, value in row.items() if key in ("forward", "head", "backward", "update"))
        rows.append(row)
        features = outputs
    return rows


def time_balanced_cuts(architecture, num_blocks, x, y, repeats=5, **build_options):
    """Cuts for `num_blocks` blocks that balance measured compute time: every
    unit of `architecture` is timed as a block of its own (forward plus
    backward, heads excluded) on (x, y), then `balanced_cuts` splits those
    times. What the pipelined block order wants: its step lasts as long as its
    slowest block (early units of a CIFAR ResNet are slower than late ones
    on CPU, at the same FLOPs)."""

    build_options = {"input_shape": tuple(np.shape(x)[1:]), **build_options}
    units = build_model(architecture, "gll", build=False, **build_options).blocks[0].units
    model = build_model(architecture, "gll", num_blocks=len(units), **build_options)
    rows = block_times(model, x, y, repeats=repeats)
    return balanced_cuts([row["forward"] + row["backward"] for row in rows], num_blocks)


def projected_speedup(rows):
    """Σ block times / max block time: the pipelined block order's speed-up with
    one device per block and no communication cost."""
    totals = [row["total"] for row in rows]
    return sum(totals) / max(totals)


def peak_memory_mib(model, x, y, block_order="together", steps=3, per_device=False):
    """Peak memory (MiB above the memory in use before) of `steps` training
    steps of a copy of `model` under `block_order`: the largest over
    `memory_devices()`, or with `per_device` a dict of each device's; None
    where the allocator keeps no statistics."""
    copy = fresh_copy(model, block_order=block_order)
    x, y = tf.constant(x), tf.constant(y)
    for _ in range(len(copy.blocks) + 1):  # trace; through the pipelined warm-up
        copy.train_on_batch(x, y)

    def train():
        for _ in range(steps):
            copy.train_on_batch(x, y)

    peaks = {
        device: None if peak is None else peak / 2**20 for device, peak in device_peaks(memory_devices(), train).items()
    }
    if per_device:
        return peaks
    measured = [peak for peak in peaks.values() if peak is not None]
    return max(measured) if measured else None


def _matmul_like_flops(op):
    """Multiply-adds ×2 of a convolution, its two gradients, or a matrix product; 0 for other ops."""
    if op.type in ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"):
        conv_output = op.outputs[0] if op.type == "Conv2D" else op.inputs[2]
        kernel = op.outputs[0] if op.type == "Conv2DBackpropFilter" else op.inputs[1]
        kernel_height, kernel_width, in_channels = kernel.shape[:3]
        return 2 * int(np.prod(conv_output.shape)) * kernel_height * kernel_width * in_channels
    if op.type == "MatMul":
        a, b = op.inputs[0].shape, op.inputs[1].shape
        rows = a[1] if op.get_attr("transpose_a") else a[0]
        inner = a[0] if op.get_attr("transpose_a") else a[1]
        columns = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * rows * inner * columns
    return 0


def step_flops(model, batch_size):
    """The floating-point work of one training step of `model`: the FLOPs of
    the convolutions, their gradients and the matrix products that the traced
    step runs (ops no output or update depends on are pruned by TensorFlow,
    so they are not counted). Machine-independent: the floor under a ratio
    of step times. Traces `model.train_step` on a batch of `batch_size`."""
    input_shape = model.blocks[0].input_shape_without_batch
    step = tf.function(fresh_copy(model).train_step, autograph=False)
    graph = step.get_concrete_function(
        (tf.TensorSpec((batch_size, *input_shape)), tf.TensorSpec((batch_size,), tf.int64))
    ).graph
    needed, stack = set(), [op for op in graph.get_operations() if op._is_stateful] + [t.op for t in graph.outputs]
    while stack:  # what the outputs and the variable updates depend on
        op = stack.pop()
        if op.name not in needed:
            needed.add(op.name)
            stack += [tensor.op for tensor in op.inputs] + list(op.control_inputs)
    return sum(_matmul_like_flops(op) for op in graph.get_operations() if op.name in needed)


def profile_config(config, ks, x, y, input_shape, num_classes, repeats=10):
    """`profile_model` of a run configuration's model at each K of `ks`,
    beside `bp`'s peak memory on the same network: `{"profiles": {K:
    report}, "bp_peak_memory_mib", "peak_memory_ratio_to_bp": {K: {block
    order: ratio}}}` (what `keras-local profile` writes)."""

    reference = build_model_from_config(
        {**config, "method": "bp", "method_options": {}, "block_order": "together", "cuts": None, "num_blocks": 1},
        input_shape,
        num_classes,
    )
    bp_peak = peak_memory_mib(reference, x, y)
    reports = {}
    for k in ks:
        model = build_model_from_config({**config, "num_blocks": k, "cuts": None}, input_shape, num_classes)
        reports[k] = profile_model(model, x, y, repeats=repeats)
    ratios = {
        k: {
            "bp": 1.0 if bp_peak else None,
            **{
                order: (peak / bp_peak if peak is not None and bp_peak else None)
                for order, peak in report["peak_memory_mib"].items()
            },
        }
        for k, report in reports.items()
    }
    return {
        "architecture": config["architecture"],
        "method": config["method"],
        "dataset": config["dataset"],
        "batch_size": int(np.shape(x)[0]),
        "bp_peak_memory_mib": bp_peak,
        "peak_memory_ratio_to_bp": ratios,
        "profiles": reports,
    }


def profile_model(model, x, y, block_orders=None, repeats=10):
    """Per-block times, projected pipelined speed-up and peak memory per
    block order (every block order the model's method allows, by default)."""
    if block_orders is None:
        block_orders = BLOCK_ORDERS if model.method.cut_gradients else ("together",)
    unknown = [block_order for block_order in block_orders if block_order not in BLOCK_ORDERS]
    if unknown:
        raise ValueError(f"Unknown block orders {unknown}. Allowed: {', '.join(BLOCK_ORDERS)}.")
    rows = block_times(model, x, y, repeats=repeats)
    return {
        "model": model.name,
        "method": model.method.name,
        "num_blocks": len(model.blocks),
        "batch_size": int(np.shape(x)[0]),
        "block_seconds": rows,
        "projected_speedup": projected_speedup(rows),
        "peak_memory_mib": {block_order: peak_memory_mib(model, x, y, block_order) for block_order in block_orders},
        "memory_device": memory_device(),
        "memory_devices": memory_devices(),
    }

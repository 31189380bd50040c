"""Local training on GPUs, in one command: step time and peak memory per device against backprop.

    python benchmarks/gpu.py        # on a GPU host: ResNet-110, batch 128, at most about 8 minutes on one GPU

One process, every row on a fresh model (peaks are read above the memory in
use before each row's steps):

- on the first device: bp against gll `together` and `sequential` (K = 4,
  balanced split), each in every `--policies` dtype policy (default float32
  and mixed_float16 on a GPU, mixed_bfloat16 on a CPU) with XLA off and on;
  step time and peak memory as ratios to bp with the same policy and XLA;
- with two or more `--devices` (default: every GPU): gll `pipelined`, its K
  blocks placed over the devices, against bp data-parallel
  (`MirroredStrategy`) over the same devices at the same global batch, as
  examples per second.

Writes `--output` (JSON: every row, the command, machine and versions) and a
Markdown table beside it (`.md`), and prints the table. A small CPU run of it
is in the test suite (`--architecture resnet8 --batch-size 8 --steps 1`).
"""

import argparse
import gc
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import step_time_and_memory, write_result  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--split", default="balanced")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (the median is kept)")
    parser.add_argument("--policies", nargs="+", default=None, help="dtype policies (default: see above)")
    parser.add_argument("--devices", nargs="+", default=None, help="devices of the parallel rows (default: every GPU)")
    parser.add_argument("--logical-cpus", type=int, default=0, help="split the CPU into this many devices first")
    parser.add_argument("--output", default="benchmarks/results/gpu.json")
    return parser.parse_args(argv)


def batch(args):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32"))
    return x, tf.constant(rng.integers(0, 10, size=args.batch_size))


def measure(args, method, block_order, policy, jit_compile, devices=None, strategy=None, num_blocks=None, split=None):
    """One row: build, compile, time and measure one model (K = `num_blocks` or `--num-blocks`, cut by
    `split` or `--split`; bp: one block); then free it."""
    import keras
    import tensorflow as tf

    import keras_local as kl

    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = kl.build_model(
            args.architecture,
            method,
            num_blocks=1 if method == "bp" else num_blocks or args.num_blocks,
            split="even" if method == "bp" else split or args.split,
            block_order=block_order,
            devices=devices,
            dtype_policy=policy,
            input_shape=(32, 32, 3),
            num_classes=10,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit_compile)
    x, y = batch(args)
    seconds, peaks = step_time_and_memory(model, x, y, args.steps, warmup_steps=len(model.blocks) + 1)
    row = {
        "method": method,
        "block_order": block_order,
        "num_blocks": len(model.blocks),
        "split": "even" if method == "bp" else split or args.split,
        "policy": policy,
        "jit_compile": jit_compile,
        "xla": "per block" if model.compiles_blocks else ("one program" if model.jit_compile else "off"),
        "devices": devices
        or ([str(d) for d in strategy.extended.worker_devices] if strategy.num_replicas_in_sync > 1 else None),
        "step_seconds": seconds,
        "examples_per_second": args.batch_size / seconds,
        "peak_mib": peaks,
    }
    del model
    gc.collect()
    keras.backend.clear_session()
    print(json.dumps(row), flush=True)
    return row


def largest(peaks):
    measured = [peak for peak in peaks.values() if peak is not None]
    return max(measured) if measured else float("nan")


def table(rows):
    lines = [
        "| rows | method | block order | policy | XLA | step | / bp | examples/s | peak per device (largest) | / bp |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['group']} | {row['method']} | {row['block_order']} | {row['policy']} | {row['xla']} "
            f"| {row['step_seconds'] * 1000:.0f} ms | {row['step_ratio_to_bp']:.2f} | {row['examples_per_second']:.0f} "
            f"| {largest(row['peak_mib']):.0f} MiB | {row['peak_ratio_to_bp']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # CPU peaks (before TensorFlow starts)
    import tensorflow as tf

    if args.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    policies = args.policies or ["float32", "mixed_float16" if gpus else "mixed_bfloat16"]
    devices = args.devices or gpus
    rows = []
    for policy in policies:
        for jit_compile in (False, True):
            for method, block_order in (("bp", "together"), ("gll", "together"), ("gll", "sequential")):
                row = measure(args, method, block_order, policy, jit_compile)
                rows.append({**row, "group": "one device"})
    if len(devices) >= 2:
        strategy = tf.distribute.MirroredStrategy(devices)
        for policy in policies:
            row = measure(args, "bp", "together", policy, "auto", strategy=strategy)
            rows.append({**row, "group": f"{len(devices)} devices, data-parallel"})
            row = measure(args, "gll", "pipelined", policy, "auto", devices=devices)
            rows.append({**row, "group": f"{len(devices)} devices, pipelined"})
    for row in rows:  # against bp in the same group, policy and XLA setting
        bp = next(
            r
            for r in rows
            if r["method"] == "bp"
            and r["policy"] == row["policy"]
            and (r["jit_compile"] == row["jit_compile"] or row["group"] != "one device")
            and (r["group"] == row["group"] or row["group"] != "one device" and r["group"] != "one device")
        )
        row["step_ratio_to_bp"] = row["step_seconds"] / bp["step_seconds"]
        row["peak_ratio_to_bp"] = largest(row["peak_mib"]) / largest(bp["peak_mib"])
    markdown = table(rows)
    print(markdown)
    write_result(args.output, {"architecture": args.architecture, "batch_size": args.batch_size, "rows": rows})
    with open(os.path.splitext(args.output)[0] + ".md", "w") as file:
        file.write(markdown + "\n")
    return rows


if __name__ == "__main__":
    main()

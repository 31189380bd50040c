"""Throughput of the pipelined block order on K logical CPU devices vs backprop, same threads.

    python benchmarks/pipeline.py --devices 2 --architecture resnet20 --batch-size 64
    python benchmarks/pipeline.py --devices 4 --architecture resnet20 --batch-size 64

The CPU is split into `--devices` logical devices and TensorFlow runs with
`intra_op_parallelism_threads=1` and `inter_op_parallelism_threads=devices`,
so each device behaves like one core. Models, timed in alternating rounds:
`bp` on one device; `gll` together on one device; `gll` pipelined with
K = devices blocks, block k on device k (its K updates have no data
dependency, so the executor runs them at the same time). Reports the
throughput ratio bp step time / model step time (ideal: K for the pipelined
model, given balanced blocks and at least K cores) and writes a JSON.

With two inter-op threads bp itself runs independent ops side by side (a
conv's input and weight gradients), so a second number is given too: bp
measured in a separate process with one inter-op thread, i.e. on one core.
`--split time` places the cuts by measured per-unit time
(`keras_local.profiling.time_balanced_cuts`), `even` and `balanced` (memory)
as in `build_model`.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--architecture", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head", default="linear")
    parser.add_argument("--split", default="time", choices=["even", "balanced", "time"])
    parser.add_argument("--inter-op", type=int, default=None, help="default: max(2, devices)")
    parser.add_argument("--bp-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/pipeline_<devices>.json")
    args = parser.parse_args()

    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    inter_op = args.inter_op or max(2, args.devices)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)

    import keras
    import numpy as np
    from timing import median_step_seconds

    import keras_local as kl

    devices = [f"/cpu:{index}" for index in range(args.devices)]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache().repeat()
    cuts = None
    if args.split == "time" and not args.bp_only:
        cuts = kl.profiling.time_balanced_cuts(
            args.architecture, args.devices, x[: args.batch_size], y[: args.batch_size], num_classes=10
        )

    def make(method, block_order="together", num_blocks=1, placed=False):
        if cuts and num_blocks > 1:
            split = {"cuts": cuts}
        else:
            split = {"num_blocks": num_blocks, "split": "even" if args.split == "time" else args.split}
        model = kl.build_model(
            args.architecture,
            method,
            head=args.head,
            block_order=block_order,
            devices=devices if placed else None,
            input_shape=(32, 32, 3),
            num_classes=10,
            **split,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
        return model

    models = {"bp": make("bp")}
    if not args.bp_only:
        models[f"gll together K={args.devices}, 1 device"] = make("gll", num_blocks=args.devices)
        models[f"gll pipelined K={args.devices}, {args.devices} devices"] = make(
            "gll", "pipelined", num_blocks=args.devices, placed=True
        )
    medians = median_step_seconds(
        models, dataset, steps=args.steps, repeats=args.repeats, warmup_steps=args.devices + 2
    )
    if args.bp_only:
        print(json.dumps(medians["bp"]))
        return
    from timing import forwarded_arguments, write_result

    one_core = subprocess.run(
        [
            sys.executable,
            __file__,
            "--bp-only",
            "--inter-op",
            "1",
            *forwarded_arguments(args, ("devices", "architecture", "batch_size", "steps", "repeats")),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    bp_one_core = json.loads(one_core.strip().splitlines()[-1])
    result = {
        "architecture": args.architecture,
        "batch_size": args.batch_size,
        "devices": args.devices,
        "split": args.split,
        "cuts": cuts,
        "threads": {"intra_op": 1, "inter_op": inter_op},
        "median_step_seconds": medians,
        "throughput_ratio_to_bp": {name: medians["bp"] / value for name, value in medians.items()},
        "bp_one_core_step_seconds": bp_one_core,
        "throughput_ratio_to_bp_on_one_core": {name: bp_one_core / value for name, value in medians.items()},
    }
    write_result(args.output or f"benchmarks/results/pipeline_{args.devices}.json", result)
    print(f"cuts: {cuts or args.split}; bp on one core (1 inter-op thread): {bp_one_core * 1000:.0f} ms")
    for name, value in medians.items():
        print(
            f"{name:40s} step {value * 1000:7.0f} ms, throughput / bp {medians['bp'] / value:.2f}, "
            f"/ bp on one core {bp_one_core / value:.2f}"
        )


if __name__ == "__main__":
    main()

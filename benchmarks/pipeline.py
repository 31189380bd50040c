"""Throughput of the pipelined block order on two devices against what else the same two cores can do.

    python benchmarks/pipeline.py --architecture resnet20 --batch-size 64
    python benchmarks/pipeline.py --methods gll backlink infopro --servers

Every row is measured in its own process (TensorFlow's thread pools are fixed when it starts), in
images per second over the median step of `--repeats` rounds of `--steps` steps:

- `pipelined` (each method of `--methods`): K = 2 blocks cut where their measured times balance,
  block k on logical CPU device k, one intra-op thread (two inter-op threads: one per device);
- `pipelined on servers` (`--servers`): the same on two local TensorFlow servers of one thread each
  (`keras_local.cluster.local_servers`, in a private network);
- (a) `bp, 2 threads`: backprop on one device, two intra-op threads;
- (b) `bp data-parallel`: backprop under `MirroredStrategy` over the two logical devices (one thread
  each), the same global batch;
- (c) `sequential`: the method's sequential block order on one device, two intra-op threads;
- `gll, one thread` and `bp, one thread`: on one core (intra- and inter-op threads 1);
- (d) the ceiling: two `bp, one thread` processes at once; ceiling = 2 x (alone / together) step
  time: what two cores give two independent jobs on this machine.

Goals: pipelined gll at least 0.9 of the ceiling (its speed-up over `gll, one thread`) and ahead of bp
data-parallel; pipelined BackLink's step within 1.10x of pipelined gll's. For each pipelined row the
JSON also holds its blocks' times measured alone (`keras_local.profiling.block_times`): their sum over
K x their maximum is the part of the step the pipeline can overlap (the rest is idle on the faster
device), and step - max block time is what the step costs beyond its slowest block (transfers between
devices, launching the step's ops, the link's extra work).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = {  # name: (method, options)
    "gll": ("gll", {}),
    "backlink": ("backlink", {"alpha": 0.5, "propagation_length": 1}),
    "bwbpf": ("bwbpf", {}),
    "dgl": ("dgl", {}),
    "predsim": ("predsim", {}),
    "infopro": ("infopro", {}),
    "associated": ("associated", {}),
    "auglocal": ("auglocal", {}),
    "gll+man": ("gll", {"man": True}),
    "gll+hpff": ("gll", {"hpff": True}),
}


def child(args):
    """One measurement in this process; prints a JSON line."""
    import tensorflow as tf

    kind, name = args.child
    devices = 1 if kind in ("single", "threads2", "sequential") else 2
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
    intra, inter = {"single": (1, 1), "threads2": (2, 2), "sequential": (2, 2)}.get(kind, (1, 2))
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)

    import keras
    import numpy as np
    from timing import median_step_seconds

    import keras_local as kl

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache().repeat()
    method, options = METHODS.get(name, ("bp", {}))
    common = {"input_shape": (32, 32, 3), "num_classes": 10}
    if method != "bp":
        common["head"] = args.head

    def build(devices=None, block_order="pipelined", strategy=None):
        cuts = kl.profiling.time_balanced_cuts(
            args.architecture, 2, x[: args.batch_size], y[: args.batch_size], num_classes=10
        )
        with strategy.scope() if strategy else contextlib.nullcontext():
            if method == "bp":
                model = kl.build_model(args.architecture, "bp", **common)
            else:
                model = kl.build_model(
                    args.architecture, method, cuts=cuts, block_order=block_order, devices=devices, **common, **options
                )
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
        return model, cuts

    report = {}
    if kind == "servers":
        with kl.cluster.local_servers(2, threads=1) as devices:
            model, report["cuts"] = build(devices)
            report["step_seconds"] = median_step_seconds(
                {name: model}, dataset, steps=args.steps, repeats=args.repeats, warmup_steps=4
            )[name]
        print(json.dumps(report))
        return
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if kind == "data-parallel" else None
    if kind == "pipelined":
        model, report["cuts"] = build(["/cpu:0", "/cpu:1"])
    elif kind == "sequential" or (kind in ("single", "threads2") and method != "bp"):
        model, report["cuts"] = build(block_order="sequential")
    else:
        model, _ = build(strategy=strategy)
    report["step_seconds"] = median_step_seconds(
        {name: model}, dataset, steps=args.steps, repeats=args.repeats, warmup_steps=4
    )[name]
    if kind == "pipelined":
        rows = kl.profiling.block_times(model, x[: args.batch_size], y[: args.batch_size], repeats=5)
        report["block_seconds"] = [row["total"] for row in rows]
    print(json.dumps(report))


def measure(args, kind, name, private_network=False, parallel=1):
    """Runs `parallel` children at once; returns their reports."""
    from keras_local import cluster

    command = [sys.executable, __file__, "--child", kind, name]
    command += ["--architecture", args.architecture, "--batch-size", str(args.batch_size), "--head", args.head]
    command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    if private_network:
        command = cluster.private_network_command(command)
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(parallel)]
    reports = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"{kind} {name} failed ({process.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    label = f"{kind} {name}"
    print(f"{label:30s} " + ", ".join(f"{r['step_seconds'] * 1000:.0f} ms" for r in reports), flush=True)
    return reports


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head", default="linear")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--servers", action="store_true", help="also gll and backlink on 2 local TensorFlow servers")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/pipeline/pipeline_2_devices.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from timing import write_result

    step = {}
    alone = measure(args, "single", "bp")[0]["step_seconds"]
    together = measure(args, "single", "bp", parallel=2)
    ceiling = 2 * alone / (sum(r["step_seconds"] for r in together) / 2)
    step["bp, one thread"] = alone
    step["gll, one thread"] = measure(args, "single", "gll")[0]["step_seconds"]
    step["bp, 2 threads"] = measure(args, "threads2", "bp")[0]["step_seconds"]
    step["bp data-parallel"] = measure(args, "data-parallel", "bp")[0]["step_seconds"]
    details = {}
    for name in args.methods:
        pipelined = measure(args, "pipelined", name)[0]
        step[f"{name} pipelined"] = pipelined["step_seconds"]
        step[f"{name} sequential"] = measure(args, "sequential", name)[0]["step_seconds"]
        blocks = pipelined["block_seconds"]
        details[name] = {
            "cuts": pipelined["cuts"],
            "block_seconds": blocks,
            "overlappable": sum(blocks) / (len(blocks) * max(blocks)),
            "beyond_slowest_block_seconds": pipelined["step_seconds"] - max(blocks),
        }
    if args.servers:
        for name in ("gll", "backlink"):
            step[f"{name} pipelined on servers"] = measure(args, "servers", name, private_network=True)[0][
                "step_seconds"
            ]
    images = {key: args.batch_size / value for key, value in step.items()}
    result = {
        "architecture": args.architecture,
        "batch_size": args.batch_size,
        "ceiling": ceiling,
        "median_step_seconds": step,
        "images_per_second": images,
        "throughput_to_bp_one_thread": {key: step["bp, one thread"] / value for key, value in step.items()},
        "pipelined_gll_of_ceiling": (step["gll, one thread"] / step["gll pipelined"]) / ceiling
        if "gll" in args.methods
        else None,
        "backlink_step_to_gll_step": step["backlink pipelined"] / step["gll pipelined"]
        if {"gll", "backlink"} <= set(args.methods)
        else None,
        "blocks": details,
    }
    write_result(args.output, result)
    print(f"ceiling (two one-thread bp processes / one): {ceiling:.2f}")
    for key, value in step.items():
        print(f"{key:32s} {value * 1000:7.0f} ms  {images[key]:7.1f} images/s")
    if result["pipelined_gll_of_ceiling"] is not None:
        print(f"pipelined gll: speed-up over one thread / ceiling = {result['pipelined_gll_of_ceiling']:.2f}")
    if result["backlink_step_to_gll_step"] is not None:
        print(f"pipelined backlink step / pipelined gll step = {result['backlink_step_to_gll_step']:.2f}")


if __name__ == "__main__":
    main()

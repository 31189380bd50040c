"""Pipelined local training with its blocks on worker processes vs backprop in one process.

    python benchmarks/remote_pipeline.py --workers 2 4 --architecture resnet20 --batch-size 64

For each W in `--workers`: W TensorFlow servers on 127.0.0.1
(`keras_local.cluster.local_servers`), each with one intra-op and one
inter-op thread, hold a pipelined `gll` model of K = W blocks (block k on
worker k, cuts balanced by measured time); this process only feeds the
batches. Against it: `bp` in one process with W intra-op and W inter-op
threads, the same total threads. Each model runs in its own process (a
process connects to one cluster), timed as `benchmarks/timing.py` does.

Bytes per step: the loopback interface's received bytes (`/proc/net/dev`)
over the timed steps, divided by the steps, against what has to cross: the
input batch (client to worker 0) and, for each cut, the activations and
labels block k sends to block k+1. Writes `benchmarks/results/remote_pipeline.json`.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def loopback_bytes():
    """Bytes received on the loopback interface so far (None where /proc/net/dev has no `lo`)."""
    try:
        with open("/proc/net/dev") as file:
            for line in file:
                name, _, fields = line.partition(":")
                if name.strip() == "lo":
                    return int(fields.split()[0])
    except OSError:
        pass
    return None


def child(args):
    """One measurement in this process: bp with W threads, or the remote pipeline of W workers."""
    import tensorflow as tf

    workers = args.workers[0]
    threads = 1 if args.child == "remote" else workers
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(workers)

    import keras
    import numpy as np
    from timing import median_step_seconds

    import keras_local as kl

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache().repeat()
    if args.child == "bp":
        model = kl.build_model(args.architecture, "bp", input_shape=(32, 32, 3), num_classes=10)
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
        print(
            json.dumps(
                {
                    "step_seconds": median_step_seconds({"bp": model}, dataset, steps=args.steps, repeats=args.repeats)[
                        "bp"
                    ]
                }
            )
        )
        return
    cuts = kl.profiling.time_balanced_cuts(
        args.architecture, workers, x[: args.batch_size], y[: args.batch_size], num_classes=10
    )
    with kl.cluster.local_servers(workers, threads=1) as devices:
        model = kl.build_model(
            args.architecture,
            "gll",
            cuts=cuts,
            head="linear",
            block_order="pipelined",
            devices=devices,
            input_shape=(32, 32, 3),
            num_classes=10,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        median_step_seconds({"remote": model}, dataset, steps=2, repeats=1, warmup_steps=workers + 2)
        before = loopback_bytes()
        seconds = median_step_seconds(
            {"remote": model}, dataset, steps=args.steps, repeats=args.repeats, warmup_steps=1
        )["remote"]
        after = loopback_bytes()
        # timed steps: per round steps + 1 (the first is dropped from the times) + the warm-up step
        steps = args.repeats * (args.steps + 1) + 1
        cut_bytes = [args.batch_size * (int(np.prod(block.features_shape[1:])) + 1) * 4 for block in model.blocks[:-1]]
        print(
            json.dumps(
                {
                    "step_seconds": seconds,
                    "cuts": cuts,
                    "devices": devices,
                    "bytes_per_step": None if before is None else (after - before) / steps,
                    "input_bytes_per_step": x[: args.batch_size].nbytes + y[: args.batch_size].nbytes,
                    "cut_bytes_per_step": cut_bytes,
                }
            )
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--architecture", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=("bp", "remote"), help=argparse.SUPPRESS)
    parser.add_argument("--output", default="benchmarks/results/remote_pipeline.json")
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = []
    from timing import forwarded_arguments, write_result

    from keras_local.cluster import private_network_command

    for workers in args.workers:
        measured = {}
        for kind in ("bp", "remote"):
            sizes = forwarded_arguments(args, ("architecture", "batch_size", "steps", "repeats"))
            command = [sys.executable, __file__, "--child", kind, "--workers", str(workers), *sizes]
            if kind == "remote":  # its servers listen on loopback only (a private network)
                command = private_network_command(command)
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            measured[kind] = json.loads(output.strip().splitlines()[-1])
        remote, bp = measured["remote"], measured["bp"]
        needed = remote["input_bytes_per_step"] + sum(remote["cut_bytes_per_step"])
        row = {
            "workers": workers,
            "bp_step_seconds": bp["step_seconds"],
            "remote_pipelined_step_seconds": remote["step_seconds"],
            "throughput_ratio_to_bp": bp["step_seconds"] / remote["step_seconds"],
            "bytes_per_step": remote["bytes_per_step"],
            "activation_bytes_per_step": needed,
            "input_bytes_per_step": remote["input_bytes_per_step"],
            "cut_bytes_per_step": remote["cut_bytes_per_step"],
            "cuts": remote["cuts"],
        }
        rows.append(row)
        sent = "n/a" if row["bytes_per_step"] is None else f"{row['bytes_per_step'] / 2**20:.2f} MiB"
        print(
            f"W={workers}: bp ({workers} threads) {bp['step_seconds'] * 1000:.0f} ms/step, pipelined on {workers} "
            f"workers {remote['step_seconds'] * 1000:.0f} ms/step -> throughput x{row['throughput_ratio_to_bp']:.2f}; "
            f"loopback {sent}/step for {needed / 2**20:.2f} MiB of input and cut activations"
        )
    write_result(args.output, {"architecture": args.architecture, "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()

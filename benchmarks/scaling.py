"""How step time and first-step (tracing) time grow with the number of blocks K.

    python benchmarks/scaling.py --architecture resnet110 --batch-size 64 --num-blocks 1 2 4 8 16

For each K a fresh `gll` model (linear heads, `--block-order`) is built; the
first `train_on_batch` (tracing plus one step) is timed, then the median of
`--steps` further steps; `bp` (one block) is measured the same way first.
Ratios are to bp's step time in the same process. Writes a JSON.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import write_result  # noqa: E402

import keras_local as kl  # noqa: E402


def measure(args, method, num_blocks, x, y):
    model = kl.build_model(
        args.architecture,
        method,
        num_blocks=num_blocks,
        head=args.head,
        block_order=args.block_order if method != "bp" else "together",
        input_shape=(32, 32, 3),
        num_classes=10,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=False)
    start = time.perf_counter()
    model.train_on_batch(x, y)
    first = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return {
        "method": method,
        "num_blocks": num_blocks,
        "first_step_seconds": first,
        "median_step_seconds": statistics.median(times),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head", default="linear")
    parser.add_argument("--block-order", default="together")
    parser.add_argument("--num-blocks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=args.batch_size))
    bp = measure(args, "bp", 1, x, y)
    print(
        f"bp: first step {bp['first_step_seconds']:.1f} s, step {bp['median_step_seconds'] * 1000:.0f} ms", flush=True
    )
    rows = []
    for num_blocks in args.num_blocks:
        row = measure(args, "gll", num_blocks, x, y)
        row["step_ratio_to_bp"] = row["median_step_seconds"] / bp["median_step_seconds"]
        row["first_step_ratio_to_bp"] = row["first_step_seconds"] / bp["first_step_seconds"]
        rows.append(row)
        print(
            f"gll K={num_blocks:2d}: first step {row['first_step_seconds']:5.1f} s "
            f"(/ bp {row['first_step_ratio_to_bp']:.2f}), step {row['median_step_seconds'] * 1000:5.0f} ms "
            f"(/ bp {row['step_ratio_to_bp']:.3f})",
            flush=True,
        )
    result = {
        "architecture": args.architecture,
        "batch_size": args.batch_size,
        "head": args.head,
        "block_order": args.block_order,
        "bp": bp,
        "rows": rows,
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()

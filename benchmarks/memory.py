"""Peak training memory of local learning (sequential block_order) vs backprop, by K and split.

    python benchmarks/memory.py --architecture resnet110 --batch-size 128 --num-blocks 2 4 8 16 \
        --splits even balanced
    python benchmarks/memory.py --architecture resnet32 --batch-size 64 --num-blocks 4 8 16 --splits even \
        --methods gll backlink:propagation_length=1 backlink:propagation_length=2 \
        --output benchmarks/results/memory_backlink.json

`--methods` takes `name` or `name:key=value,key=value` (method options).
`--dtype-policy mixed_bfloat16` (or mixed_float16) builds every row, bp's
included, in that mixed-precision policy.

Each measurement runs in its own process (the allocator's peak is process-wide):
build the model, run K + 1 training steps (tracing, the pipelined warm-up),
reset the allocator's statistics, run 3 steps and read the peak above the
memory in use before them (`keras_local.profiling.peak_memory_mib`:
activations, gradients and temporaries; weights and optimizer slots
excluded). On CPU the statistics need `TF_CPU_ALLOCATOR_USE_BFC=true`, which
this script sets for its children. Writes a JSON with every peak and its
ratio to bp.
"""

import argparse
import json
import os
import subprocess
import sys


def parse_variant(text):
    """`"backlink:propagation_length=1,alpha=0.5"` → ("backlink", {"propagation_length": 1, "alpha": 0.5})."""
    from keras_local.config import parse_method_spec  # here: the parent process spawns the measurements

    return parse_method_spec(text)


def measure(args, variant, block_order, num_blocks, split):
    """One measurement in this process; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    import keras_local as kl
    from keras_local import profiling

    method, options = parse_variant(variant)
    model = kl.build_model(
        args.architecture,
        method,
        num_blocks=num_blocks,
        split=split,
        block_order=block_order,
        head=args.head,
        input_shape=(32, 32, 3),
        num_classes=10,
        dtype_policy=args.dtype_policy,
        **options,
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size)
    peak = profiling.peak_memory_mib(model, x, y, block_order=block_order)
    print(
        json.dumps(
            {
                "method": variant,
                "block_order": block_order,
                "num_blocks": num_blocks,
                "split": split,
                "cuts": [sum(len(b.units) for b in model.blocks[:k]) for k in range(1, len(model.blocks))],
                "peak_mib": peak,
            }
        )
    )


def invalid(args, variant, num_blocks, split):
    """Why the method refuses this split (e.g. l = 2 with one-unit blocks), or None."""
    import keras_local as kl

    method, options = parse_variant(variant)
    try:
        kl.build_model(
            args.architecture, method, num_blocks=num_blocks, split=split, head=args.head, build=False, **options
        )
    except ValueError as error:
        return str(error)
    return None


def run_child(args, method, block_order, num_blocks, split):
    command = [
        sys.executable,
        __file__,
        "--child",
        method,
        block_order,
        str(num_blocks),
        split,
        "--architecture",
        args.architecture,
        "--batch-size",
        str(args.batch_size),
        "--head",
        args.head,
        "--dtype-policy",
        args.dtype_policy,
    ]
    environment = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--head", default="linear")
    parser.add_argument("--dtype-policy", default="float32", help="float32, mixed_float16 or mixed_bfloat16")
    parser.add_argument("--num-blocks", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--splits", nargs="+", default=["even", "balanced"])
    parser.add_argument("--block-orders", nargs="+", default=["sequential"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["gll"],
        help="methods to measure, each `name` or `name:key=value,...` (method options)",
    )
    parser.add_argument("--output", default="benchmarks/results/memory.json")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "SCHEDULE", "K", "SPLIT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, block_order, num_blocks, split = args.child
        measure(args, method, block_order, int(num_blocks), split)
        return
    bp = run_child(args, "bp", "together", 1, "even")
    print(f"bp: {bp['peak_mib']:.1f} MiB", flush=True)
    rows = []
    for split in args.splits:
        for block_order in args.block_orders:
            for num_blocks in args.num_blocks:
                for variant in args.methods:
                    problem = invalid(args, variant, num_blocks, split)
                    if problem:
                        print(f"{variant} K={num_blocks}: skipped ({problem})", flush=True)
                        continue
                    row = run_child(args, variant, block_order, num_blocks, split)
                    row["ratio_to_bp"] = row["peak_mib"] / bp["peak_mib"]
                    rows.append(row)
                    print(
                        f"{variant} {block_order:10s} {split:8s} K={num_blocks:2d}: {row['peak_mib']:7.1f} MiB, "
                        f"/ bp {row['ratio_to_bp']:.3f}  (cuts {row['cuts']})",
                        flush=True,
                    )
    for row in rows:  # against gll on the same split, block_order and K, where measured
        gll = next(
            (
                other
                for other in rows
                if other["method"] == "gll"
                and all(other[key] == row[key] for key in ("block_order", "num_blocks", "split"))
            ),
            None,
        )
        if gll:
            row["ratio_to_gll"] = row["peak_mib"] / gll["peak_mib"]
            print(f"{row['method']} K={row['num_blocks']}: / gll {row['ratio_to_gll']:.3f}")
    from timing import write_result

    result = {
        "architecture": args.architecture,
        "batch_size": args.batch_size,
        "head": args.head,
        "dtype_policy": args.dtype_policy,
        "bp_peak_mib": bp["peak_mib"],
        "rows": rows,
    }
    write_result(args.output, result)


if __name__ == "__main__":
    main()

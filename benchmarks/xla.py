"""Step time and peak memory with XLA on and off, per block order: what `jit_compile` does to local training.

    python benchmarks/xla.py                       # ResNet-110, batch 128, gll, K = 4 balanced and K = 16 even
    python benchmarks/xla.py --architecture resnet20 --batch-size 64 --num-blocks 4 --splits balanced

On a machine without a GPU, `jit_compile=True` runs XLA on the CPU: the same
programs a GPU would get, so the memory each block order keeps alive under
XLA is measured here too. Every row is its own process (the allocator's peak
is process-wide): build the model, compile it with `jit_compile` on or off,
run K + 1 untimed steps (tracing and XLA compilation, the pipelined warm-up),
time `--steps` steps (median), then read the peak of 3 steps above the
memory in use before them (`timing.step_time_and_memory`). bp (one XLA
program, as Keras compiles it) is measured the same way and every row is
also given as a ratio to bp with the same XLA setting.
Writes a JSON and prints a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu import largest  # noqa: E402
from gpu import measure as measure_row  # noqa: E402
from timing import write_result  # noqa: E402


def measure(args, block_order, num_blocks, split, jit_compile):
    """One row in this process (`gpu.measure`, float32); prints it as a JSON line."""
    method = "bp" if block_order == "bp" else args.method
    order = "together" if block_order == "bp" else block_order
    row = measure_row(args, method, order, "float32", jit_compile, num_blocks=num_blocks, split=split)
    print(json.dumps({**row, "block_order": block_order, "peak_mib": largest(row["peak_mib"])}))


def run_child(args, block_order, num_blocks, split, jit_compile):
    command = [sys.executable, __file__, "--child", block_order, str(num_blocks), split, str(jit_compile)]
    command += ["--architecture", args.architecture, "--batch-size", str(args.batch_size)]
    command += ["--method", args.method, "--steps", str(args.steps)]
    environment = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true", "TF_CPP_MIN_LOG_LEVEL": "2"}
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def table(rows):
    """The rows as a Markdown table: one line per block order and K, XLA off and on side by side."""
    lines = [
        "| block order | K (split) | off: step | off: peak | on: step | on: peak | on/off step | on/off peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["block_order"], r["num_blocks"], r["split"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for block_order, num_blocks, split in keys:
        off, on = (
            next(r for r in rows if (r["block_order"], r["num_blocks"], r["split"], r["jit_compile"]) == key)
            for key in ((block_order, num_blocks, split, False), (block_order, num_blocks, split, True))
        )
        lines.append(
            f"| {block_order} | {num_blocks} ({split}) "
            f"| {off['step_seconds'] * 1000:.0f} ms | {off['peak_mib']:.0f} MiB "
            f"| {on['step_seconds'] * 1000:.0f} ms | {on['peak_mib']:.0f} MiB "
            f"| {on['step_seconds'] / off['step_seconds']:.2f} | {on['peak_mib'] / off['peak_mib']:.3f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--method", default="gll")
    parser.add_argument("--num-blocks", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--splits", nargs="+", default=["balanced", "even"], help="one per --num-blocks entry")
    parser.add_argument("--block-orders", nargs="+", default=["together", "sequential", "pipelined"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default="benchmarks/results/xla.json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        block_order, num_blocks, split, jit_compile = args.child
        measure(args, block_order, int(num_blocks), split, jit_compile == "True")
        return
    if len(args.splits) != len(args.num_blocks):
        parser.error(f"--splits needs one split per --num-blocks entry, got {args.splits} for {args.num_blocks}")
    rows = []
    for jit_compile in (False, True):
        rows.append(run_child(args, "bp", 1, "even", jit_compile))
        print(json.dumps(rows[-1]), flush=True)
    for num_blocks, split in zip(args.num_blocks, args.splits):
        for block_order in args.block_orders:
            for jit_compile in (False, True):
                rows.append(run_child(args, block_order, num_blocks, split, jit_compile))
                print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        bp = next(r for r in rows if r["block_order"] == "bp" and r["jit_compile"] == row["jit_compile"])
        row["step_ratio_to_bp"] = row["step_seconds"] / bp["step_seconds"]
        row["peak_ratio_to_bp"] = row["peak_mib"] / bp["peak_mib"]
    markdown = table(rows)
    print(markdown)
    write_result(
        args.output, {"architecture": args.architecture, "batch_size": args.batch_size, "rows": rows, "table": markdown}
    )


if __name__ == "__main__":
    main()

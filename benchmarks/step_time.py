"""Median train-step time and peak memory of local methods, as ratios to backprop, same process.

    python benchmarks/step_time.py --architecture resnet32 --num-blocks 4 --batch-size 128 \
        --methods bp gll "backlink:alpha=0.5,propagation_length=1" --reference gll

Every model has the same architecture and K blocks (method options after a
colon, comma-separated; `block_order=sequential` or `split=balanced` too).
Steps alternate between the models in rounds so that machine noise hits all
alike; each step is timed with a callback around `train_step` (the
tf.function is traced before timing). Then, model by model,
`keras_local.profiling.peak_memory_mib` gives the allocator's peak above the
memory in use before a few steps (activations, gradients and temporaries;
weights and optimizer slots excluded; on CPU this needs
`TF_CPU_ALLOCATOR_USE_BFC=true`, which the script sets before importing
TensorFlow). The peaks share one process: a first estimate;
`benchmarks/memory.py` measures each model in its own. Prints and writes a JSON with the
median ratios to `bp` and to `--reference`. Each local method is also
compared with `gll` under the same block order and split where that row is
there ("/ its gll"), in time and in work: `keras_local.profiling.step_flops`,
the FLOPs of the convolutions and matrix products the traced step runs, the
floor under the time ratio that no implementation of the rule goes below.
The default rows are BackLink's (l = 1, α = 0.5) against gll in the
together and sequential block orders.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CPU allocator keeps the statistics get_memory_info reads only in its BFC mode.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import median_step_seconds, write_result  # noqa: E402

import keras_local as kl  # noqa: E402
from keras_local import profiling  # noqa: E402
from keras_local.config import parse_method_spec as parse_method  # noqa: E402

DEFAULT_METHODS = [
    "gll",
    "backlink:alpha=0.5,propagation_length=1",
    "gll:block_order=sequential",
    "backlink:alpha=0.5,propagation_length=1,block_order=sequential",
]
ORDER_KEYS = ("block_order", "split")  # what a method's gll row shares with it


def gll_of(spec, specs):
    """The spec in `specs` that is gll with `spec`'s block order and split (None if absent)."""
    method, options = parse_method(spec)
    if method in ("bp", "gll"):
        return None
    wanted = ("gll", {key: value for key, value in options.items() if key in ORDER_KEYS})
    return next((other for other in specs if parse_method(other) == wanted), None)


def make_model(args, spec):
    method, options = parse_method(spec)
    model = kl.build_model(
        args.architecture,
        method=method,
        num_blocks=args.num_blocks,
        head=None if args.head == "default" else args.head,
        input_shape=(32, 32, 3),
        num_classes=10,
        **options,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=DEFAULT_METHODS,
        help='method specs, e.g. bp gll "backlink:alpha=0.5,propagation_length=1"',
    )
    parser.add_argument("--reference", default=None, help="a second denominator besides bp (a spec)")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--head", default="linear", help='a head name, or "default": each method\'s own')
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and model")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, alternating the models")
    parser.add_argument("--output", default="benchmarks/results/step_time.json")
    args = parser.parse_args()
    specs = list(dict.fromkeys(["bp", *args.methods]))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache().repeat()
    models = {spec: make_model(args, spec) for spec in specs}
    medians = median_step_seconds(models, dataset, steps=args.steps, repeats=args.repeats)
    batch = x[: args.batch_size], y[: args.batch_size]
    memory = {
        spec: profiling.peak_memory_mib(model, *batch, block_order=model.block_order) for spec, model in models.items()
    }
    work = {spec: profiling.step_flops(model, args.batch_size) for spec, model in models.items()}
    bases = {spec: gll_of(spec, specs) for spec in specs}
    result = {
        "architecture": args.architecture,
        "num_blocks": args.num_blocks,
        "head": args.head,
        "batch_size": args.batch_size,
        "steps_per_model": args.steps * args.repeats,
        "median_step_seconds": medians,
        "step_time_ratio_to_bp": {spec: medians[spec] / medians["bp"] for spec in specs},
        "peak_memory_mib": memory,
        "peak_memory_ratio_to_bp": {spec: memory[spec] / memory["bp"] for spec in specs},
        "step_flops": work,
        "ratio_to_its_gll": {
            spec: {"step_time": medians[spec] / medians[base], "step_flops": work[spec] / work[base]}
            for spec, base in bases.items()
            if base
        },
    }
    if args.reference:
        result["step_time_ratio_to_reference"] = {spec: medians[spec] / medians[args.reference] for spec in specs}
        result["reference"] = args.reference
    write_result(args.output, result)
    print(f"{args.architecture}, K={args.num_blocks}, {args.head} heads, batch {args.batch_size}:")
    for spec in specs:
        versus = f", / {args.reference} {medians[spec] / medians[args.reference]:.3f}" if args.reference else ""
        base = bases[spec]
        own = f"; / its gll {medians[spec] / medians[base]:.3f} (work {work[spec] / work[base]:.3f})" if base else ""
        print(
            f"  {spec:45s} step {medians[spec] * 1000:6.0f} ms, / bp {medians[spec] / medians['bp']:.3f}"
            f"{versus}{own}; "
            f"peak memory {memory[spec]:7.1f} MiB, / bp {memory[spec] / memory['bp']:.3f}"
        )


if __name__ == "__main__":
    main()

"""Where the peak memory of a sequential local step goes, block by block, against backprop.

    python benchmarks/memory_breakdown.py --architecture resnet110 --batch-size 128 \
        --configs even:16 balanced:4

For each `split:K` (method gll, block order sequential), in one process:

- `step`: the library's training step (`LocalModel.train_on_batch`);
- `minimal`: the same step written as one `tf.function` per block, called one
  after the other (so nothing of block k can outlive its call): the floor a
  single-graph step can aim at;
- per block, each its own `tf.function`: `forward` (its forward alone, with
  `training=True`: nothing is kept for a backward), `backward` (forward and
  the gradients of its local loss: the activations kept for the backward,
  then the backward's temporaries) and `update` (+ the optimizer's update).

Every figure is the allocator's peak above the memory in use before
(`tf.config.experimental.get_memory_info`; on CPU with
`TF_CPU_ALLOCATOR_USE_BFC=true`, set here before TensorFlow starts), in MiB,
and as a ratio to `bp`'s step on the same network and batch. The step's
excess over the minimal is what the orchestration holds beyond one block.
"""

import argparse
import json
import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_local as kl  # noqa: E402
from keras_local import profiling  # noqa: E402


def _peak(function, repeats=3):
    """MiB of the allocator's peak above the memory in use before `repeats` calls (after one untimed call)."""
    function()
    device = profiling.memory_device()
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    for _ in range(repeats):
        function()
    return (tf.config.experimental.get_memory_info(device)["peak"] - before) / 2**20


def _model(args, method, num_blocks, split):
    model = kl.build_model(
        args.architecture,
        method,
        num_blocks=num_blocks,
        split=split,
        block_order="sequential" if method != "bp" else "together",
        input_shape=(32, 32, 3),
        num_classes=10,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    return model


def block_functions(block):
    """(forward, backward, update) of one block, each a tf.function of (inputs, labels)."""

    @tf.function
    def forward(inputs, labels):
        return block(inputs, training=True)

    @tf.function
    def backward(inputs, labels):
        return block.compute_local_gradients(inputs, labels).gradients

    @tf.function
    def update(inputs, labels):
        step = block.compute_local_gradients(inputs, labels)
        block.optimizer.apply(step.gradients, block.trainable_variables)
        return tf.stop_gradient(step.features)

    return forward, backward, update


def breakdown(args, split, num_blocks, x, y, bp_peak):
    model = _model(args, "gll", num_blocks, split)
    step = _peak(lambda: model.train_on_batch(x, y))
    functions = [block_functions(block) for block in model.blocks]
    inputs = [x]
    for _, _, update in functions[:-1]:
        inputs.append(update(inputs[-1], y))

    def minimal():
        features = x
        for _, _, update in functions:
            features = update(features, y)

    blocks = []
    for index, (forward, backward, update) in enumerate(functions):
        row = {"units": len(model.blocks[index].units)}
        for name, function in (("forward", forward), ("backward", backward), ("update", update)):
            row[name] = _peak(lambda function=function, index=index: function(inputs[index], y))
        blocks.append(row)
    largest = max(range(len(blocks)), key=lambda index: blocks[index]["update"])
    result = {
        "split": split,
        "num_blocks": num_blocks,
        "step_mib": step,
        "minimal_mib": _peak(minimal),
        "largest_block": largest,
        "blocks": blocks,
    }
    result["step_ratio_to_bp"] = step / bp_peak
    result["minimal_ratio_to_bp"] = result["minimal_mib"] / bp_peak
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet110")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--configs", nargs="+", default=["even:16", "balanced:4"], help="split:K pairs")
    parser.add_argument("--output", default="benchmarks/results/memory_breakdown.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=args.batch_size))
    bp = _model(args, "bp", 1, "even")
    bp_peak = _peak(lambda: bp.train_on_batch(x, y))
    results = []
    for config in args.configs:
        split, _, k = config.partition(":")
        result = breakdown(args, split, int(k), x, y, bp_peak)
        results.append(result)
        big = result["blocks"][result["largest_block"]]
        print(
            f"{split} K={k}: step {result['step_mib']:.1f} MiB = {result['step_ratio_to_bp']:.3f} x bp "
            f"({bp_peak:.1f} MiB); minimal {result['minimal_mib']:.1f} MiB = {result['minimal_ratio_to_bp']:.3f}"
            f" x bp; largest block {result['largest_block']} ({big['units']} units): forward alone "
            f"{big['forward']:.1f}, forward + backward {big['backward']:.1f}, "
            f"+ update {big['update'] - big['backward']:.1f}; the step holds "
            f"{result['step_mib'] - result['minimal_mib']:+.1f} MiB over the minimal"
        )
    with open(args.output, "w") as file:
        json.dump(
            {
                "architecture": args.architecture,
                "batch_size": args.batch_size,
                "bp_peak_mib": bp_peak,
                "machine": platform.platform(),
                "results": results,
            },
            file,
            indent=2,
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

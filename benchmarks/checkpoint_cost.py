"""What a mid-epoch checkpoint costs, as a ratio to a training step in the same process.

    python benchmarks/checkpoint_cost.py --architecture resnet32 --num-blocks 4 --batch-size 128

`RunCheckpoint.save` writes the weights, every block's optimizer state and the
running metrics (see `keras_local.checkpoint`). Prints the median save time,
the median step time and the overhead of `checkpoint_every = N` as
save / (N · step).
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_local as kl  # noqa: E402
from keras_local.checkpoint import RunCheckpoint  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--method", default="gll")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 10, 100])
    args = parser.parse_args()

    model = kl.build_model(
        args.architecture, method=args.method, num_blocks=args.num_blocks, input_shape=(32, 32, 3), num_classes=10
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size)
    model.train_on_batch(x, y)  # trace, build the optimizers and the metrics
    steps = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        steps.append(time.perf_counter() - start)
    saves = []
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = RunCheckpoint(directory)
        checkpoint.set_model(model)
        for step in range(args.repeats):
            start = time.perf_counter()
            checkpoint.save(epoch=0, batch=step + 1, step=step + 1)
            saves.append(time.perf_counter() - start)
        size = sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))
    step, save = statistics.median(steps), statistics.median(saves)
    print(
        f"{args.architecture} {args.method} K={args.num_blocks}, batch {args.batch_size}: "
        f"step {step * 1000:.0f} ms, save {save * 1000:.0f} ms ({size / 2**20:.1f} MiB), save/step {save / step:.2f}"
    )
    for every in args.every:
        print(f"  checkpoint_every={every}: +{100 * save / (every * step):.1f} % training time")


if __name__ == "__main__":
    main()

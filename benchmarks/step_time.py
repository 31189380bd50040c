"""Median train-step time of a local method divided by backprop's, same process.

    python benchmarks/step_time.py --architecture resnet32 --method gll --num-blocks 4 \
        --head linear --batch-size 128 --steps 30 --repeats 3

Both models are built with the same architecture and K blocks; steps alternate
between them in rounds so that machine noise hits both alike. Each step is
timed with a callback around `train_step` (the tf.function is traced before
timing). Prints and writes a JSON with the median ratio.
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_local as kl  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def make_model(args, method):
    model = kl.build_model(args.architecture, method=method, num_blocks=args.num_blocks, head=args.head,
                           input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--method", default="gll")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--head", default="linear")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round and model")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, alternating the models")
    parser.add_argument("--output", default="benchmarks/results/step_time.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size * 4, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size * 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(args.batch_size).cache().repeat()
    models = {"bp": make_model(args, "bp"), args.method: make_model(args, args.method)}
    timers = {name: StepTimer() for name in models}
    for name, model in models.items():  # trace and warm up, untimed
        model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
    for _ in range(args.repeats):
        for name, model in models.items():
            model.fit(dataset, steps_per_epoch=args.steps + 1, epochs=1, verbose=0, callbacks=[timers[name]])
            timers[name].times.pop(-args.steps - 1)  # the first step of a fit call waits on the iterator
    medians = {name: statistics.median(timer.times) for name, timer in timers.items()}
    result = {
        "architecture": args.architecture,
        "method": args.method,
        "num_blocks": args.num_blocks,
        "head": args.head,
        "batch_size": args.batch_size,
        "steps_per_model": len(timers["bp"].times),
        "median_step_seconds": medians,
        "ratio_to_bp": medians[args.method] / medians["bp"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(result, file, indent=2)
    print(f"{args.method} / bp median step time ({args.architecture}, K={args.num_blocks}, {args.head} heads, "
          f"batch {args.batch_size}): {result['ratio_to_bp']:.3f} "
          f"({medians[args.method] * 1000:.0f} ms / {medians['bp'] * 1000:.0f} ms)")


if __name__ == "__main__":
    main()

"""Step timing shared by the benchmarks: models alternate in rounds so that
machine noise hits all of them alike; medians per model."""

import json
import os
import platform
import statistics
import sys
import time

import keras

from keras_local.callbacks import StepTimer


def median_step_seconds(models, dataset, steps=20, repeats=3, warmup_steps=3):
    """{name: median seconds per step} for a dict of compiled models, timed in
    `repeats` alternating rounds of `steps` steps after an untimed warm-up
    (tracing, the pipelined warm-up). The first step of each `fit` call,
    which waits on the iterator, is dropped."""
    timers = {name: StepTimer() for name in models}
    for model in models.values():
        model.fit(dataset, steps_per_epoch=warmup_steps, epochs=1, verbose=0)
    for _ in range(repeats):
        for name, model in models.items():
            model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[timers[name]])
            timers[name].times.pop(-steps - 1)
    return {name: statistics.median(timer.times) for name, timer in timers.items()}


def step_time_and_memory(model, x, y, steps, warmup_steps):
    """(median seconds of `steps` calls of `model.train_on_batch(x, y)` after `warmup_steps` untimed ones
    (tracing, XLA compilation, the pipelined warm-up), {device: peak MiB of 3 more steps above the memory
    in use before them} on `keras_local.profiling.memory_devices()`)."""
    from keras_local import profiling

    for _ in range(warmup_steps):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)

    def three_steps():
        for _ in range(3):
            model.train_on_batch(x, y)

    peaks = profiling.device_peaks(profiling.memory_devices(), three_steps)
    return statistics.median(times), {d: None if p is None else p / 2**20 for d, p in peaks.items()}


def forwarded_arguments(args, names):
    """`--name value` pairs of the parsed `args` named in `names`, for a child
    process of the same script (each measured in a fresh process)."""
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def write_result(path, result):
    """Writes a benchmark's `result` dict to `path` as JSON, with the command
    that produced it, the machine and the Keras / TensorFlow versions."""
    import tensorflow as tf

    result = {
        **result,
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__},
    }
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as file:
        json.dump(result, file, indent=2)
    return result

"""Training-step time of this checkout against an earlier commit, in one process.

    python benchmarks/step_time_vs_commit.py --base f26d7b5 --methods gll backlink associated

The package at `--base` is extracted with `git archive` into a temporary
folder and imported as `keras_local_at_base` (its serialization names
renamed so that both register), beside this checkout's `keras_local`. For
each method both build the same model from the same seed; their
`train_on_batch` steps are timed alternately, `--repeats` rounds of
`--steps` steps, and the median ratio new / old is printed with its
spread over the rounds. A refactor that changes no computation should give
ratios within noise of 1.
"""

import argparse
import importlib
import io
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OPTIONS = {"backlink": {"alpha": 0.5, "propagation_length": 1}}
ARCHITECTURES = {"associated": "resnet20"}


def package_at(commit, folder):
    """Extracts keras_local at `commit` into `folder` as `keras_local_at_base`; returns the module."""
    archive = subprocess.run(["git", "archive", commit, "keras_local"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    old = pathlib.Path(folder) / "keras_local"
    new = pathlib.Path(folder) / "keras_local_at_base"
    old.rename(new)
    for path in new.rglob("*.py"):
        path.write_text(path.read_text().replace("keras_local", "keras_local_at_base"))
    (new / "__init__.py").write_text("")  # no data or dataset registration: the builder only
    sys.path.insert(0, folder)
    return importlib.import_module("keras_local_at_base.builder")


def timed_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--methods", nargs="+", default=["gll", "backlink", "associated"])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from keras_local.builder import build_model

    with tempfile.TemporaryDirectory() as folder:
        old_builder = package_at(args.base, folder)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
        y = rng.integers(0, 10, size=args.batch_size)
        for method in args.methods:
            models = []
            for build in (build_model, old_builder.build_model):
                keras.utils.set_random_seed(0)
                architecture = ARCHITECTURES.get(method, args.architecture)
                cut = {} if method == "associated" else {"num_blocks": args.num_blocks}
                model = build(
                    architecture,
                    method=method,
                    input_shape=(32, 32, 3),
                    num_classes=10,
                    **cut,
                    **OPTIONS.get(method, {}),
                )
                model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
                model.train_on_batch(x, y)  # trace
                models.append(model)
            ratios = []
            for _ in range(args.repeats):
                new = timed_steps(models[0], x, y, args.steps)
                old = timed_steps(models[1], x, y, args.steps)
                ratios.append(new / old)
            print(
                f"{method:>10} {architecture}: step time new/old median {statistics.median(ratios):.3f} "
                f"(rounds {min(ratios):.3f}..{max(ratios):.3f}; new {new * 1000:.0f} ms, old {old * 1000:.0f} ms)"
            )


if __name__ == "__main__":
    main()

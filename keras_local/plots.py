"""The package's plots, one function each, all saved by one helper.

- `plot_block_accuracy`: each block head's accuracy over the epochs (`BlockLogger`'s CSV);
- `plot_profile`: peak memory against K per block order, and time per block (`keras-local profile`);
- `plot_trials`: a keras-tuner search's scores, trial by trial (`keras-local tune`);
- `plot_features`: a block's features on their first two principal components (`keras-local analyze`);
- `keras_local.gradient_flow.plot_blocks`, drawn with this module's helpers: where each gradient goes
  (`keras-local plot`).

They need matplotlib (`pip install 'keras-local[plot]'`): without it they
raise `MatplotlibMissing` (an `ImportError` and a `ValueError`) saying so.
Each writes a PNG atomically and returns its path.

Example:

```python
features, labels = np.random.normal(size=(200, 64)), np.random.randint(0, 10, size=200)
plot_features(features, labels, "features.png", title="block 3")   # returns the PNG's path
```
"""

import numpy as np

from keras_local.files import atomic_path, read_block_log


class MatplotlibMissing(ImportError, ValueError):
    """Raised by every plot when matplotlib is not installed (an `ImportError`
    for code that makes plots optional, a `ValueError` for the CLI's one line)."""


def _pyplot():
    try:
        import matplotlib  # noqa: PLC0415 (optional: keras-local[plot])

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415 (after the Agg backend is chosen)
    except ImportError:
        raise MatplotlibMissing("Plotting needs matplotlib: pip install 'keras-local[plot]'.") from None
    return plt


def _save(figure, path, dpi=120):
    """Lays out, writes `path` (under a temporary name, then renamed) and closes the figure."""
    plt = _pyplot()
    figure.tight_layout()
    try:
        with atomic_path(path) as partial:
            figure.savefig(partial, dpi=dpi, format="png")
    finally:
        plt.close(figure)
    return path


def plot_block_accuracy(csv_path, path):
    """Each block head's accuracy over the epochs (from `BlockLogger`'s CSV)."""
    plt = _pyplot()

    figure, axis = plt.subplots(figsize=(6, 3.8))
    curves = read_block_log(csv_path)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, (block, points) in enumerate(curves.items()):
        epochs = [point[0] for point in points]
        colour = colours[number % len(colours)]
        label = "output" if block == "output" else f"block {block}"
        axis.plot(epochs, [point[2] for point in points], color=colour, label=label, marker=".")
        axis.plot(epochs, [point[1] for point in points], color=colour, linestyle="--", linewidth=0.8)
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy (solid: validation, dashed: train)")
    axis.legend(fontsize=8)
    return _save(figure, path, dpi=120)


def plot_profile(memory_by_blocks, rows, path, title=""):
    """PNG: peak memory vs K per schedule (left), time per block (right)."""
    plt = _pyplot()

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ks = sorted(memory_by_blocks)
    names = sorted({name for values in memory_by_blocks.values() for name in values})
    for name in names:
        values = [memory_by_blocks[k].get(name) for k in ks]
        if any(value is not None for value in values):
            left.plot(ks, [np.nan if v is None else v for v in values], marker="o", label=name)
    left.set_xlabel("blocks K")
    left.set_ylabel("peak memory (MiB)")
    left.set_xticks(ks)
    left.set_ylim(bottom=0)
    left.legend()
    bottom = np.zeros(len(rows))
    for part in ("forward", "head", "backward", "update"):
        values = np.array([row.get(part, 0.0) * 1000 for row in rows])
        right.bar([row["block"] for row in rows], values, bottom=bottom, label=part)
        bottom += values
    right.set_xticks([row["block"] for row in rows])
    right.set_xlabel("block")
    right.set_ylabel("time (ms)")
    right.legend()
    figure.suptitle(title)
    return _save(figure, path, dpi=100)


def plot_trials(trials, path, goal):
    """Every trial's score in order, coloured by method, and the best so far."""
    plt = _pyplot()

    done = [trial for trial in trials if trial["score"] is not None]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for method in sorted({trial["config"]["method"] for trial in done}):
        points = [(index, trial["score"]) for index, trial in enumerate(done) if trial["config"]["method"] == method]
        axis.scatter(*zip(*points), label=method)
    best, running = [], None
    for trial in done:
        better = running is None or (trial["score"] > running if goal.direction == "max" else trial["score"] < running)
        running = trial["score"] if better else running
        best.append(running)
    axis.plot(range(len(best)), best, color="black", linewidth=1, label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(goal.name)
    axis.legend(fontsize=8)
    return _save(figure, path, dpi=120)


def plot_features(features, labels, path, title=None):
    """A PNG scatter of the features' first two principal components, one
    colour per class."""
    plt = _pyplot()
    features = np.reshape(np.asarray(features, dtype=np.float64), (len(features), -1))
    centered = features - features.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ components[:2].T
    figure, axis = plt.subplots(figsize=(6, 6))
    scatter = axis.scatter(projected[:, 0], projected[:, 1], c=labels, cmap="tab10", s=6)
    axis.set_xlabel("PC 1")
    axis.set_ylabel("PC 2")
    if title:
        axis.set_title(title)
    if len(np.unique(labels)) <= 10:
        axis.legend(*scatter.legend_elements(), title="class", loc="best", fontsize=7)
    return _save(figure, path, dpi=120)

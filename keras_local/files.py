"""Writing run files so that none is ever left half-written under its real name.

Every file a run writes goes to a temporary name beside its target (same
folder, so the same file system) and is renamed over the target once it is
complete: `os.replace` is atomic, so a kill, a full disk or a crash leaves
either the old file or the new one, never a truncated mix.

Example:

```python
import os

model = kl.build_model("resnet8", "gll", num_blocks=2)
os.makedirs("runs/x", exist_ok=True)
with atomic_path("runs/x/model.keras") as partial:   # "runs/x/model.partial.keras"
    model.save(partial)
write_json("runs/x/summary.json", {"test_accuracy": float("nan")})   # writes null, valid JSON
```
"""

import contextlib
import csv
import json
import math
import os


def partial_path(path):
    """The temporary name `path` is written under: `model.keras` → `model.partial.keras`
    (the extension stays last, for writers that check it)."""
    folder, name = os.path.split(os.fspath(path))
    stem, dot, extension = name.partition(".")
    return os.path.join(folder, f"{stem}.partial{dot}{extension}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to `path` when the block
    succeeds and removes it when the block fails."""
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(partial)
        if isinstance(error, OSError) and not error.filename:  # e.g. ENOSPC from a write: say which file
            raise OSError(error.errno, error.strerror or str(error), os.fspath(path)) from error
        raise


def write_text(path, text):
    with atomic_path(path) as partial, open(partial, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def finite(value):
    """`value` with every non-finite float (nan, ±inf) replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def write_json(path, value):
    """Valid JSON (non-finite numbers become null), written atomically."""
    write_text(path, json.dumps(finite(value), indent=2, allow_nan=False) + "\n")


def read_json(path):
    with open(path) as file:
        return json.load(file)


def read_block_log(path):
    """`blocks.csv` as `{block: [(epoch, accuracy, val_accuracy), ...]}`."""
    curves = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            value = [int(row["epoch"])] + [
                float(row[k]) if row[k] not in ("", None) else math.nan for k in ("accuracy", "val_accuracy")
            ]
            curves.setdefault(row["block"], {})[value[0]] = tuple(value)  # a resumed epoch replaces its row
    return {block: [points[epoch] for epoch in sorted(points)] for block, points in curves.items()}

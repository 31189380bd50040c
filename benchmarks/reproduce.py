"""The papers' comparisons, like for like, at CPU scale: a declared grid, one budget for all.

    python benchmarks/reproduce.py --grid cifar10                 # run what is not done yet, then the report
    python benchmarks/reproduce.py --grid cifar10 --only "resnet20-*-k4-s0"
    python benchmarks/reproduce.py --grid power                   # the protocol with power (3 seeds, 2 recipes)
    python benchmarks/reproduce.py --report                        # only re-render the reports

The `power` grid is the one `benchmarks/results/README.md` reports: resnet8 on
5,000 CIFAR-10 images trained to the end of its schedule, whose BP seeds
agree within a point, three seeds per cell, each method under one shared
recipe and under its own reference recipe (`Method.reference_recipe`,
compressed to the grid's epochs). The first grids (`cifar10`,
`tiny_imagenet`: 2 epochs of 20,000 images, BP seeds 6-13 points apart)
are reported apart, in `benchmarks/results/first_grid/README.md`.

Every cell of a grid (network × method variant × K × seed) trains through
`keras_local.train.train_and_evaluate` with the grid's budget (the same data,
epochs, optimizer and schedule for every method) and is recorded as
`benchmarks/results/reproduce/<cell>.json`: its config overrides, library
versions, seed, per-epoch per-block metrics, final `test_accuracy`, peak
memory of the training steps (working and absolute allocator peak,
`TF_CPU_ALLOCATOR_USE_BFC`), median step time and
wall time. A re-run skips the cells already recorded, so a half-done grid
resumes. The report (`benchmarks/results/README.md`, with PNGs beside it)
is regenerated from whatever is recorded.

Local methods train with `block_order="sequential"` (the schedule that frees
each block's activations before the next block runs, where the memory
saving of local training comes from); bp trains as one block.
"""

import argparse
import csv
import fnmatch
import functools
import json
import math
import os
import pathlib
import shutil
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # the CPU allocator's peak statistics

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORDS = RESULTS / "reproduce"
POWER_RECORDS = RESULTS / "power"
DATA_DIR = str(ROOT.parent / "shared" / "data" / "tfds")

# Method variants: (method, head or None for the method's own, method options, split).
VARIANTS = {
    "bp": ("bp", None, {}, "even"),
    "gll_linear": ("gll", "linear", {}, "even"),
    "gll_conv": ("gll", "conv", {}, "even"),
    "backlink_l1": ("backlink", "linear", {"alpha": 0.5, "propagation_length": 1}, "even"),
    "backlink_l2": ("backlink", "linear", {"alpha": 0.5, "propagation_length": 2}, "even"),
    "bwbpf": ("bwbpf", "linear", {}, "even"),
    "bwbpf_ds": ("bwbpf", "linear", {"deep_supervision": True}, "even"),
    "dgl": ("dgl", None, {}, "even"),
    "predsim": ("predsim", None, {}, "even"),
    "infopro": ("infopro", None, {}, "infopro"),
    "associated": ("associated", None, {"bridge": "pooled"}, "even"),
    "associated_adam": ("associated", None, {"bridge": "pooled"}, "even"),
}
LOCAL = [name for name in VARIANTS if name not in ("bp", "associated", "associated_adam")]
# Variants whose gradient runs end to end (no memory saving): left out of "the best local method".
END_TO_END = ("bp", "bwbpf_ds")
# Where a variant leaves the grid's budget, and why. Associated Learning's sigmoid codes trained with
# MSE start slowly: the label path first settles on near-constant codes, and the bridges only begin to
# carry the class after some hundreds of steps (measured: cnn AL with Adam 1e-3 at batch 32 stays at
# chance for ~120 steps). Under the grid's budget (313 steps of SGD 0.1, or Adam 1e-3 at batch 128)
# resnet20 AL stays at chance, so this variant also takes the reference's optimizer and batch (Adam,
# batch 32: 1,250 steps). Both cells are recorded: the like-for-like one and this.
BUDGET_OVERRIDES = {"associated_adam": {"optimizer": "adam", "learning_rate": 1e-3, "batch_size": 32}}
LABELS = {
    "bp": "BP", "gll_linear": "GLL (linear)", "gll_conv": "GLL (conv)", "backlink_l1": "BackLink l=1",
    "backlink_l2": "BackLink l=2", "bwbpf": "BWBPF", "bwbpf_ds": "BWBPF (deep sup.)", "dgl": "DGL",
    "predsim": "PredSim", "infopro": "InfoPro", "associated": "Associated (grid budget)",
    "associated_adam": "Associated (Adam 1e-3, batch 32)",
}

# The CPU protocol. CIFAR-10 is the shared JPEG q75 copy; the full 10,000-image test set. One resnet20
# run takes 2-3 minutes on a quiet 2-core VM (bp: 135 s; 5-7 min beside other work); more images and
# few epochs give more accuracy per second than many epochs on few images. Tiny-ImageNet: 10,000 images
# x 2 epochs gave bp 3.2% and gll 2.4% (200 classes), too close to chance to compare methods, so its
# budget is every one of the 38,000 training images once (about 10 minutes per cell).
BUDGETS = {
    "cifar10": {
        "label": "CIFAR-10 (JPEG q75)", "dataset": "cifar10_jpeg", "train_examples": 20000, "epochs": 2,
        "batch_size": 128, "learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
        "lr_schedule": "cosine",
    },
    # BP's seed spread at this budget (3 seeds): 51.67 / 50.95 / 51.92 % test accuracy.
    "power": {
        "label": "CIFAR-10 (JPEG q75), resnet8, 5,000 training images", "dataset": "cifar10_jpeg",
        "train_examples": 5000, "epochs": 10, "batch_size": 128, "learning_rate": 0.05, "momentum": 0.9,
        "nesterov": True, "weight_decay": 5e-4, "lr_schedule": "cosine", "warmup_epochs": 1,
        "validation_freq": 0,
    },
    "tiny_imagenet": {
        "label": "Tiny-ImageNet (shared subset, 190/class; validation as test)", "dataset": "tiny_imagenet",
        "test_split": "validation", "train_examples": None, "epochs": 1, "batch_size": 128,
        "learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "lr_schedule": "cosine",
    },
}


def grid(name):
    """The declared cells of a grid, in the order they run (the K = 4 row of
    each network first, then its other K, then the second seeds)."""
    cells = []
    if name == "cifar10":
        for architecture, ks in (("resnet20", (4, 2, 8)), ("resnet32", (4, 8, 16))):
            cells.append(_cell("cifar10", architecture, "bp", 1, 0))
            cells.append(_cell("cifar10", architecture, "associated", "auto", 0))
            cells.append(_cell("cifar10", architecture, "associated_adam", "auto", 0))
            for k in ks:
                cells += [_cell("cifar10", architecture, variant, k, 0) for variant in LOCAL]
        for architecture in ("resnet20", "resnet32"):  # two seeds for the K = 4 cells
            cells.append(_cell("cifar10", architecture, "bp", 1, 1))
            cells.append(_cell("cifar10", architecture, "associated_adam", "auto", 1))
            cells += [_cell("cifar10", architecture, variant, 4, 1) for variant in LOCAL]
    elif name == "power":  # seed 0 of every cell first, then seed 1, then seed 2
        shared = [("bp", 1), ("gll_linear", 2), ("gll_linear", 4), ("backlink_l1", 2), ("backlink_l1", 4),
                  ("backlink_l2", 2), ("gll_conv", 4), ("bwbpf", 4), ("dgl", 4), ("predsim", 4), ("infopro", 4),
                  ("associated", "auto")]
        reference = [("bp", 1), ("gll_linear", 4), ("backlink_l1", 4), ("bwbpf", 4), ("dgl", 4), ("predsim", 4),
                     ("infopro", 4)]
        for seed in range(POWER_SEEDS):
            cells += [_cell("power", "resnet8", variant, k, seed) for variant, k in shared]
            cells += [_cell("power", "resnet8", variant, k, seed, recipe="reference") for variant, k in reference]
        # Associated Learning's reference (full-map bridges, ~68 M parameters, Adam at batch 32) costs
        # several times any other cell on the CPU: last.
        cells += [_cell("power", "resnet8", "associated", "auto", seed, recipe="reference")
                  for seed in range(POWER_SEEDS)]
    elif name == "tiny_imagenet":
        for variant in ("bp", "gll_linear", "backlink_l1", "bwbpf"):
            cells.append(_cell("tiny_imagenet", "resnet20", variant, 1 if variant == "bp" else 4, 0))
    else:
        raise ValueError(f"Unknown grid {name!r}. Allowed: {', '.join(BUDGETS)}.")
    return [cell for cell in cells if allowed(cell)]


def allowed(cell):
    """Whether the method accepts the cell's split (e.g. l = 2 needs blocks of at least 2 units)."""
    from keras_local.methods import get_method
    from keras_local.splitting import block_sizes, resolve_cuts

    if cell["num_blocks"] == "auto":
        return True
    num_units = _num_units(cell["architecture"])
    try:
        cuts = resolve_cuts(num_units, cell["num_blocks"], split=cell["split"], architecture=cell["architecture"])
        get_method(cell["method"], **cell["method_options"]).validate(block_sizes(num_units, cuts))
    except ValueError:
        return False
    return True


@functools.cache
def _num_units(architecture):
    from keras_local.architectures import get_architecture

    return len(get_architecture(architecture))


def _cell(protocol, architecture, variant, num_blocks, seed, recipe="shared"):
    method, head, options, split = VARIANTS[variant]
    if split == "infopro" and architecture not in ("resnet32", "resnet110"):
        split = "even"  # InfoPro's tables cover resnet32 and resnet110 only
    if recipe == "reference":  # the method's own head, split and options, but the variant's
        head = None
        options = {key: value for key, value in options.items() if key != "bridge"}
    suffix = "-ref" if recipe == "reference" else ""
    cell_id = f"{protocol}-{architecture}-{variant}-k{num_blocks}{suffix}-s{seed}"
    return {"id": cell_id, "protocol": protocol, "architecture": architecture, "variant": variant,
            "method": method, "head": head, "method_options": options, "num_blocks": num_blocks,
            "split": split, "seed": seed, "recipe": recipe}


POWER_SEEDS = 3


def reference_budget(cell, budget):
    """A reference recipe compressed to the grid's budget: the recipe's optimizer, learning rate,
    schedule shape, weight decay (and its scope), head and options, over the grid's epochs; a batch
    above the grid's is capped at it with the learning rate scaled linearly (SGD; Adam keeps its
    rate), and a warm-up keeps its fraction of training (at least one epoch)."""
    from keras_local.methods import get_method

    settings = get_method(cell["method"]).reference_recipe(cell["architecture"]).settings
    values = {"recipe": "reference", "epochs": budget["epochs"]}
    if settings["batch_size"] > budget["batch_size"]:
        values["batch_size"] = budget["batch_size"]
        if settings["optimizer"] == "sgd":
            values["learning_rate"] = settings["learning_rate"] * budget["batch_size"] / settings["batch_size"]
    if settings.get("warmup_epochs"):
        values["warmup_epochs"] = max(1, round(settings["warmup_epochs"] * budget["epochs"] / settings["epochs"]))
    return values


def overrides(cell, budget):
    """The `--set` overrides of a cell: the grid's budget, then the cell's model."""
    values = {key: value for key, value in budget.items() if key != "label" and value is not None}
    if cell.get("recipe") == "reference":  # the data of the budget, the rest the method's own
        values = {key: values[key] for key in ("dataset", "train_examples", "test_split", "validation_freq")
                  if key in values}
        values.update(reference_budget(cell, budget))
    else:
        values.update(BUDGET_OVERRIDES.get(cell["variant"], {}))
    values.update({"architecture": cell["architecture"], "method": cell["method"], "num_blocks": cell["num_blocks"],
                   "split": cell["split"], "seed": cell["seed"], "data_dir": DATA_DIR, "verbose": 0,
                   "eval_batch_size": 500,
                   "block_order": "together" if cell["method"] in ("bp", "associated") or
                   cell["method_options"].get("deep_supervision") else "sequential"})
    if cell.get("recipe") == "reference" and cell["num_blocks"] == "auto":
        values.pop("num_blocks")  # the recipe's (Associated Learning: its own components)
    if cell["head"] is not None:
        values["head"] = cell["head"]
    result = [f"{key}={_literal(value)}" for key, value in values.items()]
    result += [f"{key}={_literal(value)}" for key, value in cell["method_options"].items()]
    result.append("callbacks={memory_monitor = true, step_timer = true}")
    return result


def _literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def record_path(cell, records=RECORDS):
    return pathlib.Path(records) / f"{cell['id']}.json"


def pending(cells, records=RECORDS):
    """The cells without a record yet."""
    return [cell for cell in cells if not record_path(cell, records).exists()]


def run_cell(cell, records=RECORDS, runs="runs/reproduce"):
    """Trains one cell and writes its record; returns the record."""
    from keras_local.config import load_config
    from keras_local.methods import method_option_names
    from keras_local.train import train_and_evaluate, versions

    budget = BUDGETS[cell["protocol"]]
    sets = overrides(cell, budget)
    config = load_config(None, sets, method_option_names())
    run_dir = os.path.join(runs, cell["id"])
    # A cell without a record starts from scratch: what an interrupted or older run left in its
    # folder (a backup to resume from, CSV rows the logger would append to) is not this run's.
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train_and_evaluate(config, run_dir=run_dir)
    with open(os.path.join(run_dir, "history.csv")) as file:
        history = [{key: float(value) for key, value in row.items() if value not in ("", "NA")}
                   for row in csv.DictReader(file)]
    memory = [row["peak_memory_mib"] for row in history if "peak_memory_mib" in row]
    working = [row["step_memory_mib"] for row in history if "step_memory_mib" in row]
    steps = [row["step_seconds"] for row in history[1:] if "step_seconds" in row] or \
        [row["step_seconds"] for row in history if "step_seconds" in row]
    record = {
        "cell": cell, "dataset_label": budget["label"], "overrides": sets, "versions": versions(),
        "seed": cell["seed"], "history": history, "test_accuracy": summary["test_accuracy"],
        "block_accuracies": summary["block_accuracies"], "num_blocks": summary["num_blocks"],
        "peak_memory_mib": max(memory) if memory else None, "step_memory_mib": max(working) if working else None,
        "step_seconds": statistics.median(steps) if steps else None, "seconds": summary["seconds"],
        "load_average": os.getloadavg(),  # 1, 5, 15 min at the end: above ~2.5, something else shared the cores
    }
    path = record_path(cell, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(record, indent=1))
    os.replace(path.with_suffix(".tmp"), path)
    return record


def run_grid(cells, records=RECORDS, runner=run_cell, log=print):
    """Runs the pending cells in order (a re-run skips the recorded ones, and so does a second run of
    the same grid in parallel, e.g. `--only "*-s2"`, each cell being checked again before it starts)."""
    todo = pending(cells, records)
    log(f"{len(cells) - len(todo)} of {len(cells)} cells recorded; running {len(todo)}.")
    for cell in todo:
        if record_path(cell, records).exists():  # recorded meanwhile by another run of the grid
            continue
        record = runner(cell, records)
        log(f"{cell['id']}: test accuracy {record['test_accuracy']:.4f} in {record['seconds']:.0f} s")


# -- the report ------------------------------------------------------------------


def load_records(records=RECORDS):
    return [json.loads(path.read_text()) for path in sorted(pathlib.Path(records).glob("*.json"))]


def grid_k(record):
    """The cell's K: the number of local blocks asked for (BWBPF and PredSim build one more block, their
    output layer), or the model's own count where the method chose it (`"auto"`)."""
    k = record["cell"]["num_blocks"]
    return record["num_blocks"] if k == "auto" else k


def _batch_size(record):
    return BUDGET_OVERRIDES.get(record["cell"]["variant"], {}).get(
        "batch_size", BUDGETS[record["cell"]["protocol"]]["batch_size"])


def _error_cells(records):
    """{(protocol, architecture, variant, K): [error %, ...]} over seeds."""
    table = {}
    for record in records:
        cell = record["cell"]
        key = (cell["protocol"], cell["architecture"], cell["variant"], grid_k(record))
        table.setdefault(key, []).append(100.0 * (1.0 - record["test_accuracy"]))
    return table


def _mean_std(values):
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, statistics.stdev(values)


def _format(values):
    mean, std = _mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def render_report(records, out_dir=RESULTS):
    """Writes `README.md` (tables, findings) and the PNGs from the records."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    errors = _error_cells(records)
    # Findings and claims compare seed 0, the seed every cell has: a mean over two seeds against one
    # seed would mix seed noise into the gap (resnet20 bp: 43.25% and 51.88% at seeds 0 and 1).
    paired = _error_cells([record for record in records if record["seed"] == 0])
    lines = ["# Reproduction report (generated by `benchmarks/reproduce.py`; do not edit)", ""]
    if not records:
        lines.append("No runs recorded yet: `python benchmarks/reproduce.py --grid cifar10`.")
    by_protocol = {}
    for record in records:
        by_protocol.setdefault(record["cell"]["protocol"], []).append(record)
    plots = []
    for protocol, group in by_protocol.items():
        budget = BUDGETS[protocol]
        lines += [f"## {budget['label']}", "",
                  f"Budget for every cell: {_budget_text(budget)}. Test error % (mean ± std over seeds "
                  f"where two exist); `n` = runs.", ""]
        for architecture in sorted({r["cell"]["architecture"] for r in group}):
            ks = _ks(errors, protocol, architecture) or [1]
            lines += [f"### {architecture}", "", "| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
                      "|---" * (len(ks) + 1) + "|"]
            for variant in VARIANTS:
                row = []
                for k in ks:
                    if variant == "bp":
                        values = errors.get((protocol, architecture, "bp", 1))
                    else:
                        values = errors.get((protocol, architecture, variant, k))
                    row.append(f"{_format(values)} (n={len(values)})" if values else "–")
                if any(cell != "–" for cell in row):
                    lines.append(f"| {LABELS[variant]} | " + " | ".join(row) + " |")
            lines.append("")
            lines += ["Cost of each cell (seed 0; a training step's working memory and the absolute allocator "
                      "peak, median step time; one process, 2 CPU cores):", ""] + _cost_lines(group, architecture) + [""]
            lines += ["The papers' claims, checked on this grid (seed 0, the seed every cell has). \"Within test-set "
                      "noise\": the deciding differences are under twice their binomial standard deviation on "
                      f"{TEST_EXAMPLES:,} test images (about 1.4 points at 50% error); seed-to-seed spread is "
                      "larger still.", ""] + \
                _claims_table(paired, protocol, architecture) + [""]
            plot = _plot_error_vs_k(errors, protocol, architecture, out_dir)
            if plot:
                plots.append(plot)
                lines += [f"![error vs K, {architecture}]({plot.name})", ""]
        tradeoff = _plot_tradeoff(group, protocol, out_dir)
        if tradeoff:
            lines += ["Accuracy drop against memory saved and time, relative to BP in the same grid "
                      "(BackLink's Figure 5 layout):", "", f"![trade-off]({tradeoff.name})", ""]
        lines += ["### Findings (seed 0)", ""] + findings(group, paired, protocol) + [""]
    lines += ["## How the records were made", "",
              "Each `reproduce/<cell>.json` holds the cell, its `keras-local train` overrides, library versions, "
              "seed, per-epoch per-block metrics, test accuracy, the training steps' memory (MiB; working = allocator "
              "peak above the memory in use when a step began, absolute = the allocator's peak) and median "
              "step time. Local methods use `block_order=\"sequential\"`; bp, Associated Learning and BWBPF's "
              "deep-supervision variant train together. BackLink's α = 0.5 is the best of the small grid search "
              "`keras-local tune --config recipes/tuning/backlink_resnet20_alpha_l.toml --tuner grid` "
              "(α ∈ {0, 0.25, 0.5, 0.75, 1} × l ∈ {1, 2}, resnet20, K = 4, scored on held-out training images, "
              "never the test set). Times are ratios to the BP cell of the same network, each cell timed in its "
              "own run, the grid's cells over several sessions on machines whose speed differed (some up to ~3× "
              "slower: compare records' `step_seconds`), so read the ratios to about ±30%; a record's "
              "`load_average` shows whether it ran beside other work. `benchmarks/step_time.py` times methods "
              "against BP in one process, the like-for-like speed comparison. Every cell uses its grid's budget "
              "except "
              + "; ".join(f"{LABELS[variant]} ({', '.join(f'{k} = {v}' for k, v in values.items())})"
                          for variant, values in BUDGET_OVERRIDES.items()) + ".", ""]
    (out_dir / "README.md").write_text("\n".join(lines))
    return out_dir / "README.md"


def _budget_text(budget):
    count = budget.get("train_examples")
    examples = "all training images" if count is None else f"the first {count} training images"
    epochs = f"{budget['epochs']} epoch{'s' if budget['epochs'] != 1 else ''}"
    return (f"{examples}, {epochs}, batch {budget['batch_size']}, SGD "
            f"(Nesterov {budget['nesterov']}) lr {budget['learning_rate']} with {budget['lr_schedule']} decay, "
            f"weight decay {budget['weight_decay']} (coupled), pad-crop-flip")


def findings(group, errors, protocol):
    """Plain statements computed from the records."""
    out = []
    for architecture in sorted({r["cell"]["architecture"] for r in group}):
        bp = errors.get((protocol, architecture, "bp", 1))
        for k in _ks(errors, protocol, architecture):
            local = {v: _mean_std(errors[(protocol, architecture, v, k)])[0] for v in VARIANTS
                     if v not in END_TO_END and (protocol, architecture, v, k) in errors}
            if not local:
                continue
            best = min(local, key=local.get)
            if bp:
                bp_error = _mean_std(bp)[0]
                relation = "below" if local[best] < bp_error else "above"
                out.append(f"- {architecture}, K = {k}: the best local method is {LABELS[best]} at "
                           f"{local[best]:.2f}% error, {abs(local[best] - bp_error):.2f} points {relation} BP's "
                           f"{bp_error:.2f}%.")
            supervised = errors.get((protocol, architecture, "bwbpf_ds", k))
            if supervised and bp:
                out.append(f"  BWBPF with deep supervision (its reference code: the output loss reaches every "
                           f"block, so it is not local and saves no memory): {_mean_std(supervised)[0]:.2f}%.")
            if "bwbpf" in local and bp:
                verdict = "beats" if local["bwbpf"] < _mean_std(bp)[0] else "does not beat"
                out.append(f"  BWBPF (paper semantics) {verdict} BP here ({local['bwbpf']:.2f}% vs "
                           f"{_mean_std(bp)[0]:.2f}%): same network and schedule, unlike the paper's table.")
        linked = [k for k in _ks(errors, protocol, architecture)
                  if (protocol, architecture, "backlink_l1", k) in errors
                  and (protocol, architecture, "gll_linear", k) in errors]
        if linked:
            k = max(linked)
            link = _mean_std(errors[(protocol, architecture, "backlink_l1", k)])[0]
            gll = _mean_std(errors[(protocol, architecture, "gll_linear", k)])[0]
            trend = "reproduced in trend" if link < gll else "not reproduced"
            out.append(f"- {architecture}: BackLink (l = 1) − GLL at the largest K = {k}: {link - gll:+.2f} points, "
                       f"twice the test-set noise being {2 * _sigma(link, gll):.2f} (BackLink's claim, that the "
                       f"link lowers the error of greedy local training, is {trend}).")
    return out or ["- Not enough cells recorded for a comparison yet."]


def _ks(errors, protocol, architecture):
    return sorted({k for (p, a, v, k) in errors if p == protocol and a == architecture and k > 1})


# -- the papers' claims, checked against the records ----------------------------------
#
# Each claim is (source, statement, variants, across_k, check). A check takes {variant: {K: mean error %}}
# of one network (bp under K = 1, Associated Learning under its own K) and returns (evidence, holds,
# beyond_noise): holds is True, False, or None when the cells it needs are not recorded; beyond_noise says
# whether the deciding differences exceed twice their test-set sampling noise (see `_decide`).

# CIFAR-10's test split and Tiny-ImageNet's validation split (its test set here) hold 10,000 images each.
TEST_EXAMPLES = 10_000


class Estimate(float):
    """A mean error (%) over seeds that knows its own noise: `variance` (points²) of the mean, the
    larger of the seeds' (s² / n) and the test set's binomial variance."""

    def __new__(cls, values):
        mean = sum(values) / len(values)
        estimate = super().__new__(cls, mean)
        binomial = 100 ** 2 * (mean / 100) * (1 - mean / 100) / TEST_EXAMPLES
        seeds = statistics.variance(values) / len(values) if len(values) > 1 else 0.0
        estimate.variance = max(binomial, seeds)
        return estimate


def _sigma(*errors):
    """The standard deviation, in points, of a sum or difference of independent error rates (%): each
    an `Estimate` (seed noise of a mean over seeds) or a single run on `TEST_EXAMPLES` images
    (binomial noise)."""
    return math.sqrt(sum(getattr(e, "variance", 100 ** 2 * (e / 100) * (1 - e / 100) / TEST_EXAMPLES)
                         for e in errors))


def _decide(gaps):
    """(holds, beyond_noise) for a claim that every gap is negative, from [(gap, sigma)]. A contradiction
    counts as beyond noise when one offending gap exceeds 2 sigma; a confirmation when every gap does.
    The test set's noise is a floor: seed-to-seed spread is larger (see the tables' ± columns)."""
    holds = all(gap < 0 for gap, _ in gaps)
    if holds:
        return True, all(-gap > 2 * sigma for gap, sigma in gaps)
    return False, any(gap > 2 * sigma for gap, sigma in gaps)


def _pairwise(first, second, by_variant):
    """Evidence that `first` has a lower error than `second` at every K where both exist."""
    ks = sorted(set(by_variant.get(first, {})) & set(by_variant.get(second, {})))
    if not ks:
        return "–", None, None
    pairs = [(by_variant[first][k], by_variant[second][k]) for k in ks]
    evidence = ", ".join(f"K={k}: {a - b:+.2f}" for k, (a, b) in zip(ks, pairs))
    return (evidence, *_decide([(a - b, _sigma(a, b)) for a, b in pairs]))


def _grows_with_k(variant, by_variant):
    points = sorted(by_variant.get(variant, {}).items())
    if len(points) < 2:
        return "–", None, None
    evidence = " → ".join(f"{error:.2f} (K={k})" for k, error in points)
    return (evidence, *_decide([(a[1] - b[1], _sigma(a[1], b[1])) for a, b in zip(points, points[1:])]))


def _link_gain_grows_with_k(by_variant):
    ks = sorted(set(by_variant.get("backlink_l1", {})) & set(by_variant.get("gll_linear", {})))
    if len(ks) < 2:
        return "–", None, None
    gll, link = by_variant["gll_linear"], by_variant["backlink_l1"]
    evidence = " → ".join(f"{gll[k] - link[k]:+.2f} (K={k})" for k in ks)
    return (evidence, *_decide([((gll[a] - link[a]) - (gll[b] - link[b]), _sigma(gll[a], link[a], gll[b], link[b]))
                                for a, b in zip(ks, ks[1:])]))


def _against_bp(variant, by_variant, sign):
    """Evidence that `variant`'s error is below (sign = 1), above (sign = -1) or within 2 points
    (sign = None) of BP's at every K."""
    bp = by_variant.get("bp", {}).get(1)
    local = sorted(by_variant.get(variant, {}).items())
    if bp is None or not local:
        return "–", None, None
    evidence = ", ".join(f"K={k}: {error - bp:+.2f}" for k, error in local)
    if sign is None:  # comparable: within 2 points either way, a margin wider than the test set's noise
        return evidence, all(abs(error - bp) <= 2.0 for _, error in local), True
    return (evidence, *_decide([(sign * (error - bp), _sigma(error, bp)) for _, error in local]))


# (source, statement, the variants it compares, whether it needs several K, check).
CLAIMS = [
    ("BackLink Table 1", "GLL's error grows with K", ("gll_linear",), True,
     lambda errors: _grows_with_k("gll_linear", errors)),
    ("BackLink Table 1", "BackLink (l = 1) has a lower error than GLL at every K (linear heads)",
     ("backlink_l1", "gll_linear"), False, lambda errors: _pairwise("backlink_l1", "gll_linear", errors)),
    ("BackLink Table 1", "the gain of BackLink (l = 1) over GLL grows with K", ("backlink_l1", "gll_linear"), True,
     _link_gain_grows_with_k),
    ("BackLink §4.1", "a longer propagation lowers the error further (l = 2 below l = 1)",
     ("backlink_l2", "backlink_l1"), False, lambda errors: _pairwise("backlink_l2", "backlink_l1", errors)),
    ("InfoPro (BackLink Table 2)", "InfoPro has a lower error than GLL with a conv head at every K",
     ("infopro", "gll_conv"), False, lambda errors: _pairwise("infopro", "gll_conv", errors)),
    ("BackLink Table 2", "DGL's error grows with K", ("dgl",), True, lambda errors: _grows_with_k("dgl", errors)),
    ("BWBPF table", "BWBPF has a lower error than BP", ("bwbpf", "bp"), False,
     lambda errors: _against_bp("bwbpf", errors, 1)),
    ("BWBPF table (SEDONA baselines)", "PredSim has a higher error than BP", ("predsim", "bp"), False,
     lambda errors: _against_bp("predsim", errors, -1)),
    ("Associated Learning abstract", "Associated Learning (with Adam, as its reference) is comparable to BP "
     "(within 2 points)", ("associated_adam", "bp"), False,
     lambda errors: _against_bp("associated_adam", errors, None)),
]


def declared_ks(protocol, architecture):
    """{variant: {K, ...}}: the cells a grid declares for one network."""
    ks = {}
    for cell in grid(protocol):
        if cell["architecture"] == architecture:
            ks.setdefault(cell["variant"], set()).add(cell["num_blocks"])
    return ks


def check_claims(errors, protocol, architecture):
    """[(source, statement, evidence, holds, beyond_noise)] for one network of one grid: the claims its
    declared cells can test (the Tiny-ImageNet grid, one K and four methods, tests two)."""
    declared = declared_ks(protocol, architecture)
    by_variant = {}
    for (p, a, variant, k), values in errors.items():
        if p == protocol and a == architecture:
            by_variant.setdefault(variant, {})[k] = _mean_std(values)[0]
    return [(source, statement, *check(by_variant)) for source, statement, variants, across_k, check in CLAIMS
            if all(len(declared.get(variant, ())) >= (2 if across_k and variant != "bp" else 1)
                   for variant in variants)]


def _claims_table(errors, protocol, architecture):
    verdicts = {(True, True): "holds here", (True, False): "holds, within test-set noise",
                (False, True): "**contradicted here**", (False, False): "contradicted, within test-set noise"}
    lines = ["| source | claim | evidence (test error %, or differences in points) | verdict |", "|---|---|---|---|"]
    for source, statement, evidence, holds, beyond_noise in check_claims(errors, protocol, architecture):
        verdict = "not measured yet" if holds is None else verdicts[(holds, beyond_noise)]
        lines.append(f"| {source} | {statement} | {evidence} | {verdict} |")
    return lines


def cost_table(group, architecture):
    """[(variant, K, step memory MiB, memory saved vs BP %, absolute peak MiB, step time / BP)] for one
    network (first seed). Memory is a training step's working memory (`MemoryMonitor`'s
    `step_memory_mib`), the quantity local training shrinks."""
    records = [r for r in group if r["cell"]["architecture"] == architecture and r["cell"]["seed"] == 0]
    bp = next((r for r in records if r["cell"]["variant"] == "bp"), None)
    rows = []
    for record in sorted(records, key=lambda r: (list(VARIANTS).index(r["cell"]["variant"]), grid_k(r))):
        memory, step = record.get("step_memory_mib"), record["step_seconds"]
        same_batch = bp is not None and _batch_size(record) == _batch_size(bp)
        saved = (100 * (1 - memory / bp["step_memory_mib"])
                 if same_batch and memory and bp.get("step_memory_mib") else None)  # memory scales with the batch
        ratio = ((step / _batch_size(record)) / (bp["step_seconds"] / _batch_size(bp))
                 if bp and step and bp["step_seconds"] else None)  # per example
        rows.append((record["cell"]["variant"], grid_k(record), memory, saved, record["peak_memory_mib"], ratio))
    return rows


def _cost_lines(group, architecture):
    rows = cost_table(group, architecture)
    if not rows:
        return []

    def number(value, form):
        return "–" if value is None else format(value, form)

    lines = ["| method | K | step memory (MiB) | memory saved vs BP | absolute peak (MiB) | time per example / BP |",
             "|---|---|---|---|---|---|"]
    for variant, k, memory, saved, peak, ratio in rows:
        lines.append(f"| {LABELS[variant]} | {k} | {number(memory, '.0f')} | "
                     f"{'–' if saved is None else f'{saved:.0f}%'} | {number(peak, '.0f')} | {number(ratio, '.2f')} |")
    return lines


def _plot_error_vs_k(errors, protocol, architecture, out_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if len(_ks(errors, protocol, architecture)) < 2:
        return None  # one K (the Tiny-ImageNet grid): the table says all a plot would
    figure, axis = plt.subplots(figsize=(6, 4))
    drawn = False
    for index, variant in enumerate(VARIANTS):
        points = sorted((k, _mean_std(v)[0]) for (p, a, name, k), v in errors.items()
                        if p == protocol and a == architecture and name == variant and k > 1)
        if variant == "bp" and (protocol, architecture, "bp", 1) in errors:
            axis.axhline(_mean_std(errors[(protocol, architecture, "bp", 1)])[0], color="black",
                         linestyle="--", label="BP")
            drawn = True
        elif points:
            # More methods than the colour cycle has colours: the marker tells apart those sharing one.
            axis.plot([k for k, _ in points], [e for _, e in points], marker="os"[index // 10 % 2],
                      color=f"C{index % 10}", label=LABELS[variant])
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axis.set_xscale("log", base=2)
    axis.set_xlabel("K (blocks)")
    axis.set_ylabel("test error (%)")
    axis.set_title(f"{architecture}, {BUDGETS[protocol]['label']}")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = out_dir / f"{protocol}_{architecture}_error_vs_k.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _plot_tradeoff(group, protocol, out_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points = []
    for architecture in sorted({r["cell"]["architecture"] for r in group}):
        accuracy = {(r["cell"]["variant"], grid_k(r)): r["test_accuracy"] for r in group
                    if r["cell"]["architecture"] == architecture and r["cell"]["seed"] == 0}
        if ("bp", 1) not in accuracy:
            continue
        for variant, k, _, saved, _, ratio in cost_table(group, architecture):
            if variant != "bp" and saved is not None and ratio is not None:
                points.append((saved, 100 * (accuracy[("bp", 1)] - accuracy[(variant, k)]), ratio,
                               f"{LABELS[variant]} K={k}", architecture))
    if not points:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4.5))
    ratios = [p[2] for p in points]
    for architecture, marker in zip(sorted({p[4] for p in points}), "o^sD"):
        mine = [p for p in points if p[4] == architecture]
        scatter = axis.scatter([p[0] for p in mine], [p[1] for p in mine], c=[p[2] for p in mine], marker=marker,
                               cmap="viridis", vmin=min(ratios), vmax=max(ratios), label=architecture)
    for x, y, _, label, _ in points:
        axis.annotate(label, (x, y), fontsize=5)
    figure.colorbar(scatter, label="time per example / BP")
    axis.legend(fontsize=7)
    axis.axhline(0, color="grey", linewidth=0.5)
    axis.set_xlabel("training-step memory reduction vs BP (%)")
    axis.set_ylabel("accuracy drop vs BP (points)")
    figure.tight_layout()
    path = out_dir / f"{protocol}_tradeoff.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# -- the report of the power grid ------------------------------------------------------------

# The claims read Associated Learning's comparable-to-BP cell as "associated_adam" (the first grid's
# variant under its reference optimizer); the power grid has one "associated" variant per recipe.
POWER_ALIASES = {"associated_adam": "associated"}
MIN_SEEDS = 3
STEEP = 0.05  # a training loss still falling by more than 5 % over the last tenth of training


def _power_label(variant):
    return "Associated Learning" if variant == "associated" else LABELS[variant]


def not_converged(record):
    """Whether the cell's training loss still falls steeply at the end: by more than `STEEP` (relative)
    over the last tenth of its epochs (at least one)."""
    losses = [row["loss"] for row in record["history"] if "loss" in row]
    window = max(1, len(losses) // 10)
    if len(losses) <= window:
        return False
    before, last = losses[-1 - window], losses[-1]
    return before > 0 and (before - last) / before > STEEP


def _power_cells(records):
    """{(recipe, variant, K): [records]}."""
    cells = {}
    for record in records:
        cell = record["cell"]
        cells.setdefault((cell.get("recipe", "shared"), cell["variant"], grid_k(record)), []).append(record)
    return cells


def _group(cells, recipe, variant, k):
    """The records of one cell: BP's (one block) whatever `k`; Associated Learning's K is its
    number of components (`grid_k`)."""
    return cells.get((recipe, variant, 1 if variant == "bp" else k))


def _errors(group):
    return [100 * (1 - record["test_accuracy"]) for record in group]


def seed_spread(records, recipe="shared"):
    """(errors of BP's seeds, their standard deviation, max − min) under `recipe`."""
    bp = _errors(_power_cells(records).get((recipe, "bp", 1), []))
    if len(bp) < 2:
        return bp, None, None
    return bp, statistics.stdev(bp), max(bp) - min(bp)


def power_claims(records, recipe):
    """`check_claims` over the cells of `recipe` with at least `MIN_SEEDS` seeds; each cell's mean
    carries its seed noise (`Estimate`), so a verdict "beyond noise" means beyond twice the standard
    deviation of the difference of means."""
    errors = {}
    for (cell_recipe, variant, k), group in _power_cells(records).items():
        if cell_recipe == recipe and len(group) >= MIN_SEEDS:
            errors[("power", "resnet8", POWER_ALIASES.get(variant, variant), k)] = _errors(group)
    by_variant = {}
    for (_, _, variant, k), values in errors.items():
        by_variant.setdefault(variant, {})[k] = Estimate(values)
    for alias, variant in POWER_ALIASES.items():
        if variant in by_variant:
            by_variant[alias] = by_variant[variant]
    declared = {}
    for cell in grid("power"):
        if cell["recipe"] == recipe:
            names = [cell["variant"]] + [alias for alias, name in POWER_ALIASES.items() if name == cell["variant"]]
            for name in names:
                declared.setdefault(name, set()).add(cell["num_blocks"])
    return [(source, statement, *check(by_variant)) for source, statement, variants, across_k, check in CLAIMS
            if all(len(declared.get(variant, ())) >= (2 if across_k and variant != "bp" else 1)
                   for variant in variants)]


def render_power_report(records, out_dir=RESULTS):
    """Writes `README.md` for the power grid (tables, claims, per-cell detail, plot)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = BUDGETS["power"]
    cells = _power_cells(records)
    lines = ["# Reproduction report (generated by `benchmarks/reproduce.py --report`; do not edit)", "",
             f"Protocol: {budget['label']}, the full 10,000-image test set, {MIN_SEEDS} seeds per cell. The "
             f"first grids (2 epochs of 20,000 images, BP seeds 6-13 points apart) are in "
             f"[first_grid/README.md](first_grid/README.md) and none of their records is used here.", ""]
    bp, std, spread = seed_spread(records)
    if std is not None:
        lines += [f"**BP's seed spread** (shared recipe): test error {', '.join(f'{e:.2f}' for e in bp)} %: "
                  f"standard deviation {std:.2f} points, range {spread:.2f} points.", ""]
    lines += [
        "Two recipes per method:", "",
        f"- **shared**: every method with the same optimisation: {_budget_text(budget)}, a 1-epoch warm-up "
        "from 0.01. Local methods train with `block_order=\"sequential\"`.",
        "- **reference**: each method's own recipe (`Method.reference_recipe`, `keras-local train --recipe "
        "reference`: optimizer, learning rate and schedule shape, weight decay and where it applies, head, "
        "options), compressed to the same 5,000 images × 10 epochs: a batch above 128 is capped at 128 with "
        "an SGD learning rate scaled linearly, a warm-up keeps its fraction of training.", "",
        f"A † marks a cell where a seed's training loss still fell by more than {STEEP:.0%} over the last "
        "tenth of its epochs (not converged).", ""]
    if not records:
        lines.append("No runs recorded yet: `python benchmarks/reproduce.py --grid power`.")
    for recipe in ("shared", "reference"):
        ks = sorted({cell["num_blocks"] for cell in grid("power") if cell["recipe"] == recipe
                     and isinstance(cell["num_blocks"], int) and cell["num_blocks"] > 1})
        if not any(r == recipe for r, _, _ in cells):
            continue
        lines += [f"## {recipe.capitalize()} recipe: test error %, mean ± std over seeds (n)", "",
                  "BP is one block (its K column is the same run); Associated Learning's K is its reference "
                  "components (4 for resnet8).", "",
                  "| method | " + " | ".join(f"K = {k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
        for variant in VARIANTS:
            row = []
            for k in ks:
                group = _group(cells, recipe, variant, k)
                if not group:
                    row.append("–")
                    continue
                dagger = " †" if any(not_converged(record) for record in group) else ""
                row.append(f"{_format(_errors(group))} (n={len(group)}){dagger}")
            if any(cell != "–" for cell in row):
                lines.append(f"| {_power_label(variant)} | " + " | ".join(row) + " |")
        lines += ["", f"Claims under the {recipe} recipe (cells with at least {MIN_SEEDS} seeds; \"beyond "
                  "noise\": the deciding differences of means exceed twice their standard deviation, from the "
                  "seeds' spread or, where larger, the test set's binomial noise):", ""]
        lines += _power_claims_table(records, recipe) + [""]
    lines += ["## Each method under its own recipe against the shared one (K = 4)", "",
              "| method | shared | reference | reference − shared (points) |", "|---|---|---|---|"]
    for variant in VARIANTS:
        pair = []
        for recipe in ("shared", "reference"):
            group = _group(cells, recipe, variant, 4)
            pair.append(Estimate(_errors(group)) if group else None)
        if all(pair):
            gap, sigma = pair[1] - pair[0], _sigma(*pair)
            noise = "beyond noise" if abs(gap) > 2 * sigma else "within noise"
            lines.append(f"| {_power_label(variant)} | {pair[0]:.2f} | {pair[1]:.2f} | {gap:+.2f} ({noise}) |")
    lines += ["", "## Every run", "",
              "Memory and time are as recorded, for orientation only: resnet8's heads are as large as its "
              "blocks, so its step memory says little about local training's saving (the resnet32 "
              "measurement below does), and the cells ran two at a time beside other benchmarks on 2 "
              "cores, so their time ratios are noise; `benchmarks/step_time.py` gives same-process ratios.",
              "",
              "| cell | test error % | output / best block head accuracy | last training loss | converged | "
              "step memory (MiB) | time per example / BP |", "|---|---|---|---|---|---|---|"]
    bp_record = next(iter(cells.get(("shared", "bp", 1), [])), None)
    for record in sorted(records, key=lambda r: r["cell"]["id"]):
        heads = record.get("block_accuracies") or {}
        best = max(heads.values()) if heads else None
        losses = [row["loss"] for row in record["history"] if "loss" in row]
        ratio = None
        if bp_record and record["step_seconds"] and bp_record["step_seconds"]:
            ratio = (record["step_seconds"] / _record_batch(record)) / (bp_record["step_seconds"] / _record_batch(bp_record))
        memory = record.get("step_memory_mib")
        lines.append(
            f"| {record['cell']['id']} | {100 * (1 - record['test_accuracy']):.2f} | "
            f"{record['test_accuracy']:.3f} / {_number(best, '.3f')} | {losses[-1]:.3f} | "
            f"{'no †' if not_converged(record) else 'yes'} | {_number(memory, '.0f')} | {_number(ratio, '.2f')} |")
    plot = _plot_recipes(cells, out_dir)
    if plot:
        lines += ["", f"![error by method and recipe]({plot.name})"]
    lines += _memory_section(out_dir / "memory_backlink.json") + _associated_steps_section(
        out_dir / "associated_steps.json")
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
    return out_dir / "README.md"


def _memory_section(path):
    """BackLink's sequential memory against gll and bp, from `benchmarks/memory.py`'s JSON."""
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    lines = ["", f"## Training-step memory: BackLink against GLL and BP ({result['architecture']}, batch "
             f"{result['batch_size']}, `block_order=\"sequential\"`, linear heads)", "",
             f"Working memory of a training step (allocator peak above the memory in use before it), each in "
             f"its own process: `{result['command']}`. BP: {result['bp_peak_mib']:.1f} MiB.", "",
             "| method | K | MiB | / BP | / GLL |", "|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['method']} | {row['num_blocks']} | {row['peak_mib']:.1f} | "
                     f"{row['ratio_to_bp']:.2f} | {_number(row.get('ratio_to_gll'), '.2f')} |")
    return lines


def _associated_steps_section(path):
    """Associated Learning's accuracy against steps, from `benchmarks/associated_steps.py`'s JSON."""
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    reached = result["associated_reaches_bp_at_step"]
    steps = result["results"]["bp"]["points"][-1][0]
    lines = ["", f"## Associated Learning against BP, accuracy against steps (MLP, width {result['width']}, "
             f"Adam {result['learning_rate']}, batch {result['batch_size']}, all 50,000 CIFAR-10 images)", "",
             f"`{result['command']}`. BP after {steps:,} steps: {result['bp_final_accuracy']:.4f}; Associated "
             f"Learning reaches it " + (f"at step {reached:,}." if reached else
                                        f"not within {steps:,} steps ({100 * (result['bp_final_accuracy'] - result['results']['associated']['points'][-1][1]):.2f} "
                                        f"points below at the last step; the reference trains ~312,000 steps)."), "",
             "| steps | " + " | ".join(f"{step:,}" for step, _ in result["results"]["bp"]["points"]) + " |",
             "|---" * (len(result["results"]["bp"]["points"]) + 1) + "|"]
    for method, label in (("bp", "BP"), ("associated", "Associated Learning")):
        lines.append(f"| {label} | " + " | ".join(f"{accuracy:.3f}" for _, accuracy in
                                                    result["results"][method]["points"]) + " |")
    if path.with_suffix(".png").exists():
        lines += ["", f"![accuracy against steps]({path.with_suffix('.png').name})"]
    return lines


def _number(value, form):
    return "–" if value is None else format(value, form)


def _record_batch(record):
    for item in record["overrides"]:
        if item.startswith("batch_size="):
            return int(item.split("=", 1)[1])
    return BUDGETS[record["cell"]["protocol"]]["batch_size"]


def _power_claims_table(records, recipe):
    verdicts = {(True, True): "holds here", (True, False): "holds, within noise",
                (False, True): "**contradicted here**", (False, False): "contradicted, within noise"}
    lines = ["| source | claim | evidence (differences of mean test error, points) | verdict |",
             "|---|---|---|---|"]
    for source, statement, evidence, holds, beyond_noise in power_claims(records, recipe):
        verdict = "not measured yet" if holds is None else verdicts[(holds, beyond_noise)]
        lines.append(f"| {source} | {statement} | {evidence} | {verdict} |")
    return lines


def _plot_recipes(cells, out_dir):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    variants = [v for v in VARIANTS if any(v == variant for (_, variant, _) in cells)]
    if not variants:
        return None
    figure, axis = plt.subplots(figsize=(8, 4))
    for offset, (recipe, marker) in zip((-0.15, 0.15), (("shared", "o"), ("reference", "s"))):
        xs, ys, errors = [], [], []
        for index, variant in enumerate(variants):
            group = _group(cells, recipe, variant, 4)
            if group:
                values = _errors(group)
                xs.append(index + offset)
                ys.append(sum(values) / len(values))
                errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        axis.errorbar(xs, ys, yerr=errors, fmt=marker, capsize=3, label=f"{recipe} recipe")
    axis.set_xticks(range(len(variants)))
    axis.set_xticklabels([_power_label(v) for v in variants], rotation=30, ha="right", fontsize=7)
    axis.set_ylabel("test error (%), K = 4")
    axis.set_title(BUDGETS["power"]["label"], fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path = out_dir / "power_error_by_method.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(BUDGETS), help="run this grid's pending cells")
    parser.add_argument("--only", help="glob on cell ids, e.g. 'cifar10-resnet20-*-k4-s0'")
    parser.add_argument("--skip", help="glob on cell ids to leave out, e.g. '*-associated-*-ref-*'")
    parser.add_argument("--list", action="store_true", help="list the grid's cells and whether each is done")
    parser.add_argument("--report", action="store_true", help="only render the report")
    args = parser.parse_args(argv)
    if args.grid and not args.report:
        cells = grid(args.grid)
        if args.only:
            cells = [cell for cell in cells if fnmatch.fnmatch(cell["id"], args.only)]
        if args.skip:
            cells = [cell for cell in cells if not fnmatch.fnmatch(cell["id"], args.skip)]
        records = POWER_RECORDS if args.grid == "power" else RECORDS
        if args.list:
            for cell in cells:
                print(f"{'done' if record_path(cell, records).exists() else 'todo'}  {cell['id']}")
            return 0
        run_grid(cells, records)
    print(f"wrote {render_report(load_records(), RESULTS / 'first_grid')}")
    print(f"wrote {render_power_report(load_records(POWER_RECORDS))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

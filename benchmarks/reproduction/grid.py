"""The declared grids: method variants, budgets, cells and their config overrides; running a cell
into its record (`benchmarks/results/<grid>/<cell>.json`) and a grid's pending cells."""

import csv
import functools
import json
import os
import pathlib
import shutil
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # the CPU allocator's peak statistics

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
# Pipelined twins of local variants (block_order="pipelined": block k trains on block k-1's output of the
# previous step; BackLink's link arrives a step late): does the staleness cost accuracy?
PIPELINED = {
    "gll_linear_pipelined": "gll_linear",
    "backlink_l1_pipelined": "backlink_l1",
    "infopro_pipelined": "infopro",
}
VARIANTS.update({name: VARIANTS[base] for name, base in PIPELINED.items()})
LOCAL = [name for name in VARIANTS if name not in ("bp", "associated", "associated_adam") and name not in PIPELINED]
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
    "bp": "BP",
    "gll_linear": "GLL (linear)",
    "gll_conv": "GLL (conv)",
    "backlink_l1": "BackLink l=1",
    "backlink_l2": "BackLink l=2",
    "bwbpf": "BWBPF",
    "bwbpf_ds": "BWBPF (deep sup.)",
    "dgl": "DGL",
    "predsim": "PredSim",
    "infopro": "InfoPro",
    "associated": "Associated (grid budget)",
    "associated_adam": "Associated (Adam 1e-3, batch 32)",
    "gll_linear_pipelined": "GLL (linear), pipelined",
    "backlink_l1_pipelined": "BackLink l=1, pipelined",
    "infopro_pipelined": "InfoPro, pipelined",
}

# The CPU protocol. CIFAR-10 is the shared JPEG q75 copy; the full 10,000-image test set. One resnet20
# run takes 2-3 minutes on a quiet 2-core VM (bp: 135 s; 5-7 min beside other work); more images and
# few epochs give more accuracy per second than many epochs on few images. Tiny-ImageNet: 10,000 images
# x 2 epochs gave bp 3.2% and gll 2.4% (200 classes), too close to chance to compare methods, so its
# budget is every one of the 38,000 training images once (about 10 minutes per cell).
BUDGETS = {
    "cifar10": {
        "label": "CIFAR-10 (JPEG q75)",
        "dataset": "cifar10_jpeg",
        "train_examples": 20000,
        "epochs": 2,
        "batch_size": 128,
        "learning_rate": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_schedule": "cosine",
    },
    # BP's seed spread at this budget (3 seeds): 51.67 / 50.95 / 51.92 % test accuracy.
    "power": {
        "label": "CIFAR-10 (JPEG q75), resnet8, 5,000 training images",
        "dataset": "cifar10_jpeg",
        "train_examples": 5000,
        "epochs": 10,
        "batch_size": 128,
        "learning_rate": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "validation_freq": 0,
    },
    "tiny_imagenet": {
        "label": "Tiny-ImageNet (shared subset, 190/class; validation as test)",
        "dataset": "tiny_imagenet",
        "test_split": "validation",
        "train_examples": None,
        "epochs": 1,
        "batch_size": 128,
        "learning_rate": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_schedule": "cosine",
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
        shared = [
            ("bp", 1),
            ("gll_linear", 2),
            ("gll_linear", 4),
            ("backlink_l1", 2),
            ("backlink_l1", 4),
            ("backlink_l2", 2),
            ("gll_conv", 4),
            ("bwbpf", 4),
            ("dgl", 4),
            ("predsim", 4),
            ("infopro", 4),
            ("associated", "auto"),
        ]
        reference = [
            ("bp", 1),
            ("gll_linear", 4),
            ("backlink_l1", 4),
            ("bwbpf", 4),
            ("dgl", 4),
            ("predsim", 4),
            ("infopro", 4),
        ]
        for seed in range(POWER_SEEDS):
            cells += [_cell("power", "resnet8", variant, k, seed) for variant, k in shared]
            cells += [_cell("power", "resnet8", variant, k, seed, recipe="reference") for variant, k in reference]
        # Associated Learning's reference (full-map bridges, ~68 M parameters, Adam at batch 32) costs
        # several times any other cell on the CPU: last but for the pipelined twins (added later).
        cells += [
            _cell("power", "resnet8", "associated", "auto", seed, recipe="reference") for seed in range(POWER_SEEDS)
        ]
        cells += [_cell("power", "resnet8", variant, 4, seed) for seed in range(POWER_SEEDS) for variant in PIPELINED]
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
    return {
        "id": cell_id,
        "protocol": protocol,
        "architecture": architecture,
        "variant": variant,
        "method": method,
        "head": head,
        "method_options": options,
        "num_blocks": num_blocks,
        "split": split,
        "seed": seed,
        "recipe": recipe,
    }


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
        values = {
            key: values[key] for key in ("dataset", "train_examples", "test_split", "validation_freq") if key in values
        }
        values.update(reference_budget(cell, budget))
    else:
        values.update(BUDGET_OVERRIDES.get(cell["variant"], {}))
    values.update(
        {
            "architecture": cell["architecture"],
            "method": cell["method"],
            "num_blocks": cell["num_blocks"],
            "split": cell["split"],
            "seed": cell["seed"],
            "data_dir": DATA_DIR,
            "verbose": 0,
            "eval_batch_size": 500,
            "block_order": "pipelined"
            if cell["variant"] in PIPELINED
            else "together"
            if cell["method"] in ("bp", "associated") or cell["method_options"].get("deep_supervision")
            else "sequential",
        }
    )
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
    from keras_local.files import write_json
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
        history = [
            {key: float(value) for key, value in row.items() if value not in ("", "NA")} for row in csv.DictReader(file)
        ]
    memory = [row["peak_memory_mib"] for row in history if "peak_memory_mib" in row]
    working = [row["step_memory_mib"] for row in history if "step_memory_mib" in row]
    steps = [row["step_seconds"] for row in history[1:] if "step_seconds" in row] or [
        row["step_seconds"] for row in history if "step_seconds" in row
    ]
    record = {
        "cell": cell,
        "dataset_label": budget["label"],
        "overrides": sets,
        "versions": versions(),
        "seed": cell["seed"],
        "history": history,
        "test_accuracy": summary["test_accuracy"],
        "block_accuracies": summary["block_accuracies"],
        "num_blocks": summary["num_blocks"],
        "peak_memory_mib": max(memory) if memory else None,
        "step_memory_mib": max(working) if working else None,
        "step_seconds": statistics.median(steps) if steps else None,
        "seconds": summary["seconds"],
        "load_average": os.getloadavg(),  # 1, 5, 15 min at the end: above ~2.5, something else shared the cores
    }
    path = record_path(cell, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
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


def load_records(records=RECORDS):
    return [json.loads(path.read_text()) for path in sorted(pathlib.Path(records).glob("*.json"))]


def grid_k(record):
    """The cell's K: the number of local blocks asked for (BWBPF and PredSim build one more block, their
    output layer), or the model's own count where the method chose it (`"auto"`)."""
    k = record["cell"]["num_blocks"]
    return record["num_blocks"] if k == "auto" else k


def batch_size(record):
    return BUDGET_OVERRIDES.get(record["cell"]["variant"], {}).get(
        "batch_size", BUDGETS[record["cell"]["protocol"]]["batch_size"]
    )


def budget_text(budget):
    count = budget.get("train_examples")
    examples = "all training images" if count is None else f"the first {count} training images"
    epochs = f"{budget['epochs']} epoch{'s' if budget['epochs'] != 1 else ''}"
    return (
        f"{examples}, {epochs}, batch {budget['batch_size']}, SGD "
        f"(Nesterov {budget['nesterov']}) lr {budget['learning_rate']} with {budget['lr_schedule']} decay, "
        f"weight decay {budget['weight_decay']} (coupled), pad-crop-flip"
    )

"""The power grid's report (`benchmarks/results/README.md`): seeds' spread, convergence, the claims
under the shared and the reference recipes, memory and Associated Learning's step sections."""

import json
import pathlib
import statistics

from .claims import CLAIMS, Estimate, format_errors, sigma
from .grid import BUDGETS, LABELS, RESULTS, VARIANTS, budget_text, grid, grid_k

# -- the report of the power grid ------------------------------------------------------------

# The claims read Associated Learning's comparable-to-BP cell as "associated_adam" (the first grid's
# variant under its reference optimizer); the power grid has one "associated" variant per recipe.
POWER_ALIASES = {"associated_adam": "associated"}
MIN_SEEDS = 3
STEEP = 0.05  # a training loss still falling by more than 5 % over the last tenth of training
CHANCE_MARGIN = 0.02  # a training accuracy within 2 points of chance has learned nothing yet
RATE_FLOOR = 0.1  # epochs at less than a tenth of the schedule's peak rate are not judged


def _power_label(variant):
    return "Associated Learning" if variant == "associated" else LABELS[variant]


def _relative_rates(record, epochs):
    """The learning rate in the middle of each epoch, relative to the schedule's peak, from the
    record's config (all 1.0 where it cannot be resolved, e.g. a record without overrides)."""
    if not record.get("overrides"):
        return [1.0] * epochs
    from keras_local.config import load_config
    from keras_local.methods import method_option_names
    from keras_local.train import make_learning_rate

    config = load_config(None, record["overrides"], method_option_names())
    schedule, steps = make_learning_rate(config, steps_per_epoch=10), 10
    rates = [
        float(schedule(steps * epoch + steps // 2)) if callable(schedule) else float(schedule)
        for epoch in range(epochs)
    ]
    return [rate / max(rates) for rate in rates]


def convergence(record, num_classes=10):
    """None for a cell that has converged, else why not: "at chance" (its training accuracy ends
    within `CHANCE_MARGIN` of chance: it has not left its starting plateau) or "still learning"
    (over the last tenth, at least one epoch, of the epochs its schedule ran at `RATE_FLOOR` or more
    of its peak rate, the training loss fell by more than `STEEP`). Judging only the epochs before
    the rate was cut keeps a schedule that freezes the loss from passing for convergence; the
    chance test keeps a loss that collapsed without learning (Associated Learning's codes) from it."""
    history = [row for row in record["history"] if "loss" in row]
    accuracies = [row["accuracy"] for row in history if "accuracy" in row]
    if accuracies and accuracies[-1] <= 1 / num_classes + CHANCE_MARGIN:
        return "at chance"
    judged = [row for row, rate in zip(history, _relative_rates(record, len(history))) if rate >= RATE_FLOOR]
    window = max(1, len(judged) // 10)
    if len(judged) <= window:
        return None
    before, last = judged[-1 - window], judged[-1]
    if before["loss"] > 0 and (before["loss"] - last["loss"]) / before["loss"] > STEEP:
        return "still learning"
    return None


def not_converged(record):
    """Whether `convergence` finds a reason the cell has not converged."""
    return convergence(record) is not None


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


def _statement(statement, recipe):
    """A claim's text as the `recipe`'s cells test it: under the shared recipe, Associated Learning's
    cell trains with the shared SGD, not with its reference's Adam."""
    if recipe == "shared":
        return statement.replace("(with Adam, as its reference)", "(with the shared SGD recipe)")
    return statement


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
    return [
        (source, _statement(statement, recipe), *check(by_variant))
        for source, statement, variants, across_k, check in CLAIMS
        if all(len(declared.get(variant, ())) >= (2 if across_k and variant != "bp" else 1) for variant in variants)
    ]


def _converged_text(record):
    reason = convergence(record)
    return "yes" if reason is None else f"no † ({reason})"


def render_power_report(records, out_dir=RESULTS):
    """Writes `README.md` for the power grid (tables, claims, per-cell detail, plot)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = BUDGETS["power"]
    cells = _power_cells(records)
    lines = [
        "# Reproduction report (generated by `benchmarks/reproduce.py --report`; do not edit)",
        "",
        f"Protocol: {budget['label']}, the full 10,000-image test set, {MIN_SEEDS} seeds per cell. The "
        f"first grids (2 epochs of 20,000 images, BP seeds 6-13 points apart) are in "
        f"[first_grid/README.md](first_grid/README.md) and none of their records is used here.",
        "",
    ]
    bp, std, spread = seed_spread(records)
    if std is not None:
        lines += [
            f"**BP's seed spread** (shared recipe): test error {', '.join(f'{e:.2f}' for e in bp)} %: "
            f"standard deviation {std:.2f} points, range {spread:.2f} points.",
            "",
        ]
    lines += [
        "Two recipes per method:",
        "",
        f"- **shared**: every method with the same optimisation: {budget_text(budget)}, a 1-epoch warm-up "
        'from 0.01. Local methods train with `block_order="sequential"`.',
        "- **reference**: each method's own recipe (`Method.reference_recipe`, `keras-local train --recipe "
        "reference`: optimizer, learning rate and schedule shape, weight decay and where it applies, head, "
        "options), compressed to the same 5,000 images × 10 epochs: a batch above 128 is capped at 128 with "
        "an SGD learning rate scaled linearly, a warm-up keeps its fraction of training.",
        "",
        f"A † marks a cell where a seed has not converged: its training accuracy ends within "
        f'{CHANCE_MARGIN * 100:.0f} points of chance ("at chance"), or over the last tenth of the epochs its '
        f"schedule ran at {RATE_FLOOR:.0%} or more of its peak rate its training loss still fell by more than "
        f'{STEEP:.0%} ("still learning"; the epochs after a rate cut are not judged, since the cut freezes '
        "the loss). Associated Learning's cells "
        "sit at chance: its label path contracts at initialisation (each sigmoid level shrinks the classes' "
        "spread of the codes), so its bridges carry the class only after many more steps than this budget's "
        "~400 (see its curve below), and the compressed reference schedule cuts its rate tenfold at 40 % of "
        "them. This budget cannot decide Associated Learning's claim.",
        "",
    ]
    if not records:
        lines.append("No runs recorded yet: `python benchmarks/reproduce.py --grid power`.")
    for recipe in ("shared", "reference"):
        ks = sorted(
            {
                cell["num_blocks"]
                for cell in grid("power")
                if cell["recipe"] == recipe and isinstance(cell["num_blocks"], int) and cell["num_blocks"] > 1
            }
        )
        if not any(r == recipe for r, _, _ in cells):
            continue
        lines += [
            f"## {recipe.capitalize()} recipe: test error %, mean ± std over seeds (n)",
            "",
            "BP is one block (its K column is the same run); Associated Learning's K is its reference "
            "components (4 for resnet8).",
            "",
            "| method | " + " | ".join(f"K = {k}" for k in ks) + " |",
            "|---" * (len(ks) + 1) + "|",
        ]
        for variant in VARIANTS:
            row = []
            for k in ks:
                group = _group(cells, recipe, variant, k)
                if not group:
                    row.append("–")
                    continue
                dagger = " †" if any(not_converged(record) for record in group) else ""
                row.append(f"{format_errors(_errors(group))} (n={len(group)}){dagger}")
            if any(cell != "–" for cell in row):
                lines.append(f"| {_power_label(variant)} | " + " | ".join(row) + " |")
        lines += [
            "",
            f'Claims under the {recipe} recipe (cells with at least {MIN_SEEDS} seeds; "beyond '
            'noise": the deciding differences of means exceed twice their standard deviation, from the '
            "seeds' spread or, where larger, the test set's binomial noise):",
            "",
        ]
        lines += _power_claims_table(records, recipe) + [""]
    lines += _staleness_section(records)
    lines += [
        "## Each method under its own recipe against the shared one (K = 4)",
        "",
        "| method | shared | reference | reference − shared (points) |",
        "|---|---|---|---|",
    ]
    for variant in VARIANTS:
        pair = []
        for recipe in ("shared", "reference"):
            group = _group(cells, recipe, variant, 4)
            pair.append(Estimate(_errors(group)) if group else None)
        if all(pair):
            gap, noise_sigma = pair[1] - pair[0], sigma(*pair)
            noise = "beyond noise" if abs(gap) > 2 * noise_sigma else "within noise"
            lines.append(f"| {_power_label(variant)} | {pair[0]:.2f} | {pair[1]:.2f} | {gap:+.2f} ({noise}) |")
    lines += [
        "",
        "## Every run",
        "",
        "Memory and time are as recorded, for orientation only: resnet8's heads are as large as its "
        "blocks, so its step memory says little about local training's saving (the resnet32 "
        "measurement below does), and the cells ran two at a time beside other benchmarks on 2 "
        "cores, so their time ratios are noise; `benchmarks/step_time.py` gives same-process ratios.",
        "",
        "| cell | test error % | output / best block head accuracy | last training loss | converged | "
        "step memory (MiB) | time per example / BP |",
        "|---|---|---|---|---|---|---|",
    ]
    bp_record = next(iter(cells.get(("shared", "bp", 1), [])), None)
    for record in sorted(records, key=lambda r: r["cell"]["id"]):
        heads = record.get("block_accuracies") or {}
        best = max(heads.values()) if heads else None
        losses = [row["loss"] for row in record["history"] if "loss" in row]
        ratio = None
        if bp_record and record["step_seconds"] and bp_record["step_seconds"]:
            ratio = (record["step_seconds"] / _record_batch(record)) / (
                bp_record["step_seconds"] / _record_batch(bp_record)
            )
        memory = record.get("step_memory_mib")
        lines.append(
            f"| {record['cell']['id']} | {100 * (1 - record['test_accuracy']):.2f} | "
            f"{record['test_accuracy']:.3f} / {_number(best, '.3f')} | {losses[-1]:.3f} | "
            f"{_converged_text(record)} | {_number(memory, '.0f')} | {_number(ratio, '.2f')} |"
        )
    plot = _plot_recipes(cells, out_dir)
    if plot:
        lines += ["", f"![error by method and recipe]({plot.name})"]
    lines += _memory_section(out_dir / "memory_backlink.json") + _associated_steps_section(
        out_dir / "associated_steps.json"
    )
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
    return out_dir / "README.md"


# Does the pipeline's staleness cost accuracy? (pipelined cell, the cell it is compared with)
STALENESS_PAIRS = [
    ("backlink_l1_pipelined", "backlink_l1"),
    ("backlink_l1_pipelined", "gll_linear_pipelined"),
    ("gll_linear_pipelined", "gll_linear"),
    ("infopro_pipelined", "infopro"),
]


def paired_gap(first, second):
    """(mean gap of `first`'s error over `second`'s, two standard errors of the per-seed gaps, seeds, verdict)
    over the seeds both have: "higher" / "lower" when the mean gap exceeds two standard errors, else
    "within seed noise" (a seed fixes the order of the training images in both cells)."""
    by_seed = {record["seed"]: record for record in second}
    gaps = [
        100 * ((1 - record["test_accuracy"]) - (1 - by_seed[record["seed"]]["test_accuracy"]))
        for record in first
        if record["seed"] in by_seed
    ]
    if len(gaps) < 2:
        return None
    mean, error = statistics.mean(gaps), statistics.stdev(gaps) / len(gaps) ** 0.5
    verdict = "within seed noise" if abs(mean) <= 2 * error else ("higher" if mean > 0 else "lower")
    return mean, 2 * error, len(gaps), verdict


def _staleness_section(records):
    """The pipelined cells (K = 4, shared recipe) against their sequential twins, paired by seed."""
    cells = _power_cells(records)
    rows = []
    for first, second in STALENESS_PAIRS:
        gap = paired_gap(cells.get(("shared", first, 4), []), cells.get(("shared", second, 4), []))
        if gap is not None:
            mean, two_errors, seeds, verdict = gap
            rows.append(
                f"| {_power_label(first)} − {_power_label(second)} | {mean:+.2f} | {two_errors:.2f} | {seeds} | "
                f"{verdict} |"
            )
    if not rows:
        return []
    return [
        "## Does the pipeline's staleness cost accuracy? (K = 4, shared recipe)",
        "",
        'Pipelined cells train with `block_order="pipelined"`: block k on block k−1\'s output of the previous '
        "step, BackLink's link one step late. Error gaps paired by seed; a gap counts when it exceeds two "
        "standard errors of the per-seed gaps.",
        "",
        "| comparison | mean error gap (points) | 2 standard errors | seeds | verdict |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def _memory_section(path):
    """BackLink's sequential memory against gll and bp, from `benchmarks/memory.py`'s JSON."""
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    lines = [
        "",
        f"## Training-step memory: BackLink against GLL and BP ({result['architecture']}, batch "
        f'{result["batch_size"]}, `block_order="sequential"`, linear heads)',
        "",
        f"Working memory of a training step (allocator peak above the memory in use before it), each in "
        f"its own process: `{result['command']}`. BP: {result['bp_peak_mib']:.1f} MiB.",
        "",
        "| method | K | MiB | / BP | / GLL |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['method']} | {row['num_blocks']} | {row['peak_mib']:.1f} | "
            f"{row['ratio_to_bp']:.2f} | {_number(row.get('ratio_to_gll'), '.2f')} |"
        )
    return lines


def _associated_steps_section(path):
    """Associated Learning's accuracy against steps, from `benchmarks/associated_steps.py`'s JSON."""
    if not path.exists():
        return []
    result = json.loads(path.read_text())
    reached = result["associated_reaches_bp_at_step"]
    steps = result["results"]["bp"]["points"][-1][0]
    last_accuracy = result["results"]["associated"]["points"][-1][1]
    lines = [
        "",
        f"## Associated Learning against BP, accuracy against steps (MLP, width {result['width']}, "
        f"Adam {result['learning_rate']}, batch {result['batch_size']}, all 50,000 CIFAR-10 images)",
        "",
        f"`{result['command']}`. BP after {steps:,} steps: {result['bp_final_accuracy']:.4f}; Associated "
        f"Learning reaches it "
        + (
            f"at step {reached:,}."
            if reached
            else f"not within {steps:,} steps ({100 * (result['bp_final_accuracy'] - last_accuracy):.2f} "
            f"points below at the last step; the reference trains ~312,000 steps)."
        ),
        "",
        "| steps | " + " | ".join(f"{step:,}" for step, _ in result["results"]["bp"]["points"]) + " |",
        "|---" * (len(result["results"]["bp"]["points"]) + 1) + "|",
    ]
    for method, label in (("bp", "BP"), ("associated", "Associated Learning")):
        lines.append(
            f"| {label} | "
            + " | ".join(f"{accuracy:.3f}" for _, accuracy in result["results"][method]["points"])
            + " |"
        )
    if path.with_suffix(".png").exists():
        lines += ["", f"![accuracy against steps]({path.with_suffix('.png').name})"]
    return lines + _associated_seeds_lines(path)


def _associated_seeds_lines(path):
    """The last step of every seed's run (`<stem>.json` is seed 0, `<stem>_seed<N>.json` seed N) of the
    same protocol: BP, AL and the gap per seed, and their mean."""
    runs = {0: json.loads(path.read_text())}
    for other in sorted(path.parent.glob(f"{path.stem}_seed*.json")):
        runs[int(other.stem.rsplit("_seed", 1)[1])] = json.loads(other.read_text())
    protocol = {(run["width"], run["learning_rate"], run["results"]["bp"]["points"][-1][0]) for run in runs.values()}
    if len(runs) < 2 or len(protocol) > 1:
        return []
    rows, gaps = [], []
    for seed, run in sorted(runs.items()):
        bp, associated = (run["results"][method]["points"][-1][1] for method in ("bp", "associated"))
        gaps.append(100 * (bp - associated))
        rows.append(f"| {seed} | {100 * bp:.2f} % | {100 * associated:.2f} % | {gaps[-1]:+.2f} |")
    within = sum(gap <= 2.0 for gap in gaps)
    return [
        "",
        f"At the last step, seed by seed (the same command with `--seed N`, `{path.stem}_seedN.json`):",
        "",
        "| seed | BP | Associated Learning | BP − AL (points) |",
        "|---|---|---|---|",
        *rows,
        f"| mean | | | {statistics.mean(gaps):+.2f} ± {statistics.stdev(gaps):.2f} |",
        "",
        f"AL is within the claim's 2 points of BP on {within} of {len(gaps)} seeds at this budget.",
    ]


def _number(value, form):
    return "–" if value is None else format(value, form)


def _record_batch(record):
    for item in record["overrides"]:
        if item.startswith("batch_size="):
            return int(item.split("=", 1)[1])
    return BUDGETS[record["cell"]["protocol"]]["batch_size"]


def _power_claims_table(records, recipe):
    verdicts = {
        (True, True): "holds here",
        (True, False): "holds, within noise",
        (False, True): "**contradicted here**",
        (False, False): "contradicted, within noise",
    }
    at_chance = {
        variant
        for (cell_recipe, variant, _), group in _power_cells(records).items()
        if cell_recipe == recipe and any(convergence(record) == "at chance" for record in group)
    }
    reads = {_statement(statement, recipe): variants for _, statement, variants, _, _ in CLAIMS}
    lines = ["| source | claim | evidence (differences of mean test error, points) | verdict |", "|---|---|---|---|"]
    for source, statement, evidence, holds, beyond_noise in power_claims(records, recipe):
        verdict = "not measured yet" if holds is None else verdicts[(holds, beyond_noise)]
        if holds is not None and any(POWER_ALIASES.get(v, v) in at_chance for v in reads[statement]):
            verdict = "undecided: a cell it reads is at chance (†), this budget is too short for it"
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

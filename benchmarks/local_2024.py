"""The 2024 local methods against their bases on real CIFAR-10: a resumable grid of (method, seed) cells.

    python benchmarks/local_2024.py --architecture resnet32 --num-blocks 8 \
        --train-examples 10000 --epochs 6 --seeds 0 1 2

Cells: bp, gll, dgl, infopro, backlink and the 2024 rules on their bases
(dgl+man, dgl+hpff, infopro+man, infopro+hpff, auglocal), each for every
seed. All train the same network with InfoPro's split of K (even for other
networks; bp one block), each method's default head, one optimizer and
schedule (SGD Nesterov 0.9, cosine, weight decay 5e-4) through
`keras_local.train.train_and_evaluate`, on the shared CIFAR-10 copy and its
full 10,000-image test set. Each finished cell is written to `--output` at
once, so the grid resumes where it stopped (across sessions); a cell already
there is skipped. Prints the table (mean ± std over seeds, and the seed
spread of bp) and the claims' verdicts, and writes them next to `--output`
as Markdown (`.md`): each 2024 rule below its base's error at the same K,
and their papers' order (HPFF below MAN on each base, ResNet-32 K=16:
DGL+HPFF 8.94 < DGL+MAN 9.11, InfoPro+HPFF 8.99 < InfoPro+MAN 9.65). A claim
holds when the mean gap exceeds two standard errors of the gap,
fails when it is as far the other way, and is within seed noise otherwise;
the gap is paired by seed (a seed fixes the order of the training images
and the random draws in both cells).
"""

import argparse
import json
import math
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from budget import add_budget_arguments, budget_overrides, load_results, train_cell  # noqa: E402

CELLS = {  # name: (method, options)
    "bp": ("bp", {}),
    "gll": ("gll", {}),
    "dgl": ("dgl", {}),
    "infopro": ("infopro", {}),
    "backlink": ("backlink", {"alpha": 0.5, "propagation_length": 1}),
    "dgl+man": ("dgl", {"man": True}),
    "dgl+hpff": ("dgl", {"hpff": True}),
    "infopro+man": ("infopro", {"man": True}),
    "infopro+hpff": ("infopro", {"hpff": True}),
    "auglocal": ("auglocal", {"depth": 2, "tau": 0.5}),
}
CLAIMS = [  # (cell, cell it should be below)
    ("dgl+man", "dgl"),
    ("dgl+hpff", "dgl"),
    ("infopro+man", "infopro"),
    ("infopro+hpff", "infopro"),
    ("auglocal", "gll"),
    ("dgl+hpff", "dgl+man"),
    ("infopro+hpff", "infopro+man"),
]


def seed_errors(results):
    """{cell: {seed: test error %}} of the cells done."""
    errors = {}
    for key, row in results.items():
        cell, seed = key.rsplit("/", 1)
        errors.setdefault(cell, {})[int(seed)] = 100 * (1 - row["test_accuracy"])
    return errors


def summarize(results):
    """{cell: (mean error %, std, n)} over the seeds done."""
    table = {}
    errors = seed_errors(results)
    for cell in CELLS:
        values = list(errors.get(cell, {}).values())
        if values:
            table[cell] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
    return table


def verdict(errors, lower, higher):
    """One line: does `lower`'s error lie below `higher`'s beyond the seeds' noise? Paired by seed (a
    seed fixes the order of the training images for both cells) over the seeds both
    have: the mean gap against two standard errors of the per-seed gaps."""
    seeds = sorted(set(errors.get(lower, {})) & set(errors.get(higher, {})))
    if len(seeds) < 3:
        return f"{lower} below {higher}: undecided (fewer than 3 seeds of both)"
    gaps = [errors[higher][seed] - errors[lower][seed] for seed in seeds]
    gap, standard_error = statistics.mean(gaps), statistics.stdev(gaps) / math.sqrt(len(gaps))
    if gap > 2 * standard_error:
        word = "holds"
    elif gap < -2 * standard_error:
        word = "fails"
    else:
        word = "within seed noise"
    return (
        f"{lower} below {higher}: {word} (gap {gap:+.2f} points over {len(seeds)} paired seeds, "
        f"2 standard errors {2 * standard_error:.2f}; below on {sum(g > 0 for g in gaps)} of {len(seeds)})"
    )


def report(results, heading):
    """The Markdown report: table, bp's spread, every claim's verdict."""
    table, errors = summarize(results), seed_errors(results)
    lines = [heading, "", "| cell | test error % (mean ± std) | seeds |", "|---|---|---|"]
    lines += [f"| {cell} | {mean:.2f} ± {std:.2f} | {count} |" for cell, (mean, std, count) in table.items()]
    spread = table.get("bp", (None, None, 0))
    if spread[2]:
        lines += ["", f"bp's seed spread (std): {spread[1]:.2f} points over {spread[2]} seeds"]
    lines += [""] + [f"- {verdict(errors, lower, higher)}" for lower, higher in CLAIMS]
    ranking = sorted(table, key=lambda cell: table[cell][0])
    lines += ["", "Order by mean error: " + " < ".join(ranking)]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_budget_arguments(parser, 8, 10000, 6, "benchmarks/results/local_2024/resnet32_k8.json", "runs/local_2024")
    parser.add_argument("--report-only", action="store_true", help="print the table of the cells done")
    args = parser.parse_args()

    results = load_results(args.output)
    for seed in args.seeds if not args.report_only else ():
        for cell in args.cells:
            key = f"{cell}/{seed}"
            if key in results:
                continue
            method, options = CELLS[cell]
            infopro_split = args.architecture in ("resnet32", "resnet110") and method != "bp"
            settings = [
                f"split={'infopro' if infopro_split else 'even'}",
                f"seed={seed}",
                *(f"{name}={json.dumps(value)}" for name, value in options.items()),
            ]
            overrides = budget_overrides(args, method, 1 if method == "bp" else args.num_blocks, *settings)
            train_cell(results, key, overrides, os.path.join(args.run_root, args.architecture, key), args.output)
    text = report(
        results,
        f"{args.architecture}, K={args.num_blocks}, {args.train_examples} training images, {args.epochs} epochs "
        f"(`python benchmarks/local_2024.py {' '.join(a for a in sys.argv[1:] if a != '--report-only')}`):",
    )
    print("\n" + text)
    if not args.report_only or os.path.exists(args.output):
        with open(os.path.splitext(args.output)[0] + ".md", "w") as file:
            file.write(text)


if __name__ == "__main__":
    main()

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
spread of bp) and the claims' verdicts: each 2024 rule below its base's
error at the same K.
"""

import argparse
import json
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CELLS = {  # name: (method, options)
    "bp": ("bp", {}), "gll": ("gll", {}), "dgl": ("dgl", {}), "infopro": ("infopro", {}),
    "backlink": ("backlink", {"alpha": 0.5, "propagation_length": 1}),
    "dgl+man": ("dgl", {"man": True}), "dgl+hpff": ("dgl", {"hpff": True}),
    "infopro+man": ("infopro", {"man": True}), "infopro+hpff": ("infopro", {"hpff": True}),
    "auglocal": ("auglocal", {"depth": 2, "tau": 0.5}),
}
CLAIMS = [("dgl+man", "dgl"), ("dgl+hpff", "dgl"), ("infopro+man", "infopro"), ("infopro+hpff", "infopro"),
          ("auglocal", "gll")]


def summarize(results):
    """{cell: (mean error %, std, n)} over the seeds done."""
    table = {}
    for cell in CELLS:
        errors = [100 * (1 - row["test_accuracy"]) for key, row in results.items() if key.rsplit("/", 1)[0] == cell]
        if errors:
            table[cell] = (statistics.mean(errors), statistics.stdev(errors) if len(errors) > 1 else 0.0,
                           len(errors))
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--num-blocks", type=int, default=8)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-examples", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--dataset", default="cifar10_jpeg")
    parser.add_argument("--data-dir", default="../shared/data/tfds")
    parser.add_argument("--output", default="benchmarks/results/local_2024/resnet32_k8.json")
    parser.add_argument("--run-root", default="runs/local_2024")
    parser.add_argument("--report-only", action="store_true", help="print the table of the cells done")
    args = parser.parse_args()

    from keras_local.config import load_config
    from keras_local.methods import method_option_names
    from keras_local.train import train_and_evaluate

    results = {}
    if os.path.exists(args.output):
        with open(args.output) as file:
            results = json.load(file)
    for seed in args.seeds if not args.report_only else ():
        for cell in args.cells:
            key = f"{cell}/{seed}"
            if key in results:
                continue
            method, options = CELLS[cell]
            infopro_split = args.architecture in ("resnet32", "resnet110") and method != "bp"
            split = "infopro" if infopro_split else "even"
            overrides = [
                f"architecture={args.architecture}", f"method={method}",
                f"num_blocks={1 if method == 'bp' else args.num_blocks}", f"split={split}",
                f"dataset={args.dataset}", f"data_dir={args.data_dir}", f"train_examples={args.train_examples}",
                f"epochs={args.epochs}", f"batch_size={args.batch_size}", f"learning_rate={args.learning_rate}",
                "momentum=0.9", "nesterov=true", "weight_decay=5e-4", "lr_schedule=cosine", "verbose=0",
                f"seed={seed}", *(f"{name}={json.dumps(value)}" for name, value in options.items()),
            ]
            config = load_config(None, overrides, method_option_names())
            summary = train_and_evaluate(config, run_dir=os.path.join(args.run_root, args.architecture, key))
            results[key] = {name: summary[name] for name in ("test_accuracy", "block_accuracies", "seconds")}
            results[key]["config"] = overrides
            os.makedirs(os.path.dirname(args.output), exist_ok=True)
            with open(args.output, "w") as file:
                json.dump(results, file, indent=2)
            print(f"{key}: test accuracy {summary['test_accuracy']:.4f} in {summary['seconds']:.0f} s", flush=True)
    table = summarize(results)
    print(f"\n{args.architecture}, K={args.num_blocks}, {args.train_examples} training images, {args.epochs} epochs "
          f"({' '.join(sys.argv[1:]) or 'defaults'}):")
    print("| cell | test error % (mean ± std) | seeds |\n|---|---|---|")
    for cell, (mean, std, count) in table.items():
        print(f"| {cell} | {mean:.2f} ± {std:.2f} | {count} |")
    spread = table.get("bp", (None, None, 0))
    print(f"\nbp's seed spread (std): {spread[1]:.2f} points over {spread[2]} seeds" if spread[2] else "")
    for rule, base in CLAIMS:
        if rule in table and base in table and min(table[rule][2], table[base][2]) >= 3:
            gap = table[base][0] - table[rule][0]
            verdict = "holds" if gap > 0 else "fails"
            print(
                f"{rule} below {base}: {verdict} ({gap:+.2f} points, std {table[rule][1]:.2f} / {table[base][1]:.2f})"
            )
        else:
            print(f"{rule} below {base}: undecided (fewer than 3 seeds of each)")


if __name__ == "__main__":
    main()

"""The baselines side by side: bp, gll, dgl, predsim and infopro on real CIFAR-10, one budget for all.

    python benchmarks/baselines.py --architecture resnet32 --num-blocks 4 \
        --train-examples 8000 --epochs 4

Every method trains the same network (K blocks, each method's default head:
linear for gll, mlp_sr for dgl, predsim, infopro) with the same optimizer,
schedule, data and seed through `keras_local.train.train_and_evaluate`, on the
shared CIFAR-10 copy (JPEG q75) and its full 10,000-image test set. Each run's
summary is written to `--output` as soon as it ends; a re-run skips the
methods already there. Prints the table of test accuracies.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from budget import add_budget_arguments, budget_overrides, load_results, train_cell  # noqa: E402

METHODS = ("bp", "gll", "dgl", "predsim", "infopro")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    add_budget_arguments(parser, 4, 8000, 4, "benchmarks/results/baselines.json", "runs/baselines")
    args = parser.parse_args()

    results = load_results(args.output)
    for method in args.methods:
        if method in results:
            print(f"{method}: done already ({results[method]['test_accuracy']:.4f})")
            continue
        overrides = budget_overrides(args, method, 1 if method == "bp" else args.num_blocks)
        train_cell(results, method, overrides, os.path.join(args.run_root, method), args.output)
    print(
        f"\n{args.architecture}, K={args.num_blocks}, {args.train_examples} training images, {args.epochs} epochs "
        f"({' '.join(sys.argv[1:]) or 'defaults'}):"
    )
    print("| method | test accuracy | seconds |\n|---|---|---|")
    for method, row in results.items():
        print(f"| {method} | {row['test_accuracy']:.4f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()

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
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

METHODS = ("bp", "gll", "dgl", "predsim", "infopro")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--train-examples", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--dataset", default="cifar10_jpeg")
    parser.add_argument("--data-dir", default="../shared/data/tfds")
    parser.add_argument("--output", default="benchmarks/results/baselines.json")
    parser.add_argument("--run-root", default="runs/baselines")
    args = parser.parse_args()

    from keras_local.config import load_config
    from keras_local.methods import method_option_names
    from keras_local.train import train_and_evaluate

    results = {}
    if os.path.exists(args.output):
        with open(args.output) as file:
            results = json.load(file)
    for method in args.methods:
        if method in results:
            print(f"{method}: done already ({results[method]['test_accuracy']:.4f})")
            continue
        overrides = [
            f"architecture={args.architecture}",
            f"method={method}",
            f"num_blocks={args.num_blocks}",
            f"dataset={args.dataset}",
            f"data_dir={args.data_dir}",
            f"train_examples={args.train_examples}",
            f"epochs={args.epochs}",
            f"batch_size={args.batch_size}",
            f"learning_rate={args.learning_rate}",
            "momentum=0.9",
            "nesterov=true",
            "weight_decay=5e-4",
            "lr_schedule=cosine",
            "verbose=0",
        ]
        if method == "bp":
            overrides[2] = "num_blocks=1"
        config = load_config(None, overrides, method_option_names())
        summary = train_and_evaluate(config, run_dir=os.path.join(args.run_root, method))
        results[method] = {key: summary[key] for key in ("test_accuracy", "block_accuracies", "seconds")}
        results[method]["config"] = overrides
        os.makedirs(os.path.dirname(args.output), exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(results, file, indent=2)
        print(f"{method}: test accuracy {summary['test_accuracy']:.4f} in {summary['seconds']:.0f} s", flush=True)
    print(
        f"\n{args.architecture}, K={args.num_blocks}, {args.train_examples} training images, {args.epochs} epochs "
        f"({' '.join(sys.argv[1:]) or 'defaults'}):"
    )
    print("| method | test accuracy | seconds |\n|---|---|---|")
    for method, row in results.items():
        print(f"| {method} | {row['test_accuracy']:.4f} | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()

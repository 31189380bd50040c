"""One training budget for every cell of a benchmark grid (`baselines.py`,
`local_2024.py`): the command-line arguments that size it, the shared SGD
recipe as `--set` overrides, and the results file that lets a grid resume.

A cell trains through `keras_local.train.train_and_evaluate` on the shared
CIFAR-10 copy with SGD (Nesterov 0.9, cosine, weight decay 5e-4); its summary
is written to the results file as soon as it ends, and a re-run skips it.
"""

import json
import os

SUMMARY_KEYS = ("test_accuracy", "block_accuracies", "seconds")


def add_budget_arguments(parser, num_blocks, train_examples, epochs, output, run_root):
    """The network, K, data and budget arguments, with these defaults."""
    parser.add_argument("--architecture", default="resnet32")
    parser.add_argument("--num-blocks", type=int, default=num_blocks)
    parser.add_argument("--train-examples", type=int, default=train_examples)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--dataset", default="cifar10_jpeg")
    parser.add_argument("--data-dir", default="../shared/data/tfds")
    parser.add_argument("--output", default=output)
    parser.add_argument("--run-root", default=run_root)


def budget_overrides(args, method, num_blocks, *settings):
    """The `--set` overrides of one cell: `method` in `num_blocks` blocks
    under the shared recipe, then `settings` (e.g. a split, a seed)."""
    return [
        f"architecture={args.architecture}",
        f"method={method}",
        f"num_blocks={num_blocks}",
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
        *settings,
    ]


def load_results(path):
    """The cells done so far ({} before the first)."""
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def train_cell(results, key, overrides, run_dir, output):
    """Trains one cell, records its summary under `key` and rewrites `output`."""
    from keras_local.config import load_config
    from keras_local.methods import method_option_names
    from keras_local.train import train_and_evaluate

    summary = train_and_evaluate(load_config(None, overrides, method_option_names()), run_dir=run_dir)
    results[key] = {name: summary[name] for name in SUMMARY_KEYS}
    results[key]["config"] = overrides
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as file:
        json.dump(results, file, indent=2)
    print(f"{key}: test accuracy {summary['test_accuracy']:.4f} in {summary['seconds']:.0f} s", flush=True)
    return summary

"""The `keras-local` command line.

    keras-local train                                   # demo on the embedded CIFAR-10 sample
    keras-local train --config recipes/gll_resnet32_cifar10.toml --set epochs=5
    keras-local list                                    # methods, architectures, heads, datasets
"""

import argparse
import os
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="keras-local", description="Block-wise local training with Keras.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train and evaluate a model from a config")
    train.add_argument("--config", help="TOML recipe (see recipes/); defaults give the quick demo")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set epochs=5 (repeatable)")
    train.add_argument("--run-dir", help="where outputs go (default: runs/<architecture>-<method>-k<K>-<dataset>)")
    listing = commands.add_parser("list", help="list methods, architectures, heads and datasets")
    listing.add_argument("--data-dir", help="also list the datasets prepared under this TFDS data root")
    return parser


def _summary_line(summary):
    blocks = " ".join(f"{value:.3f}" for value in summary["block_accuracies"].values())
    blocks = f" (block heads: {blocks})" if blocks else ""
    return (
        f"{summary['architecture']} {summary['method']} K={summary['num_blocks']} on "
        f"{summary['dataset']}, {summary['epochs']} epochs: test accuracy "
        f"{summary['test_accuracy']:.4f}{blocks} in {summary['seconds']:.0f} s -> {summary['run_dir']}"
    )


def main(argv=None):
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_local import data
    from keras_local.architectures import list_architectures
    from keras_local.config import load_config
    from keras_local.heads import list_heads
    from keras_local.methods import list_methods, method_option_names

    try:
        if args.command == "list":
            print("methods:       " + ", ".join(list_methods()))
            print("architectures: " + ", ".join(list_architectures()))
            print("heads:         " + ", ".join(list_heads()))
            print("datasets:      " + ", ".join(data.available_datasets(args.data_dir)))
            return 0
        from keras_local.train import train_and_evaluate

        config = load_config(args.config, args.set, method_option_names())
        summary = train_and_evaluate(config, run_dir=args.run_dir)
    except ValueError as error:
        print(f"keras-local: error: {error}", file=sys.stderr)
        return 2
    print(_summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

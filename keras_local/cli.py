"""The `keras-local` command line.

    keras-local train                                   # demo on the embedded CIFAR-10 sample
    keras-local train --config recipes/gll_resnet32_cifar10.toml --set epochs=5
    keras-local list                                    # methods, architectures, heads, datasets
    keras-local analyze --model runs/x/model.keras --dataset cifar10_sample --block 3 --plot f.png
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
    analyze = commands.add_parser(
        "analyze", help="class separation of a block's features (inter/intra-class distance ratio)"
    )
    analyze.add_argument("--model", required=True, help="a saved LocalModel (.keras)")
    analyze.add_argument("--dataset", default="cifar10_sample")
    analyze.add_argument("--data-dir", help="TFDS data root of the dataset")
    analyze.add_argument("--split", default="test")
    analyze.add_argument("--block", type=int, default=-1, help="block index (default: the last)")
    analyze.add_argument("--head", action="store_true", help="use the block's head output (e.g. AL's bridge)")
    analyze.add_argument("--examples", type=int, default=1000, help="examples to use")
    analyze.add_argument("--plot", help="write a PCA scatter PNG here (needs matplotlib)")
    return parser


def _analyze(args):
    import json

    import keras

    import keras_local  # noqa: F401  (registers the model classes)
    from keras_local import analysis, data

    if not os.path.exists(args.model):
        raise ValueError(f"--model {args.model!r} does not exist.")
    model = keras.saving.load_model(args.model)
    dataset = data.load_dataset(args.dataset, args.split, batch_size=250, data_dir=args.data_dir,
                                num_examples=args.examples)
    features, labels = analysis.block_features(model, dataset, block=args.block, head=args.head)
    result = {"model": args.model, "block": args.block, "head": args.head, "examples": len(labels),
              **analysis.class_distance_ratio(features, labels)}
    if args.plot:
        result["plot"] = analysis.plot_features(
            features, labels, args.plot, title=f"{model.name}, block {args.block}{' head' if args.head else ''}"
        )
    print(json.dumps(result))


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
        if args.command == "analyze":
            _analyze(args)
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

"""Associated Learning against its parameter-matched backprop twin on real CIFAR-10.

    python benchmarks/associated_vs_bp.py --architecture cnn --epochs 10 --train-examples 10000

Runs `recipes/associated/<architecture>_cifar10_{associated,bp}.toml` with the
same overrides (dataset, training subset, epochs, optimizer settings) through
`keras-local train`'s own `train_and_evaluate`, on the shared JPEG copy of
CIFAR-10, testing on all 10,000 test images. Then it measures the class
separation of the features each network feeds its classifier (AL: the last
bridge's output; bp: its last hidden layer), the paper's Table 7. Writes
`benchmarks/results/associated_vs_bp_<architecture>.json` and prints a table.
"""

import argparse
import json
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_local import analysis, data  # noqa: E402
from keras_local.config import load_config  # noqa: E402
from keras_local.export import export_inference_model  # noqa: E402
from keras_local.methods import method_option_names  # noqa: E402
from keras_local.train import train_and_evaluate  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="cnn", choices=["mlp", "cnn", "resnet20", "resnet32", "vgg"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "tfds"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-examples", type=int, default=10000)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="Adam learning rate of both (the recipes' 1e-4 is for 200 epochs)",
    )
    parser.add_argument("--lr-schedule", default="cosine")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/associated_vs_bp")
    args = parser.parse_args()

    overrides = [
        "dataset=cifar10_jpeg",
        f"data_dir={args.data_dir!r}".replace("'", '"'),
        f"epochs={args.epochs}",
        f"train_examples={args.train_examples}",
        f"learning_rate={args.learning_rate}",
        f"lr_schedule={args.lr_schedule}",
        f"batch_size={args.batch_size}",
        f"seed={args.seed}",
        "verbose=2",
    ]
    test = data.load_dataset("cifar10_jpeg", "test", 500, data_dir=args.data_dir)
    results = {}
    for method in ("associated", "bp"):
        recipe = ROOT / "recipes" / "associated" / f"{args.architecture}_cifar10_{method}.toml"
        config = load_config(recipe, overrides, method_option_names())
        run_dir = os.path.join(args.runs, f"{args.architecture}_{method}")
        summary = train_and_evaluate(config, run_dir=run_dir)
        model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
        features, labels = analysis.block_features(model, test, block=-1, head=method == "associated", limit=2000)
        results[method] = {
            "test_accuracy": summary["test_accuracy"],
            "inference_parameters": export_inference_model(model).count_params(),
            "training_parameters": model.count_params(),
            "seconds": summary["seconds"],
            "metafeatures": analysis.class_distance_ratio(features, labels),
            "recipe": str(recipe.relative_to(ROOT)),
        }
    result = {
        "architecture": args.architecture,
        "overrides": overrides,
        "results": results,
        "data": "CIFAR-10 (JPEG q75), full 10,000-image test set",
    }
    output = ROOT / "benchmarks" / "results" / f"associated_vs_bp_{args.architecture}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"{args.architecture}, CIFAR-10 (JPEG q75), {args.train_examples} training images, {args.epochs} epochs:")
    for method, row in results.items():
        print(
            f"  {method:10s} test accuracy {row['test_accuracy']:.4f}, inference parameters "
            f"{row['inference_parameters']:,}, inter/intra-class distance ratio "
            f"{row['metafeatures']['ratio']:.3f}, {row['seconds']:.0f} s"
        )


if __name__ == "__main__":
    main()

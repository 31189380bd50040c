"""How many steps Associated Learning needs to reach backprop's accuracy: test accuracy against steps.

    python benchmarks/associated_steps.py --steps 12000 --every 1000 --width 1024

Associated Learning's MLP (`recipes/associated/mlp_cifar10_associated.toml`: two ELU components, sigmoid
label path, bridges Flatten → Dense(5n) → Dense(n)) and its backprop twin with the inference path's
layers (`mlp_cifar10_bp.toml`), at width n = `--width` (the paper's 3000 holds ~180 M bridge parameters,
too many for these CPUs), on all 50,000 CIFAR-10 training images (the shared JPEG copy) with the
reference's optimisation: Adam, batch 32, learning rate 1e-4 (its first 40 % of training is constant at
that rate; autoencoders 2e-4). Every `--every` steps both are scored on the full 10,000-image test set.
Writes `benchmarks/results/associated_steps.json` and `associated_steps.png` and prints the first step at
which AL reaches BP's accuracy at the end (or that it did not, within the budget).
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from keras_local import data  # noqa: E402
from keras_local.builder import build_model_from_config  # noqa: E402
from keras_local.config import load_config  # noqa: E402
from keras_local.methods import method_option_names  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def curve(method, args):
    """[(step, test accuracy)] for one method."""
    width = args.width
    hidden = [width, width] if method == "associated" else [width, width, 5 * width, width, width]
    config = load_config(
        ROOT / "recipes" / "associated" / f"mlp_cifar10_{method}.toml",
        [f"architecture_options={{hidden_units = {hidden}}}", f"seed={args.seed}"]
        + ([f"width={width}"] if method == "associated" else []),
        method_option_names(),
    )
    keras.utils.set_random_seed(args.seed)
    model = build_model_from_config(config, (32, 32, 3), 10)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    train = data.load_dataset(
        "cifar10_jpeg", "train", 32, training=True, data_dir=args.data_dir, seed=args.seed
    ).repeat()
    test = data.load_dataset("cifar10_jpeg", "test", 500, data_dir=args.data_dir)
    points, start = [], time.time()
    for step in range(args.every, args.steps + 1, args.every):
        model.fit(train, steps_per_epoch=args.every, epochs=1, verbose=0)
        accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
        points.append((step, float(accuracy)))
        print(f"{method} step {step}: test accuracy {accuracy:.4f} ({time.time() - start:.0f} s)", flush=True)
    return points, model.count_params()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "tfds"))
    parser.add_argument("--output", default=str(RESULTS / "associated_steps.json"))
    args = parser.parse_args(argv)
    results = {}
    for method in ("bp", "associated"):
        points, parameters = curve(method, args)
        results[method] = {"points": points, "training_parameters": parameters}
    target = results["bp"]["points"][-1][1]
    reached = next((step for step, accuracy in results["associated"]["points"] if accuracy >= target), None)
    result = {
        "command": "python " + " ".join(["benchmarks/associated_steps.py", *(argv or sys.argv[1:])]),
        "width": args.width,
        "batch_size": 32,
        "learning_rate": args.learning_rate,
        "results": results,
        "bp_final_accuracy": target,
        "associated_reaches_bp_at_step": reached,
    }
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2))
    _plot(results, pathlib.Path(args.output).with_suffix(".png"))
    verdict = f"at step {reached}" if reached else f"not within {args.steps} steps"
    print(f"BP after {args.steps} steps: {target:.4f}; Associated Learning reaches it {verdict}.")


def _plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, label in (("bp", "BP (twin of AL's inference path)"), ("associated", "Associated Learning")):
        steps, accuracies = zip(*results[method]["points"])
        axis.plot(steps, accuracies, marker="o", label=label)
    axis.set_xlabel("training steps (batch 32, Adam 1e-4)")
    axis.set_ylabel("test accuracy")
    axis.set_title("CIFAR-10, MLP", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()

"""`keras-local tune`: a run configuration's `[search]` table searched by a keras-tuner tuner.

`keras_local.tuning` defines the search space (`LocalHyperModel`) and the
split probe; this module turns a resolved config into that hypermodel
(`hypermodel_from_config`), picks the tuner (`make_tuner`) and runs the
search on held-out training images, writing `trials.json`, `best.toml` and
`trials.png` (`tune`).

Example:

```python
from keras_local.config import load_config

# recipes/tuning/backlink_resnet20_alpha_l.toml searches the shared CIFAR-10 copy; a quick search
# on the embedded sample:
config = load_config(None, ['architecture="resnet8"', 'method="backlink"', "num_blocks=2", "epochs=1",
                            "train_examples=512", "search={alpha = [0.5, 1.0]}"])
result = tune(config, tuner="grid", max_trials=2, output_dir="runs/tune")
result["best"]["config"]      # the keys a recipe takes
```
"""

import os

import keras_tuner as kt

from keras_local import data, plots
from keras_local.config import to_toml
from keras_local.files import write_json, write_text
from keras_local.methods import METHODS, get_method
from keras_local.tuning import LocalHyperModel, objective, score_splits, searched_options
from keras_local.validation import check_number

TUNERS = ("random", "hyperband", "bayesian", "grid")
GENERAL_KEYS = ("method", "num_blocks", "head", "learning_rate")


def search_keys():
    """Keys a `[search]` table may hold: the general ones, the methods' searched options, cuts."""
    return (*GENERAL_KEYS, *searched_options(), "cuts", "max_cut_candidates")


def hypermodel_from_config(config, input_shape, num_classes):
    """The `LocalHyperModel` of a resolved config: its `[search]` table's
    entries are searched, every other key is fixed at the config's value."""
    search = dict(config["search"])
    unknown = sorted(set(search) - set(search_keys()))
    if unknown:
        raise ValueError(f"Unknown [search] key(s) {unknown}. Allowed: {', '.join(search_keys())}.")
    # A searched option not in [search] is fixed at the config's value, else at its method's default.
    option_defaults = {
        name: get_method(method.name).get_config()[name]
        for method in METHODS.values()
        for name in method.search.options
    }
    fixed = {
        "method": config["method"],
        "num_blocks": config["num_blocks"],
        "learning_rate": config["learning_rate"],
        "head": config["head"] or "default",
        **{key: config["method_options"].get(key, default) for key, default in option_defaults.items()},
    }
    space = {key: search.get(key, fixed[key]) for key in (*GENERAL_KEYS, *option_defaults)}
    cuts = search.get("cuts")
    if cuts is None and "num_blocks" not in search and config["cuts"] is not None:
        cuts = {len(config["cuts"]) + 1: [",".join(map(str, config["cuts"]))]}
    if space["num_blocks"] == "auto":
        raise ValueError('num_blocks = "auto" cannot be tuned; give K values in [search] or in the config.')
    method_options = {k: v for k, v in config["method_options"].items() if k not in option_defaults}
    return LocalHyperModel(
        config["architecture"],
        input_shape,
        num_classes,
        **space,
        cuts=cuts,
        max_cut_candidates=search.get("max_cut_candidates", 8),
        optimizer=config["optimizer"],
        momentum=config["momentum"],
        nesterov=config["nesterov"],
        weight_decay=config["weight_decay"],
        method_options=method_options,
        architecture_options=config["architecture_options"],
        seed=config["seed"],
    )


def make_tuner(name, hypermodel, objective, max_trials, directory, max_epochs, seed=0, overwrite=False):
    """A keras-tuner tuner by name (`TUNERS`); `overwrite=False` resumes a
    search found in `directory`."""
    if name not in TUNERS:
        raise ValueError(f"Unknown tuner {name!r}. Allowed: {', '.join(TUNERS)}.")
    common = {
        "objective": objective,
        "directory": directory,
        "project_name": "tuner",
        "seed": seed,
        "overwrite": overwrite,
    }
    if name == "hyperband":
        return kt.Hyperband(hypermodel, max_epochs=max_epochs, factor=3, hyperband_iterations=1, **common)
    if name == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    if name == "grid":
        return kt.GridSearch(hypermodel, max_trials=max_trials, **common)
    return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)


def tune(
    config,
    *,
    tuner="random",
    max_trials=10,
    objective_name="val_accuracy",
    direction=None,
    output_dir="runs/tune",
    validation_examples=None,
    probe_steps=0,
    overwrite=False,
):
    """Runs a search from a resolved config and writes its results.

    The data: the last `validation_examples` (default: 10%, at most 5,000)
    images of the config's training split are held out for the objective;
    training uses the images before them (the first `train_examples` of
    those, when set). The test split is not used. With `probe_steps`, the
    cut candidates of each K are first ranked by `score_splits` on that
    data and only the best `max_cut_candidates` // 2 (at least 2) enter
    the search.

    Writes under `output_dir`: `tuner/` (keras-tuner's own files; a re-run
    resumes), `trials.json` (every trial: its values, its config keys, its
    score), `best.toml` (the config with the best trial's keys, without the
    `[search]` table: a recipe `keras-local train --config` takes) and
    `trials.png` when matplotlib is installed. Returns the result dict.
    """

    check_number("max_trials", max_trials, 1, integer=True)
    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}. Allowed: {', '.join(TUNERS)}.")
    goal = objective(objective_name, direction)
    input_shape, num_classes = data.dataset_info(config["dataset"], config["data_dir"])
    hypermodel = hypermodel_from_config(config, input_shape, num_classes)
    train, validation = _search_data(config, validation_examples)
    hypermodel.training_data = lambda: _search_data(config, validation_examples)[0]  # the same batches per trial
    if probe_steps:
        keep = max(2, config["search"].get("max_cut_candidates", 8) // 2)
        for k in list(hypermodel.candidates):
            if len(hypermodel.candidates[k]) > keep:
                ranked = score_splits(
                    config["architecture"],
                    k,
                    hypermodel.training_data,
                    validation,
                    candidates=hypermodel.candidates[k],
                    probe_steps=probe_steps,
                    learning_rate=config["learning_rate"],
                    input_shape=input_shape,
                    num_classes=num_classes,
                    weight_decay=config["weight_decay"],
                    seed=config["seed"],
                )
                hypermodel.candidates[k] = [row["cuts"] for row in ranked[:keep]]
    os.makedirs(output_dir, exist_ok=True)
    search = make_tuner(
        tuner, hypermodel, goal, max_trials, output_dir, config["epochs"], seed=config["seed"], overwrite=overwrite
    )
    search.search(train, validation_data=validation, epochs=config["epochs"], verbose=min(config["verbose"], 1))

    trials = []
    for trial in search.oracle.trials.values():
        trials.append(
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "score": trial.score,
                "values": dict(trial.hyperparameters.values),
                "config": hypermodel.config_from(trial.hyperparameters),
            }
        )
    best_trial = search.oracle.get_best_trials(1)[0]
    best = {key: value for key, value in config.items() if key not in ("search", "run_dir")}
    best.update(hypermodel.config_from(best_trial.hyperparameters))
    if "cuts" not in best or best["num_blocks"] == 1:
        best["cuts"] = None
    result = {
        "objective": {"name": goal.name, "direction": goal.direction},
        "tuner": tuner,
        "best": {"trial_id": best_trial.trial_id, "score": best_trial.score, "config": best},
        "trials": trials,
        "split_candidates": {str(k): v for k, v in hypermodel.candidates.items()},
    }
    write_json(os.path.join(output_dir, "trials.json"), result)
    header = (
        f"# Best trial {best_trial.trial_id} of `keras-local tune` ({tuner}, {len(trials)} trials): "
        f"{goal.name} = {best_trial.score:.4f}\n"
    )
    write_text(os.path.join(output_dir, "best.toml"), header + to_toml(best))
    try:
        result["plot"] = plots.plot_trials(trials, os.path.join(output_dir, "trials.png"), goal)
    except ImportError:
        result["plot"] = None
    return result


def _search_data(config, validation_examples):
    """Training and held-out batches from the config's training split."""

    builder = data.get_builder(config["dataset"], config["data_dir"])
    total = builder.info.splits[config["train_split"]].num_examples
    held_out = validation_examples or min(5000, max(1, total // 10))
    if isinstance(held_out, bool) or not isinstance(held_out, int) or not 1 <= held_out < total:
        raise ValueError(
            f"validation_examples must be in 1..{total - 1} (the split has {total}), got {validation_examples!r}."
        )
    train_count = min(config["train_examples"] or total, total - held_out)
    split = config["train_split"]
    train = data.load_dataset(
        config["dataset"],
        f"{split}[:{train_count}]",
        config["batch_size"],
        training=True,
        data_dir=config["data_dir"],
        seed=config["seed"],
    )
    validation = data.load_dataset(
        config["dataset"], f"{split}[{total - held_out}:]", config["eval_batch_size"], data_dir=config["data_dir"]
    )
    return train, validation

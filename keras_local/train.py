"""`train_and_evaluate`: one run from a config to a run directory."""

import json
import os
import platform
import time

import keras

from keras_local import data
from keras_local.builder import build_model_from_config
from keras_local.callbacks import BlockLearningRateScheduler, callbacks_from_config
from keras_local.config import to_toml
from keras_local.export import export_inference_model


def make_learning_rate(config, steps_per_epoch):
    """The learning rate (a float or a schedule) the config describes."""
    learning_rate = config["learning_rate"]
    if config["lr_schedule"] == "cosine":
        warmup_steps = config["warmup_epochs"] * steps_per_epoch
        start = config["warmup_learning_rate"] if warmup_steps else learning_rate
        learning_rate = keras.optimizers.schedules.CosineDecay(
            start, decay_steps=config["epochs"] * steps_per_epoch - warmup_steps,
            alpha=config["final_learning_rate"] / learning_rate,
            warmup_target=learning_rate if warmup_steps else None, warmup_steps=warmup_steps,
        )
    elif config["lr_schedule"] == "piecewise":
        total = config["epochs"] * steps_per_epoch
        learning_rate = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(fraction * total) for fraction in config["lr_boundaries"]],
            [learning_rate * multiplier for multiplier in config["lr_multipliers"]],
        )
    return learning_rate


def make_optimizer(config, steps_per_epoch, learning_rate=None):
    """The optimizer the config describes (cloned per block by `compile`), at
    `learning_rate` when given (default: `make_learning_rate`)."""
    if learning_rate is None:
        learning_rate = make_learning_rate(config, steps_per_epoch)
    if config["optimizer"] == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=config["momentum"], nesterov=config["nesterov"]
        )
    return keras.optimizers.Adam(learning_rate)


def versions():
    import tensorflow as tf
    import tensorflow_datasets as tfds

    import keras_local

    return {
        "keras_local": keras_local.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tensorflow_datasets": tfds.__version__,
        "python": platform.python_version(),
    }


def default_run_dir(config):
    return os.path.join(
        "runs", f"{config['architecture']}-{config['method']}-k{config['num_blocks']}-{config['dataset']}"
    )


def train_and_evaluate(config, run_dir=None):
    """Trains and evaluates the model a resolved config describes.

    Writes to `run_dir`: `config.toml` (resolved), `versions.json`,
    `history.csv` (per-epoch, per-block metrics), `model.keras`,
    `inference.keras` (plain Keras, see `export_inference_model`) and
    `summary.json`. A `backup/` folder lets a re-run of an interrupted command
    resume where it stopped, with every block's optimizer state.

    Returns the summary dict (`test_accuracy`, per-block accuracies, ...).
    """
    start = time.time()
    run_dir = run_dir or config["run_dir"] or default_run_dir(config)
    # Everything that can be wrong with the config fails here, before training.
    input_shape, num_classes = data.dataset_info(config["dataset"], config["data_dir"])
    keras.utils.set_random_seed(config["seed"])
    model = build_model_from_config(config, input_shape, num_classes)
    train = data.load_dataset(
        config["dataset"], config["train_split"], config["batch_size"], training=True,
        data_dir=config["data_dir"], num_examples=config["train_examples"], seed=config["seed"],
    )
    test = data.load_dataset(
        config["dataset"], config["test_split"], config["eval_batch_size"], data_dir=config["data_dir"],
        num_examples=config["test_examples"],
    )
    steps_per_epoch = int(train.cardinality())
    if steps_per_epoch < 1:
        steps_per_epoch = sum(1 for _ in train)
    learning_rate = make_learning_rate(config, steps_per_epoch)
    local_callbacks = callbacks_from_config(config["callbacks"], run_dir, learning_rate, len(model.blocks))
    per_block = any(isinstance(c, BlockLearningRateScheduler) for c in local_callbacks)
    # Per-block schedules set each optimizer's (float) rate at every batch.
    model.compile(optimizer=make_optimizer(config, steps_per_epoch,
                                           learning_rate=config["learning_rate"] if per_block else None))

    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.toml"), "w") as file:
        file.write(to_toml({**config, "run_dir": run_dir}))
    with open(os.path.join(run_dir, "versions.json"), "w") as file:
        json.dump(versions(), file, indent=2)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "backup")),
        *local_callbacks,  # before the CSV: their log entries (lr_k, peak_memory_mib, ...) reach it
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
    ]
    if config["tensorboard"]:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")))
    validate = config["validation_freq"] > 0
    model.fit(train, validation_data=test if validate else None, epochs=config["epochs"], callbacks=callbacks,
              verbose=config["verbose"], validation_freq=max(config["validation_freq"], 1))
    results = model.evaluate(test, return_dict=True, verbose=0)
    model.save(os.path.join(run_dir, "model.keras"))
    export_inference_model(model, os.path.join(run_dir, "inference.keras"))
    summary = {
        "test_accuracy": float(results["accuracy"]),
        "test_loss": float(results["loss"]),
        "block_accuracies": {key: float(value) for key, value in results.items() if key.startswith("acc_")},
        "architecture": config["architecture"],
        "method": config["method"],
        "num_blocks": len(model.blocks),
        "dataset": config["dataset"],
        "epochs": config["epochs"],
        "seconds": round(time.time() - start, 1),
        "run_dir": run_dir,
    }
    with open(os.path.join(run_dir, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    return summary

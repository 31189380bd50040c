import json
import os
import re
import subprocess
import sys

import keras
import pytest
from conftest import cli_train

from keras_local import cli
from keras_local.config import load_config, parse_value


def test_config_layers_defaults_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('architecture = "resnet32"\nepochs = 200\nlearning_rate = 1\n')
    config = load_config(recipe, ["epochs=5", "cuts=[3, 7]", "dataset=cifar10"])
    assert config["architecture"] == "resnet32" and config["epochs"] == 5
    assert config["cuts"] == [3, 7] and config["dataset"] == "cifar10"
    assert config["learning_rate"] == 1.0 and isinstance(config["learning_rate"], float)
    assert parse_value("true") is True and parse_value("cifar10") == "cifar10"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "--set", "method=magic"],
            "Unknown method 'magic'. Allowed: associated, auglocal, backlink, bp, bwbpf, dgl, gll, infopro, predsim",
        ),
        (["train", "--set", "architecture=resnet33"], "Unknown architecture 'resnet33'"),
        (["train", "--set", "num_blocks=99"], "num_blocks=99 is larger than the number of units"),
        (["train", "--set", "learning_rat=0.1"], "Unknown config key 'learning_rat'"),
        (["train", "--set", "epochs=many"], "Config key 'epochs' has the wrong type: got 'many'"),
        (["train", "--set", "dataset=cifar11"], "Unknown dataset 'cifar11'"),
        (["train", "--set", "data_dir=/no/such/dir"], "data_dir='/no/such/dir' does not exist"),
        (["train", "--config", "/no/such.toml"], "Config file '/no/such.toml' does not exist"),
        (
            ["train", "--set", "block_order=parallel"],
            "Unknown block_order 'parallel'. Allowed: together, sequential, pipelined",
        ),
        (
            ["train", "--set", "split=front"],
            "Unknown split 'front'. Allowed: even, balanced, infopro, infopro_balanced",
        ),
        (["train", "--set", "method=bp", "--set", "block_order=pipelined"], "method 'bp' backpropagates one loss"),
        (["train", "--set", "devices=['/gpu:3']"], "Unknown device '/gpu:3'"),
        (["profile", "--set", "block_order=parallel"], "Unknown block_order 'parallel'"),
        (["train", "--set", "warmup_epochs=10", "--set", "lr_schedule=constant"], "warmup_epochs=10 needs"),
        (["train", "--set", "validation_freq=-1"], "validation_freq must be >= 0 (0: only at the end), got -1"),
        (
            ["train", "--set", "weight_decay_scope=heads"],
            "Unknown weight_decay_scope 'heads'. Allowed: all, backbone_kernels",
        ),
        (["train", "--set", "recipe=paper"], "Unknown recipe 'paper'. Allowed: shared, reference"),
        (["train", "--set", "method=predsim", "--set", "output_loss=mean"], "Unknown output_loss 'mean'"),
        (["train", "--set", 'dtype_policy="float16"'], "Unknown dtype_policy 'float16'. Allowed: float32, mixed_"),
        (["train", "--set", 'jit_compile="yes"'], "Unknown jit_compile 'yes'. Allowed: true, false, 'auto'"),
        (
            ["train", "--set", 'strategy="mirrored"', "--set", "devices=['/cpu:1']"],
            'strategy = "mirrored" trains data-parallel over this machine\'s GPUs in one process; it cannot be',
        ),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(argv, message, capsys, tmp_path):
    output = ["--run-dir", str(tmp_path / "run")] if argv[0] == "train" else ["--output-dir", str(tmp_path / "run")]
    assert cli.main(argv + output) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("keras-local: error: ")
    assert message in err
    assert not (tmp_path / "run").exists()  # failed before anything was written or trained


@pytest.mark.large  # a whole run of the CLI
def test_train_end_to_end_on_the_embedded_sample(tmp_path):
    run_dir = tmp_path / "run"
    command = cli_train(run_dir, "epochs=1", "train_examples=256", "num_blocks=2", "verbose=0")
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("resnet20 gll K=2 on cifar10_sample, 1 epochs: test accuracy")
    for name in ["config.toml", "versions.json", "history.csv", "model.keras", "inference.keras", "summary.json"]:
        assert (run_dir / name).exists(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and set(summary["block_accuracies"]) == {"acc_0", "acc_1"}
    header = (run_dir / "history.csv").read_text().splitlines()[0].split(",")
    assert {"acc_0", "acc_1", "val_accuracy"} <= set(header)
    assert load_config(run_dir / "config.toml")["train_examples"] == 256

    bad = subprocess.run(
        [sys.executable, "-m", "keras_local.cli", "train", "--set", "method=magic"], capture_output=True, text=True
    )
    # TensorFlow's C++ logger may print its start-up lines (absl, oneDNN, CPU features) before
    # TF_CPP_MIN_LOG_LEVEL applies, depending on the CPU; the CLI's own output is one line.
    own = [
        line
        for line in bad.stderr.strip().splitlines()
        if not re.match(r"[IWEF]\d{4} |WARNING: All log messages before absl|To enable the following", line)
    ]
    assert bad.returncode == 2 and own == [
        "keras-local: error: Unknown method 'magic'. Allowed: associated, "
        "auglocal, backlink, bp, bwbpf, dgl, gll, infopro, predsim."
    ], bad.stderr


@pytest.mark.slow
def test_demo_reaches_accuracy_clearly_above_chance(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "keras_local.cli", "train", "--run-dir", str(tmp_path), "--set", "verbose=0"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.25, out.stdout


def test_piecewise_schedule_follows_the_reference_steps():
    from keras_local.train import make_optimizer

    config = load_config(None, ["lr_schedule=piecewise", "optimizer=adam", "learning_rate=0.001", "epochs=10"])
    schedule = keras.optimizers.schedules.deserialize(
        make_optimizer(config, steps_per_epoch=10).get_config()["learning_rate"]
    )
    rates = [float(schedule(step)) for step in (0, 39, 41, 61, 81, 95)]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 5e-7])
    with pytest.raises(ValueError, match="lr_boundaries"):
        load_config(None, ["lr_boundaries=[0.5]"])


def test_warmup_then_cosine_follows_infopro():
    from keras_local.train import make_optimizer

    config = load_config(None, ["epochs=160", "warmup_epochs=10", "learning_rate=0.8"])
    schedule = keras.optimizers.schedules.deserialize(
        make_optimizer(config, steps_per_epoch=10).get_config()["learning_rate"]
    )
    values = [float(schedule(step)) for step in (0, 50, 100, 850, 1599)]
    assert values[0] == pytest.approx(0.01) and values[1] == pytest.approx(0.405)  # linear warm-up from 0.01
    assert values[2] == pytest.approx(0.8) and values[3] == pytest.approx(0.4, rel=1e-3)  # then cosine over 150
    assert values[4] == pytest.approx(0.0, abs=1e-4)


@pytest.mark.large  # the installed command, in its own process
def test_the_command_output_starts_with_its_own_lines_not_tensorflows_import_log(tmp_path):
    command = os.path.join(os.path.dirname(sys.executable), "keras-local")
    env = {
        key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_LOCAL_TF_LOGS")
    }
    refused = subprocess.run(
        [command, "train", "--set", 'method="nope"'], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "keras-local: error: Unknown method 'nope'. Allowed: associated, auglocal, backlink, bp, bwbpf, dgl, gll, "
        "infopro, predsim."
    ]
    listed = subprocess.run([command, "list", "--tf-logs"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith("methods:")

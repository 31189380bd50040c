"""Runs that survive what real runs meet: kills, re-runs, changed configs, nan,
damaged data and files, full disks."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest

import keras_local as kl
from keras_local import cli, data
from keras_local.config import load_config
from keras_local.files import atomic_path, partial_path, write_json
from keras_local.train import previous_run, train_and_evaluate

pytestmark = pytest.mark.large  # whole runs, killed and resumed in subprocesses

# A small run: 256 examples in batches of 32 (8 steps per epoch), 3 epochs.
SMALL = [
    "architecture=resnet8",
    "num_blocks=2",
    "train_examples=256",
    "test_examples=128",
    "batch_size=32",
    "epochs=3",
    "verbose=0",
    "checkpoint_every=3",
]


def _strict_json(path):
    """Parses JSON as the standard does: a bare NaN or Infinity is an error."""

    def refuse(constant):
        raise ValueError(f"{path} holds the non-JSON constant {constant}")

    with open(path) as file:
        return json.load(file, parse_constant=refuse)


def _weights(path):
    return keras.saving.load_model(path).get_weights()


def _run(tmp_path, argv, capsys):
    code = cli.main(["train", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- exact resume -------------------------------------------------------------------


class StopAtStep(keras.callbacks.Callback):
    """Interrupts training after `step` batches: raises, or with `kill` dies as `kill -9` does."""

    def __init__(self, step, kill=False):
        super().__init__()
        self.step, self.kill, self.seen = step, kill, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("interrupted")


KILLED_RUN = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_robust_runs import StopAtStep
from keras_local.config import load_config
from keras_local.methods import method_option_names
from keras_local.train import train_and_evaluate

kill_at = int(sys.argv[2])
train_and_evaluate(load_config(None, sys.argv[3:], method_option_names()), run_dir=sys.argv[1],
                   callbacks=[StopAtStep(kill_at, kill=True)] if kill_at else [])
"""


def killed_run_runner(tmp_path, settings):
    """`run(run_dir, kill_at)`: trains `settings` in a subprocess, killed with kill -9 after `kill_at`
    batches (0: never)."""
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(run_dir, kill_at):
        command = [sys.executable, str(script), str(run_dir), str(kill_at), *settings]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    return run


def assert_same_saved_weights(first, second):
    for a, b in zip(_weights(first / "model.keras"), _weights(second / "model.keras"), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit


def test_a_run_killed_inside_an_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    """kill -9 at step 15 (epoch 2, batch 7 of 8); the checkpoint holds step 12
    (epoch 2, batch 4): the resumed run trains the rest of epoch 2 on the
    batches the uninterrupted run saw there, with the same optimizer state."""
    run = killed_run_runner(tmp_path, SMALL)
    killed = run(tmp_path / "resumed", 15)
    assert killed.returncode == -9, killed.stderr
    checkpoint = json.loads((tmp_path / "resumed" / "backup" / "checkpoint.json").read_text())
    assert (checkpoint["epoch"], checkpoint["batch"], checkpoint["step"]) == (1, 4, 12)
    assert not (tmp_path / "resumed" / "model.keras").exists()
    resumed = run(tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = run(tmp_path / "uninterrupted", 0)
    assert uninterrupted.returncode == 0, uninterrupted.stderr

    assert_same_saved_weights(tmp_path / "resumed", tmp_path / "uninterrupted")
    # The resumed epoch's row holds all its batches: the running metrics were checkpointed too.
    assert (tmp_path / "resumed" / "history.csv").read_text() == (
        tmp_path / "uninterrupted" / "history.csv"
    ).read_text()
    assert not (tmp_path / "resumed" / "backup").exists()  # removed once the run finished


PIPELINED = [
    "architecture=resnet8",
    'method="backlink"',
    "alpha=0.5",
    "propagation_length=1",
    "num_blocks=4",
    'block_order="pipelined"',
    "train_examples=192",
    "test_examples=128",
    "batch_size=32",
    "epochs=2",
    "verbose=0",
    "checkpoint_every=1",
]


@pytest.mark.parametrize(
    "kill_at, saved_step",
    [(2, 1), pytest.param(8, 7, marks=pytest.mark.slow)],  # in the warm-up (K = 4); after it (--run-slow: CI time)
)
def test_a_pipelined_run_killed_at_any_batch_resumes_to_the_uninterrupted_weights(tmp_path, kill_at, saved_step):
    """The checkpoint holds the pipeline's batches in flight and its warm-up counter: BackLink pipelined
    (links one step late, K = 4) killed with kill -9, during the warm-up or in the second epoch, ends
    with the weights of the uninterrupted run, bit for bit."""
    run = killed_run_runner(tmp_path, PIPELINED)
    killed = run(tmp_path / "resumed", kill_at)
    assert killed.returncode == -9, killed.stderr
    checkpoint = json.loads((tmp_path / "resumed" / "backup" / "checkpoint.json").read_text())
    assert checkpoint["step"] == saved_step and checkpoint["files"][-1] == f"step-{saved_step}.pipeline.npz"
    resumed = run(tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr
    uninterrupted = run(tmp_path / "uninterrupted", 0)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    assert_same_saved_weights(tmp_path / "resumed", tmp_path / "uninterrupted")


def test_each_epoch_is_a_function_of_seed_and_epoch_alone():
    epochs = data.TrainingEpochs("cifar10_sample", batch_size=64, num_examples=256, seed=3)
    first = [images.numpy() for images, _ in epochs(2)]
    again = [
        images.numpy()
        for images, _ in data.TrainingEpochs("cifar10_sample", batch_size=64, num_examples=256, seed=3)(2)
    ]
    rest = [images.numpy() for images, _ in epochs(2, initial_batch=1)]
    other_epoch = next(iter(epochs(1)))[0].numpy()
    other_seed = next(iter(data.TrainingEpochs("cifar10_sample", batch_size=64, num_examples=256, seed=4)(2)))[0]
    assert len(first) == epochs.steps == 4 and len(rest) == 3
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first[1:], rest, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other_epoch) and not np.array_equal(first[0], other_seed.numpy())


# -- finished runs, changed configs -------------------------------------------------------


def test_a_finished_run_is_reported_not_trained_again(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    argv = ["--run-dir", run_dir, *sum((["--set", item] for item in SMALL + ["epochs=1"]), [])]
    assert _run(tmp_path, argv, capsys)[0] == 0
    history = (tmp_path / "run" / "history.csv").read_text()
    model_time = os.path.getmtime(tmp_path / "run" / "model.keras")
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 0 and out.startswith("already finished (--overwrite to train again): resnet8 gll K=2")
    assert (tmp_path / "run" / "history.csv").read_text() == history  # no duplicate rows
    assert os.path.getmtime(tmp_path / "run" / "model.keras") == model_time
    code, out, err = _run(tmp_path, argv + ["--overwrite"], capsys)
    assert code == 0 and not out.startswith("already")
    assert os.path.getmtime(tmp_path / "run" / "model.keras") > model_time
    assert (tmp_path / "run" / "history.csv").read_text().count("\n") == 2  # header and one epoch


def test_a_run_folder_of_another_config_is_refused_before_anything_is_written(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = load_config(None, SMALL)
    (run_dir / "config.toml").write_text(kl.config.to_toml({**config, "run_dir": str(run_dir)}))
    before = (run_dir / "config.toml").read_text()
    argv = ["--run-dir", str(run_dir), *sum((["--set", item] for item in SMALL + ["epochs=4", "seed=1"]), [])]
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert "holds a run of another config (epochs: 3 -> 4; seed: 0 -> 1)" in err and "--overwrite" in err
    assert (run_dir / "config.toml").read_text() == before and sorted(os.listdir(run_dir)) == ["config.toml"]


def test_a_run_written_before_a_setting_existed_resumes_when_the_setting_is_its_default(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = {**load_config(None, SMALL), "run_dir": str(run_dir)}
    older = {key: value for key, value in config.items() if key != "sync_batch_norm"}  # as written before it
    (run_dir / "config.toml").write_text(kl.config.to_toml(older))
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert previous_run(config, str(run_dir)) == {"status": "finished"}
    with pytest.raises(ValueError, match="sync_batch_norm: False -> True"):
        previous_run({**config, "sync_batch_norm": True}, str(run_dir))


# -- nan -------------------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [
        "--run-dir",
        str(run_dir),
        *sum(
            (["--set", item] for item in SMALL + ["learning_rate=1e6", "lr_schedule=constant", "checkpoint_every=1"]),
            [],
        ),
    ]
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 1 and err.count("\n") == 1
    summary = _strict_json(run_dir / "summary.json")
    assert summary["status"] == "diverged" and summary["step"] >= 1
    assert f"became nan at step {summary['step']}" in err or f"became inf at step {summary['step']}" in err
    assert "block " in err or "output loss" in err
    if summary["checkpoint_step"] is not None:
        assert f"the last good checkpoint (step {summary['checkpoint_step']}) is kept" in err
        assert summary["checkpoint_step"] < summary["step"]
    assert not (run_dir / "model.keras").exists() and not (run_dir / "inference.keras").exists()
    if summary["checkpoint_step"] is not None:
        checkpoint = json.loads((run_dir / "backup" / "checkpoint.json").read_text())
        model = kl.build_model("resnet8", method="gll", num_blocks=2, input_shape=(32, 32, 3), num_classes=10)
        model.compile(optimizer="sgd")
        model.load_weights(run_dir / "backup" / checkpoint["files"][0])
        assert all(np.isfinite(weight).all() for weight in model.get_weights())
    # Re-running the command says the same, without training again.
    code, _, again = _run(tmp_path, argv, capsys)
    assert code == 1 and again.count("\n") == 1 and "earlier run" in again


def test_summaries_are_valid_json_whatever_the_numbers(tmp_path):
    write_json(tmp_path / "s.json", {"loss": float("nan"), "rows": [float("inf"), 1.5]})
    assert _strict_json(tmp_path / "s.json") == {"loss": None, "rows": [None, 1.5]}


# -- files and data ------------------------------------------------------------------------


@pytest.fixture
def sample_copy(tmp_path):
    """A writable copy of the embedded dataset, as a TFDS data root."""
    root = tmp_path / "data"
    shutil.copytree(data.EMBEDDED_DATA_DIR / "cifar10_sample", root / "cifar10_sample")
    return root


def _shard(root, split):
    (path,) = (root / "cifar10_sample" / "1.0.0").glob(f"*-{split}.tfrecord-*")
    return path


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", "is missing"),
        ("truncated", "a truncated or damaged copy?"),
    ],
)
def test_missing_or_truncated_shards_fail_before_training(sample_copy, tmp_path, capsys, damage, message):
    shard = _shard(sample_copy, "train")
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-1000])
    argv = ["--run-dir", str(tmp_path / "run"), "--set", f"data_dir={str(sample_copy)!r}", "--set", "verbose=0"]
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err and "cifar10_sample" in err
    assert not (tmp_path / "run").exists()


def test_a_shard_damaged_inside_fails_mid_epoch_with_one_line(sample_copy, tmp_path, capsys):
    shard = _shard(sample_copy, "train")
    content = bytearray(shard.read_bytes())
    content[len(content) // 2 : len(content) // 2 + 64] = bytes(64)  # same size, bad record checksums
    shard.write_bytes(bytes(content))
    argv = [
        "--run-dir",
        str(tmp_path / "run"),
        *sum((["--set", item] for item in SMALL), []),
        "--set",
        f"data_dir={str(sample_copy)!r}",
        "--set",
        "train_examples=2000",
    ]
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 1 and err.count("\n") == 1 and "DataLossError" in err
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_run_folder_that_cannot_be_written_fails_before_training(tmp_path, capsys):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: make the folder a file instead
        blocked.rmdir()
        blocked.write_text("")
        run_dir, expected = blocked / "run", "Cannot write to the run folder"
    else:
        blocked.chmod(0o500)
        run_dir, expected = blocked, "Cannot write to the run folder"
    code, out, err = _run(tmp_path, ["--run-dir", str(run_dir), "--set", "verbose=0"], capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err


def test_a_full_disk_while_saving_leaves_no_half_written_file(tmp_path, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # Writes to the inference model's temporary name hit a full device (ENOSPC).
    os.symlink("/dev/full", partial_path(run_dir / "inference.keras"))
    argv = ["--run-dir", str(run_dir), *sum((["--set", item] for item in SMALL + ["epochs=1"]), [])]
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 1 and err.count("\n") == 1 and "No space left on device" in err
    assert not (run_dir / "inference.keras").exists()
    assert not os.path.lexists(partial_path(run_dir / "inference.keras"))
    assert (run_dir / "backup" / "checkpoint.json").exists()  # the trained state is kept


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as partial:
        with open(partial, "w") as file:
            file.write("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old" and not os.path.exists(partial_path(target))
    with atomic_path(target) as partial:
        with open(partial, "w") as file:
            file.write("new")
    assert target.read_text() == "new"


@pytest.mark.parametrize("damage", ["file", "weights_entry"])
def test_a_truncated_keras_file_gives_one_line(tmp_path, capsys, damage):
    model = kl.build_model("resnet8", method="gll", num_blocks=2, input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer="sgd")
    path = tmp_path / "model.keras"
    model.save(path)
    if damage == "file":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:  # a valid zip whose weights file is cut short
        with zipfile.ZipFile(path) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
        entries["model.weights.h5"] = entries["model.weights.h5"][:4096]
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in entries.items():
                archive.writestr(name, content)
    code = cli.main(["analyze", "--model", str(path), "--examples", "10"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is not a readable .keras file" in err


def test_a_damaged_checkpoint_gives_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--run-dir", str(run_dir), *sum((["--set", item] for item in SMALL), [])]
    config = load_config(None, SMALL)
    with pytest.raises(RuntimeError):
        train_and_evaluate(config, run_dir=str(run_dir), callbacks=[StopAtStep(5)])
    checkpoint = json.loads((run_dir / "backup" / "checkpoint.json").read_text())
    weights = run_dir / "backup" / checkpoint["files"][0]
    weights.write_bytes(weights.read_bytes()[:200])
    code, out, err = _run(tmp_path, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "could not be loaded" in err and "--overwrite" in err


# -- validation up front, messages ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["method=backlink", 'callbacks={method_schedule = {name = "alpha", values = [1.0, 2.0]}}'],
            "method_schedule alpha = 2.0 (epoch 2)",
        ),
        (
            ["method=backlink", 'callbacks={method_schedule = {name = "beta", values = [0.5]}}'],
            "method_schedule name 'beta' is not an option of method 'backlink'; its options: alpha, propagation_length",
        ),
        (["cuts=[3]", "num_blocks=4"], "cuts=[3] make 2 blocks but num_blocks=4"),
        (["verbose=7"], "verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch), got 7"),
        (["checkpoint_every=-1"], "checkpoint_every must be >= 0"),
        (["lerning_rate=0.1"], "Unknown config key 'lerning_rate'. Did you mean 'learning_rate' or"),
        (
            ["alpha=0.5"],
            "Method 'gll' has no option 'alpha'; its options: man, man_momentum, hpff, hpff_cascade_weight, "
            "hpff_patch_grid. ('alpha' is an option of backlink.)",
        ),
    ],
)
def test_config_errors_are_caught_before_training(overrides, message):
    with pytest.raises(ValueError) as error:
        load_config(None, overrides, kl.methods.method_option_names())
    assert message in str(error.value) and "\n" not in str(error.value)
    assert len(str(error.value)) < 300


def test_cuts_set_the_number_of_blocks_the_config_records():
    assert load_config(None, ["cuts=[3]"])["num_blocks"] == 2
    assert load_config(None, ["cuts=[3]", "num_blocks=2"])["num_blocks"] == 2


def test_a_prepared_dataset_without_data_dir_says_it_needs_one():
    with pytest.raises(ValueError, match="a prepared dataset needs data_dir"):
        data.dataset_info("cifar10_jpeg")


# -- saved models ----------------------------------------------------------------------------------


def test_saved_models_load_and_the_inference_model_takes_raw_images(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--run-dir", str(run_dir), *sum((["--set", item] for item in SMALL + ["epochs=1"]), [])]
    assert _run(tmp_path, argv, capsys)[0] == 0
    model = keras.models.load_model(run_dir / "model.keras")  # keras_local is imported: its classes load
    assert isinstance(model, kl.LocalModel)
    images, _ = next(iter(data.load_dataset("cifar10_sample", "test", batch_size=8, num_examples=8)))
    mean, std = data.normalization("cifar10_sample")
    raw = np.clip(np.round((images.numpy() * np.array(std) + np.array(mean)) * 255), 0, 255).astype("uint8")
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, keras
        m = keras.saving.load_model({str(run_dir / "inference.keras")!r})
        p = m.predict(np.load({str(tmp_path / "raw.npy")!r}), verbose=0)
        assert not any(name.startswith('keras_local') for name in sys.modules)
        print(json.dumps({{"output": m.layers[-1].name, "p": p.tolist()}}))
    """)
    np.save(tmp_path / "raw.npy", raw)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["output"] == "logits"
    normalized = data.normalizer("cifar10_sample")(raw, None)[0]
    np.testing.assert_allclose(result["p"], model.predict(normalized, verbose=0), atol=1e-4)

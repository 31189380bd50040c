"""Every GPU of a machine, tested on CPUs: each local process's share of the GPUs (read from the child
processes' environment), every device's memory, and the one-process data-parallel run."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import cli_train

import keras_local as kl
from keras_local import cluster
from keras_local.callbacks import MemoryMonitor


def test_split_gpus_gives_each_process_its_own_contiguous_gpus():
    assert cluster.split_gpus(2, ["0", "1", "2", "3"]) == [["0", "1"], ["2", "3"]]
    assert cluster.split_gpus(3, ["0", "1", "2", "3", "4"]) == [["0"], ["1", "2"], ["3", "4"]]
    assert cluster.split_gpus(2, []) == [[], []]  # a host without GPUs: nothing to split
    with pytest.raises(ValueError, match=r"3 processes on a host with 2 GPUs \(4, 7\): start at most one"):
        cluster.split_gpus(3, ["4", "7"])
    assert cluster.process_environment(["2", "3"]) == {
        "CUDA_VISIBLE_DEVICES": "2,3",
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    }
    assert cluster.process_environment([]) == {}


def test_visible_gpus_reads_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert cluster.visible_gpus() == ["1", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cluster.visible_gpus() == []


# Each child writes what it sees of the GPUs to a file named after its worker index.
REPORT = (
    "import json, os, sys; task = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
    "keys = ('CUDA_VISIBLE_DEVICES', 'TF_FORCE_GPU_ALLOW_GROWTH'); "
    "open(os.path.join(sys.argv[1], f'{task}.json'), 'w').write(json.dumps({k: os.environ.get(k) for k in keys}))"
)


def test_local_workers_each_see_their_own_gpus_with_memory_growth(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    program = [sys.executable, "-c", REPORT]  # starts no server
    assert cluster.run_local_workers([str(tmp_path)], 2, timeout=60, program=program, trusted_network=True) == 0
    seen = [json.loads((tmp_path / f"{index}.json").read_text()) for index in range(2)]
    assert seen == [
        {"CUDA_VISIBLE_DEVICES": "0,1", "TF_FORCE_GPU_ALLOW_GROWTH": "true"},
        {"CUDA_VISIBLE_DEVICES": "2,3", "TF_FORCE_GPU_ALLOW_GROWTH": "true"},
    ]
    with pytest.raises(ValueError, match="5 processes on a host with 4 GPUs"):
        cluster.run_local_workers([str(tmp_path)], 5, program=[sys.executable, "-c", REPORT], trusted_network=True)


def test_local_workers_on_a_host_without_gpus_keep_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    program = [sys.executable, "-c", REPORT]  # starts no server
    assert cluster.run_local_workers([str(tmp_path)], 2, timeout=60, program=program, trusted_network=True) == 0
    assert json.loads((tmp_path / "1.json").read_text())["CUDA_VISIBLE_DEVICES"] == ""


def test_memory_monitor_reports_every_device():
    model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(16,), num_classes=4, devices=["/cpu:0", "/cpu:1"])
    model.compile(optimizer="sgd")
    x, y = np.random.default_rng(0).normal(size=(64, 16)).astype("float32"), np.arange(64) % 4
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[MemoryMonitor(devices=["CPU:0", "CPU:1"])]).history
    for device in ("CPU_0", "CPU_1"):
        assert history[f"step_memory_mib_{device}"][0] > 0
    assert history["peak_memory_mib"][0] == max(
        history["peak_memory_mib_CPU_0"][0], history["peak_memory_mib_CPU_1"][0]
    )
    one = model.fit(x, y, epochs=1, verbose=0, callbacks=[MemoryMonitor()]).history
    assert "step_memory_mib" in one and not any(key.startswith("step_memory_mib_") for key in one)
    assert MemoryMonitor(device="CPU:0").devices == ["CPU:0"]
    with pytest.raises(ValueError, match="Give device or devices, not both"):
        MemoryMonitor(device="CPU:0", devices=["CPU:1"])


def test_the_profiler_reports_each_devices_peak(monkeypatch):
    from keras_local import profiling

    model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(16,), num_classes=4)
    x, y = np.random.default_rng(0).normal(size=(32, 16)).astype("float32"), np.arange(32) % 4
    peaks = profiling.peak_memory_mib(model, x, y, "sequential", per_device=True)
    assert list(peaks) == profiling.memory_devices() == ["CPU:0"] and peaks["CPU:0"] > 0
    # Two GPUs: each device's peak is measured, the largest is the model's.
    monkeypatch.setattr(profiling, "memory_devices", lambda: ["GPU:0", "GPU:1"])
    measured = {}

    def device_peaks(devices, step):
        step()
        measured["devices"] = devices
        return {"GPU:0": 2 * 2**20, "GPU:1": 5 * 2**20}

    monkeypatch.setattr(profiling, "device_peaks", device_peaks)
    assert profiling.peak_memory_mib(model, x, y, "sequential") == 5.0
    assert profiling.peak_memory_mib(model, x, y, "sequential", per_device=True) == {"GPU:0": 2.0, "GPU:1": 5.0}
    assert measured["devices"] == ["GPU:0", "GPU:1"]


@pytest.mark.large  # a whole run in a new process
def test_strategy_mirrored_trains_in_one_process(tmp_path):
    run_dir = tmp_path / "run"
    settings = ['strategy="mirrored"', "epochs=1", "train_examples=128", "num_blocks=2", "architecture=resnet8"]
    settings += ['dtype_policy="mixed_bfloat16"', "verbose=0", "batch_size=64"]
    subprocess.run(cli_train(run_dir, *settings), capture_output=True, text=True, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.blocks[0].dtype_policy.name == "mixed_bfloat16"


def test_blocks_placed_by_hand_refuse_a_strategys_scope(mirrored):
    with mirrored.scope(), pytest.raises(ValueError, match=r"devices=\['/cpu:0', '/cpu:1'\] places blocks by hand"):
        kl.build_model("mlp", "gll", num_blocks=2, input_shape=(16,), num_classes=4, devices=["/cpu:0", "/cpu:1"])

"""The GPU benchmark and the GPU smoke tests. The benchmark's small CPU run keeps it from rotting; the
`gpu` tests run only where a GPU is, each in a process of its own that sees the host's GPUs (the rest of
the suite runs on the CPU, see conftest)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import cli_train, gpu_environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK = os.path.join(ROOT, "benchmarks", "gpu.py")


def run_benchmark(tmp_path, *arguments, env=None):
    output = tmp_path / "gpu.json"
    command = [sys.executable, BENCHMARK, "--architecture", "resnet8", "--batch-size", "8", "--steps", "1"]
    command += ["--num-blocks", "2", "--output", str(output), *arguments]
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(output.read_text()), (tmp_path / "gpu.md").read_text()


@pytest.mark.large  # a benchmark run in a new process
def test_the_gpu_benchmark_runs_on_cpus(tmp_path):
    arguments = ["--policies", "float32", "--logical-cpus", "2", "--devices", "/cpu:0", "/cpu:1"]
    result, markdown = run_benchmark(tmp_path, *arguments)
    groups = [(row["group"], row["method"], row["block_order"], row["xla"]) for row in result["rows"]]
    assert groups == [
        ("one device", "bp", "together", "off"),
        ("one device", "gll", "together", "off"),
        ("one device", "gll", "sequential", "off"),
        ("one device", "bp", "together", "one program"),
        ("one device", "gll", "together", "one program"),
        ("one device", "gll", "sequential", "per block"),
        ("2 devices, data-parallel", "bp", "together", "off"),
        ("2 devices, pipelined", "gll", "pipelined", "off"),
    ]
    bp = result["rows"][0]
    assert bp["step_ratio_to_bp"] == 1.0 and bp["peak_mib"]["CPU:0"] > 0
    assert result["rows"][2]["peak_ratio_to_bp"] < 1.0  # sequential gll holds less than bp
    assert markdown.count("\n") == len(result["rows"]) + 2 and "command" in result


@pytest.mark.gpu
def test_the_gpu_benchmark_runs_on_the_gpus(tmp_path):
    result, _ = run_benchmark(tmp_path, env=gpu_environment())
    assert all("GPU:0" in row["peak_mib"] for row in result["rows"])
    assert {row["policy"] for row in result["rows"]} == {"float32", "mixed_float16"}


@pytest.mark.gpu
def test_training_on_a_gpu_with_xla_and_mixed_precision(tmp_path):
    settings = ["epochs=1", "train_examples=256", "num_blocks=2", "architecture=resnet8", "verbose=0"]
    settings += ['block_order="sequential"', 'dtype_policy="mixed_float16"', "jit_compile=true"]
    subprocess.run(cli_train(tmp_path / "run", *settings), check=True, env=gpu_environment())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.0


@pytest.mark.gpu
def test_xla_gives_the_weights_of_the_plain_step_on_a_gpu():
    code = (
        "import sys; sys.path.insert(0, 'tests');"  # conftest keeps the GPUs there, with TF32 off
        "from test_xla import assert_xla_gives_the_same_weights as check;"
        "check('backlink', {'alpha': 0.5, 'propagation_length': 1}, 'sequential'); check('gll', {}, 'pipelined')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=gpu_environment())

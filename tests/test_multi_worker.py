"""Data parallel across processes: MultiWorkerMirroredStrategy on 2 worker
processes on 127.0.0.1 gives the weights and logs of one process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import DISTRIBUTED_CASES, cli_train, single_process_env

from keras_local import cluster
from keras_local.cluster import cluster_config, is_chief, local_cluster, private_network_command, worker_path

pytestmark = pytest.mark.large  # worker processes

# What MirroredStrategy is tested with too (test_block_order.py), and a batch-norm network whose
# statistics are synchronised across the workers (without it each worker normalises its own half).
# The `--set` settings of the CLI runs here: resnet8 in two blocks, 200 test images, quiet.
SMALL_RUN = ("test_examples=200", 'architecture="resnet8"', "num_blocks=2", "verbose=0")
CASES = DISTRIBUTED_CASES + [("gll", "together", {"architecture": "resnet8", "sync_batch_norm": True})]

# Builds and trains every case under the strategy (None: this process alone) and returns
# {case index: (weights, fit logs, evaluate logs)}. Run by each worker and by the test itself.
STEP = textwrap.dedent("""
    def run_cases(cases, strategy):
        import keras, numpy as np, tensorflow as tf
        import keras_local as kl
        results = {}
        for index, (method, block_order, options) in enumerate(cases):
            steps = 3 if block_order == "pipelined" else 1
            rng = np.random.default_rng(index)
            options = dict(options)
            architecture = options.pop("architecture", "mlp")
            shape = (6,) if architecture == "mlp" else (8, 8, 3)
            network = {"architecture_options": {"hidden_units": (8, 8, 8)}} if architecture == "mlp" else {}
            x = rng.normal(size=(8 * steps, *shape)).astype("float32")
            y = rng.integers(0, 5, size=8 * steps)
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)   # global batch 8
            with (strategy or tf.distribute.get_strategy()).scope():
                keras.utils.set_random_seed(1)
                model = kl.build_model(architecture, method, num_blocks=3, input_shape=shape, num_classes=5,
                                       block_order=block_order, weight_decay=1e-3, **network, **options)
                model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
            history = model.fit(dataset, epochs=1, verbose=0).history
            evaluation = model.evaluate(dataset, verbose=0, return_dict=True)
            results[index] = ([np.asarray(w) for w in model.get_weights()],
                              {key: float(values[0]) for key, values in history.items()},
                              {key: float(value) for key, value in evaluation.items()})
        return results
""")


def _worker_script(out):
    return STEP + textwrap.dedent(f"""
        import os, pickle
        import keras_local as kl
        strategy = kl.cluster.strategy_from_environment()   # first: before any TensorFlow operation
        results = run_cases({CASES!r}, strategy)
        with open(os.path.join({str(out)!r}, "worker-" + os.environ["WORKER_INDEX"] + ".pkl"), "wb") as file:
            pickle.dump(results, file)
    """)


def test_two_worker_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    import pickle

    processes = []
    for index, tf_config in enumerate(local_cluster(2)):
        env = {**os.environ, "TF_CONFIG": tf_config, "WORKER_INDEX": str(index), "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", _worker_script(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    namespace = {}
    exec(STEP, namespace)
    single = namespace["run_cases"](CASES, None)
    workers = []
    for index in range(2):
        with open(tmp_path / f"worker-{index}.pkl", "rb") as file:
            workers.append(pickle.load(file))
    for case, (method, block_order, _) in enumerate(CASES):
        reference_weights, reference_fit, reference_evaluation = single[case]
        for worker in workers:
            weights, fit_logs, evaluation = worker[case]
            for got, expected in zip(weights, reference_weights):
                np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{method} {block_order}")
            for key in reference_fit:  # the global batch's metrics, not one worker's half
                np.testing.assert_allclose(fit_logs[key], reference_fit[key], rtol=1e-4, err_msg=f"{method} {key}")
            for key in reference_evaluation:
                np.testing.assert_allclose(
                    evaluation[key], reference_evaluation[key], rtol=1e-4, err_msg=f"{method} evaluate {key}"
                )
        # Both workers hold the same model.
        for a, b in zip(workers[0][case][0], workers[1][case][0]):
            np.testing.assert_array_equal(a, b)


def test_cluster_descriptions(monkeypatch):
    configs = [json.loads(text) for text in local_cluster(3)]
    assert [c["task"]["index"] for c in configs] == [0, 1, 2]
    assert len(set(configs[0]["cluster"]["worker"])) == 3 and all(
        address.startswith("127.0.0.1:") for address in configs[0]["cluster"]["worker"]
    )
    monkeypatch.setenv("TF_CONFIG", json.dumps(configs[1]))
    assert cluster_config()["task"]["index"] == 1 and not is_chief()
    elsewhere = worker_path("runs/x")
    assert elsewhere != "runs/x" and os.path.isdir(elsewhere)  # a worker never writes over the chief's files
    os.rmdir(elsewhere)
    monkeypatch.setenv("TF_CONFIG", json.dumps(configs[0]))
    assert is_chief() and worker_path("runs/x") == "runs/x"
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(ValueError, match="is not a cluster description"):
        cluster_config()
    with pytest.raises(ValueError, match="positive integer, got 0"):
        local_cluster(0)


def test_the_train_command_runs_on_two_local_workers_and_the_chief_writes_the_run(tmp_path):
    run_dir = tmp_path / "run"
    command = cli_train(run_dir, "epochs=1", "train_examples=256", *SMALL_RUN, flags=("--workers", "2"))
    env = single_process_env()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test accuracy" in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_blocks"] == 2
    assert {"model.keras", "inference.keras", "history.csv", "config.toml"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "backup").exists()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and "already finished" in again.stdout


def test_workers_must_be_positive_and_not_inside_a_cluster(monkeypatch, capsys):
    from keras_local.cli import main

    assert main(["train", "--workers", "0"]) == 2
    assert "--workers must be a positive integer, got 0" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", local_cluster(2)[0])
    assert main(["train", "--workers", "2"]) == 2
    assert "unset TF_CONFIG" in capsys.readouterr().err


# -- blocks on remote workers ---------------------------------------------------------------

REMOTE_PIPELINE = textwrap.dedent("""
    import json, sys
    import numpy as np, keras
    import keras_local as kl

    def run(devices):
        keras.utils.set_random_seed(1)
        model = kl.build_model("mlp", "gll", num_blocks=2, input_shape=(6,), num_classes=5, block_order="pipelined",
                               devices=devices, architecture_options={"hidden_units": (8, 8)})
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        rng = np.random.default_rng(0)
        logs = []
        for step in range(3):
            x, y = rng.normal(size=(8, 6)).astype("float32"), rng.integers(0, 5, size=8)
            logs.append(model.train_on_batch(x, y, return_dict=True))
        return model, logs

    reference, reference_logs = run(None)
    with kl.cluster.local_servers(2, threads=1) as devices:
        remote, remote_logs = run(devices)
        placed = sorted({v.value.device for v in remote.blocks[1].trainable_variables})
        weights = [np.asarray(w) for w in remote.get_weights()]
    difference = max(float(np.abs(a - np.asarray(b)).max()) for a, b in zip(weights, reference.get_weights()))
    print(json.dumps({"devices": devices, "placed": placed, "difference": difference,
                      "logs": [remote_logs, reference_logs]}))
""")


def test_a_pipelined_model_with_blocks_on_two_remote_workers_matches_one_process():
    """Block k's variables live on worker k (a TensorFlow server in its own process); 3 pipelined steps
    give the weights and logs of the same model in one process."""
    env = single_process_env()
    result = subprocess.run(
        private_network_command([sys.executable, "-c", REMOTE_PIPELINE]),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == [
        "/job:worker/replica:0/task:0/device:CPU:0",
        "/job:worker/replica:0/task:1/device:CPU:0",
    ]
    assert report["placed"] == ["/job:worker/replica:0/task:1/device:CPU:0"]
    assert report["difference"] < 1e-6
    remote_logs, reference_logs = report["logs"]
    for remote, reference in zip(remote_logs, reference_logs):
        for key in reference:
            assert remote[key] == pytest.approx(reference[key], rel=1e-5), key


def test_remote_device_names_need_a_connected_cluster():
    from keras_local.placement import canonical_device

    with pytest.raises(ValueError, match="once this process is connected to its cluster"):
        canonical_device("/job:worker/task:1/device:CPU:0")
    assert canonical_device("/job:localhost/replica:0/task:0/device:CPU:1") == "/device:CPU:1"


@pytest.mark.parametrize(
    "method", [('method="gll"',), ('method="backlink"', "alpha=0.5", "propagation_length=1"), ('method="infopro"',)]
)
def test_the_train_command_puts_the_blocks_on_local_servers_and_its_model_loads_anywhere(tmp_path, method):
    """Pipelined on two local servers (in a private network), BackLink's links and InfoPro's images included."""
    import keras

    run_dir = tmp_path / "run"
    settings = ("epochs=1", "train_examples=256", *SMALL_RUN, 'block_order="pipelined"', *method)
    command = cli_train(run_dir, *settings, flags=("--block-workers", "2"))
    env = single_process_env()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'devices = ["/job:worker/replica:0/task:0/device:CPU:0"' in (run_dir / "config.toml").read_text()
    with pytest.warns(UserWarning, match="loads on the default device"):
        model = keras.saving.load_model(run_dir / "model.keras")
    assert model.block_devices is None
    assert model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0).shape == (2, 10)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--block-workers", "0"], "--block-workers must be a positive integer"),
        (["train", "--set", 'remote_workers=["nowhere"]'], "remote_workers must list the TensorFlow servers"),
        (["train", "--set", "remote_workers=[]"], "remote_workers must list"),
        (["serve", "--cluster", "127.0.0.1:1,127.0.0.1:2", "--index", "2"], "--index 2 is not a position"),
    ],
)
def test_remote_block_options_are_checked_before_anything_starts(argv, message, capsys):
    from keras_local.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # three 2-worker runs, about 70 s on 2 cores
def test_a_killed_two_worker_run_resumes_to_the_uninterrupted_weights(tmp_path):
    """The launcher is SIGKILLed once the chief has saved a mid-epoch checkpoint (its workers die with
    it); the same command then resumes every worker from the chief's checkpoint and ends with the
    weights of an uninterrupted 2-worker run."""
    import signal
    import time

    import keras

    def command(run_dir):
        settings = ("epochs=2", "train_examples=512", "batch_size=64", "checkpoint_every=3", *SMALL_RUN)
        return cli_train(run_dir, *settings, flags=("--workers", "2"))

    env = single_process_env()
    uninterrupted = subprocess.run(command(tmp_path / "a"), capture_output=True, text=True, timeout=300, env=env)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    launcher = subprocess.Popen(command(tmp_path / "b"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = tmp_path / "b" / "backup" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while not (index.exists() and json.loads(index.read_text())["step"] >= 6):
        assert launcher.poll() is None and time.monotonic() < deadline, "no mid-run checkpoint"
        time.sleep(0.05)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    assert not (tmp_path / "b" / "summary.json").exists()
    resumed = subprocess.run(command(tmp_path / "b"), capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = keras.saving.load_model(tmp_path / "a" / "model.keras").get_weights()
    b = keras.saving.load_model(tmp_path / "b" / "model.keras").get_weights()
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)


# -- servers no other machine reaches ---------------------------------------------------

LISTEN = textwrap.dedent("""
    import json, socket, sys
    sys.path.insert(0, sys.argv[1])
    from test_multi_worker import listening_ports
    import keras_local as kl
    with kl.cluster.local_servers(2, threads=1):
        print(json.dumps({"interfaces": [name for _, name in socket.if_nameindex()],
                          "ports": sorted(listening_ports())}), flush=True)
        sys.stdin.readline()
""")


def listening_ports():
    """The TCP ports something listens on in this network namespace (/proc/net/tcp and tcp6, state 0A)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(name):
            with open(name) as table:
                for line in table.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_local_servers_listen_in_a_private_network_no_other_machine_reaches():
    """TensorFlow binds every interface of a server's port; in the private network that is loopback alone,
    and nothing listens on those ports in this machine's own network."""
    command = cluster.private_network_command([sys.executable, "-c", LISTEN, os.path.dirname(__file__)])
    env = single_process_env()
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) as child:
        report = json.loads(child.stdout.readline())
        assert report["interfaces"] == ["lo"]
        assert len(report["ports"]) >= 2  # the two servers (and this client's own)
        assert not set(report["ports"]) & listening_ports()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0


def test_local_servers_refuse_to_start_reachable_from_the_network_in_one_line():
    with pytest.raises(cluster.PrivateNetworkError, match="listen on every network interface"):
        with cluster.local_servers(2):
            pass

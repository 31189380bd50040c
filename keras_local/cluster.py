"""Training on several processes or machines, with TensorFlow's own runtime.

Data parallel: every worker process holds the whole model and trains on its
share of each global batch; `tf.distribute.MultiWorkerMirroredStrategy`
all-reduces the gradients. The cluster comes from the `TF_CONFIG`
environment variable, the same on every worker but for its `task`:

```
TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'
```

Worker 0 is the chief (or the task of type `chief`, if the cluster has one):
it writes the run folder. The others write to temporary folders, deleted at
the end, and read the chief's checkpoint to resume (so the run folder must
be on a file system every worker sees). `local_cluster(n)` makes the
`TF_CONFIG` of n workers on 127.0.0.1, which `keras-local train --workers n`
uses to try it on one machine.

Security: a TensorFlow server listens on every network interface of its
port (TensorFlow binds `0.0.0.0`; it has no option to listen on loopback
only) and runs any graph a client sends it, without authentication. So the
servers keras_local starts for one machine (`keras-local train --workers N`
and `--block-workers N`, `local_servers`, `run_local_workers`) run in a
private network: a Linux network namespace whose only interface is
loopback (`run_in_private_network`, `unshare --user --map-root-user --net`),
which no other machine can reach. Where the system refuses namespaces they
refuse to start unless told the network is trusted (`trusted_network=True`,
`--trusted-network`). Servers of a real cluster (`keras-local serve`) belong
on a private network.

Example (what each worker process runs, TF_CONFIG set):

```
strategy = kl.cluster.strategy_from_environment()   # None without TF_CONFIG
with strategy.scope():
    model = kl.build_model("resnet20", "gll", num_blocks=4)
    model.compile(optimizer="sgd")
model.fit(train)   # train: the global batches; each worker takes its share
```
"""

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import tensorflow as tf

from keras_local.validation import check_number


def cluster_config():
    """The parsed `TF_CONFIG` (None if unset or empty); a clear error if malformed."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(members):
            raise IndexError(task["index"])
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ValueError(
            f"TF_CONFIG={text!r} is not a cluster description ({type(error).__name__}: {error}); expected "
            f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", "index": i}}}}.'
        ) from None
    return config


def strategy_from_environment():
    """A `MultiWorkerMirroredStrategy` for the cluster `TF_CONFIG` describes,
    or None without one. Call it before TensorFlow runs any operation."""
    if cluster_config() is None:
        return None
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:  # collective ops must be configured before the runtime starts
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy could not start: {error} (create it before TensorFlow runs any operation)."
        ) from None


def is_multi_worker(strategy):
    """Whether `strategy`'s replicas span more than one process."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.num_replicas_in_sync > len(
        strategy.extended.worker_devices
    )


def shard_by_example(dataset):
    """`dataset` shared out among the workers example by example (batch by
    batch, here), so every worker sees as many global batches whatever the
    number of files behind it; unchanged without a cluster."""
    if cluster_config() is None:
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def is_chief():
    """Whether this process writes the run's files: no cluster, the `chief`
    task, or worker 0 of a cluster without a chief."""
    config = cluster_config()
    if config is None:
        return True
    task = config["task"]
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and int(task["index"]) == 0 and "chief" not in config["cluster"]


def worker_path(path):
    """Where this process writes what `path` names: `path` itself on the
    chief (or without a cluster), a fresh temporary folder on the other
    workers, which must still run every save (it may read variables all
    workers hold) but must not write over the chief's files. For
    `keras.callbacks.ModelCheckpoint(kl.cluster.worker_path("runs/x/ckpt"))`;
    to resume, `RunCheckpoint(worker_path(folder), restore_from=folder)`
    makes every worker read the chief's checkpoint."""
    if is_chief():
        return os.fspath(path)
    return tempfile.mkdtemp(prefix="keras-local-worker-")


# -- a private network for the servers of one machine ------------------------------


class PrivateNetworkError(RuntimeError):
    """This system cannot run processes in a private network namespace."""


_UNSHARE = ["unshare", "--user", "--map-root-user", "--net"]
# Brings the namespace's loopback interface up (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP), then runs the command.
_LAUNCHER = (
    "import fcntl, os, socket, struct, sys\n"
    "with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:\n"
    "    flags = struct.unpack('16sH14x', fcntl.ioctl(s.fileno(), 0x8913, struct.pack('16sH14x', b'lo', 0)))[1]\n"
    "    fcntl.ioctl(s.fileno(), 0x8914, struct.pack('16sH14x', b'lo', flags | 1))\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


def in_private_network():
    """Whether this process's only network interface is loopback (no other machine can reach its servers)."""
    try:
        return [name for _, name in socket.if_nameindex()] == ["lo"]
    except OSError:
        return False


def private_network_command(command):
    """`command` (a list) as run in a new private network: a Linux user and network namespace whose only
    interface is loopback, up. Raises `PrivateNetworkError` in one line where the system refuses."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        raise PrivateNetworkError(
            "cannot start TensorFlow servers in a private network on this system (it needs Linux's `unshare`)"
        )
    probe = subprocess.run([*_UNSHARE, "true"], capture_output=True, text=True)
    if probe.returncode:
        reason = (probe.stderr.strip().splitlines() or ["refused"])[-1]
        raise PrivateNetworkError(f"cannot start TensorFlow servers in a private network here ({reason})")
    return [*_UNSHARE, "--", sys.executable, "-c", _LAUNCHER, *command]


def run_in_private_network(command, **popen_options):
    """Runs `command` in a new private network (`private_network_command`); returns its exit code."""
    with subprocess.Popen(private_network_command(command), **popen_options) as process:
        try:
            return process.wait()
        except BaseException:
            process.kill()
            raise


def check_private_network(what, trusted_network):
    """Refuses in one line to start TensorFlow servers reachable from other machines, unless
    `trusted_network`."""
    if trusted_network or in_private_network():
        return
    raise PrivateNetworkError(
        f"{what} would start TensorFlow servers that listen on every network interface and run any graph "
        f"sent to them, unauthenticated; run it in a private network (keras-local does, for --workers and "
        f"--block-workers; in Python: kl.cluster.run_in_private_network) or pass trusted_network=True on a "
        f"trusted network."
    )


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _loopback_cluster(num_workers):
    """`{"worker": [...]}`: `num_workers` free addresses on 127.0.0.1."""
    check_number("num_workers", num_workers, 1, integer=True)
    return {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(num_workers)]}


def local_cluster(num_workers):
    """The `TF_CONFIG` values (JSON text, one per task) of `num_workers` workers on 127.0.0.1."""
    cluster = _loopback_cluster(num_workers)
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) for index in range(num_workers)
    ]


def visible_gpus():
    """This host's GPUs a new process would use, as CUDA indices: those `CUDA_VISIBLE_DEVICES` names where
    it is set, else every GPU TensorFlow finds (none on a CPU-only host or build)."""
    text = os.environ.get("CUDA_VISIBLE_DEVICES")
    if text is not None:
        return [item.strip() for item in text.split(",") if item.strip() and item.strip() != "-1"]
    return [str(index) for index in range(len(tf.config.list_physical_devices("GPU")))]


def split_gpus(num_processes, gpus=None):
    """The GPUs of each of `num_processes` processes on one host (default: `visible_gpus()`): contiguous
    groups, as even as possible, so that no two processes share a GPU; none each on a host without GPUs.

    Example:

    ```python
    split_gpus(2, ["0", "1", "2", "3"])     # [['0', '1'], ['2', '3']]
    ```
    """
    check_number("num_processes", num_processes, 1, integer=True)
    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        return [[] for _ in range(num_processes)]
    if num_processes > len(gpus):
        raise ValueError(
            f"{num_processes} processes on a host with {len(gpus)} GPUs ({', '.join(gpus)}): start at most one "
            f"process per GPU (a process holds its GPUs' memory), or set CUDA_VISIBLE_DEVICES."
        )
    return [
        gpus[index * len(gpus) // num_processes : (index + 1) * len(gpus) // num_processes]
        for index in range(num_processes)
    ]


def process_environment(gpus):
    """What a process given `gpus` (a `split_gpus` group) adds to its environment: only those GPUs
    visible, and memory growth on, so that it takes GPU memory as it needs it rather than all at start;
    nothing on a host without GPUs."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(gpus), "TF_FORCE_GPU_ALLOW_GROWTH": "true"}


def _die_with_parent():
    """In a child process (Linux): be killed when the parent dies, even by SIGKILL, so that no worker
    is left waiting on a collective for ever."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_CHILD_SETUP = _die_with_parent if sys.platform.startswith("linux") else None


def run_local_workers(arguments, num_workers, timeout=None, quiet_workers=True, program=None, trusted_network=False):
    """Runs `python -m keras_local.cli *arguments` (or `program + arguments`)
    as `num_workers` worker processes on 127.0.0.1 (each with its `TF_CONFIG`
    and its own share of the host's GPUs, `split_gpus`); returns the first
    non-zero exit code, else 0. When one worker fails, the others (waiting on
    it in a collective) are stopped; when this process dies, so do they.
    Workers other than the chief print nothing unless `quiet_workers` is False.
    Their servers must not be reachable from other machines: this process must
    be in a private network (`check_private_network`) unless `trusted_network`."""
    check_private_network("run_local_workers", trusted_network)
    processes = []
    shares = split_gpus(num_workers)
    program = program or [sys.executable, "-m", "keras_local.cli"]
    for index, tf_config in enumerate(local_cluster(num_workers)):
        quiet = quiet_workers and index > 0
        processes.append(
            subprocess.Popen(
                [*program, *arguments],
                env={**os.environ, "TF_CONFIG": tf_config, **process_environment(shares[index])},
                stdout=subprocess.DEVNULL if quiet else None,
                stderr=subprocess.DEVNULL if quiet else None,
                preexec_fn=_CHILD_SETUP,
            )
        )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            codes = [process.poll() for process in processes]
            failed = [code for code in codes if code not in (None, 0)]
            if failed:
                return failed[0]
            if all(code == 0 for code in codes):
                return 0
            if deadline is not None and time.monotonic() > deadline:
                return 124
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


# -- blocks on remote workers ----------------------------------------------------


def serve(cluster, index, threads=None):
    """Runs the TensorFlow server of worker `index` of `cluster` (`{"worker":
    ["host:port", ...]}`) until the process is stopped: what each machine of a
    remote-blocks run executes (`keras-local serve`). `threads` bounds its
    intra-op threads."""
    config = None
    if threads:
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    server = tf.distribute.Server(
        tf.train.ClusterSpec(cluster), job_name="worker", task_index=index, protocol="grpc", config=config, start=True
    )
    server.join()


def connect(cluster):
    """Connects this process to the TensorFlow servers of `cluster`; returns
    the device of each worker, its first GPU where it has one, else its CPU
    (`/job:worker/replica:0/task:i/device:GPU:0`), names `devices=` then
    accepts: a block's variables, its optimizer's slots and its computation
    live there, and only the cut activations (and BackLink's link errors)
    cross the network."""
    tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(cluster))
    present = {device.name for device in tf.config.list_logical_devices()}
    devices = []
    for index in range(len(cluster["worker"])):
        gpu = f"/job:worker/replica:0/task:{index}/device:GPU:0"
        devices.append(gpu if gpu in present else f"/job:worker/replica:0/task:{index}/device:CPU:0")
    return devices


@contextlib.contextmanager
def local_servers(num_workers, threads=None, timeout=60, trusted_network=False):
    """`num_workers` TensorFlow servers on 127.0.0.1, one process each, with
    this process connected to them (each with its own share of this host's
    GPUs, `split_gpus`); yields their devices (`connect`) and stops the
    servers on exit. This process must be in a private network
    (`run_in_private_network`, `check_private_network`) unless `trusted_network`.

    Example:

    ```python
    # in a script that kl.cluster.run_in_private_network([sys.executable, "script.py"]) runs
    with kl.cluster.local_servers(2) as devices:
        model = kl.build_model("resnet8", "gll", num_blocks=2, block_order="pipelined", devices=devices)
    ```
    """
    check_private_network("local_servers", trusted_network)
    cluster = _loopback_cluster(num_workers)
    shares = split_gpus(num_workers)
    code = (
        "import json, sys; from keras_local.cluster import serve; serve(json.loads(sys.argv[1]), int(sys.argv[2]), "
        "int(sys.argv[3]) or None)"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(cluster), str(index), str(threads or 0)],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **process_environment(shares[index])},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_CHILD_SETUP,
        )
        for index in range(num_workers)
    ]
    try:
        for address in cluster["worker"]:  # wait until every server listens
            host, port = address.rsplit(":", 1)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                        raise RuntimeError(f"The TensorFlow server at {address} did not start.") from None
                    time.sleep(0.2)
        yield connect(cluster)
    finally:
        for process in processes:
            process.kill()
            process.wait()

import os
import shutil
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CPU allocator keeps the statistics get_memory_info reads only in its BFC mode.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
# The tests run on the CPU on a GPU host too, and so do the processes they start: the gradient
# references hold to 1e-6 in float32 (a GPU's TF32 convolutions do not), and no pytest worker reserves
# a GPU's memory. The `gpu` tests start their own processes with the host's GPUs (`gpu_environment`),
# which import this file too: there it keeps the GPUs and turns TF32 off.
ON_GPU = os.environ.get("KERAS_LOCAL_TEST_ON_GPU") == "1"
HOST_CUDA_VISIBLE_DEVICES = os.environ.get("CUDA_VISIBLE_DEVICES")
if not ON_GPU:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import tensorflow as tf  # noqa: E402

if ON_GPU:
    tf.config.experimental.enable_tensor_float_32_execution(False)

# Two logical CPUs (before TensorFlow starts) for device placement and MirroredStrategy tests.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_local.block import Block  # noqa: E402
from keras_local.heads import LinearHead  # noqa: E402
from keras_local.layers import ConvBNReLU, ResidualUnit  # noqa: E402
from keras_local.methods import get_method  # noqa: E402
from keras_local.model import LocalModel  # noqa: E402

# (method, block order, options) that a data-parallel strategy must train exactly as one replica
# does: MirroredStrategy (test_block_order.py) and MultiWorkerMirroredStrategy (test_multi_worker.py).
DISTRIBUTED_CASES = [
    ("gll", "together", {}),
    ("gll", "sequential", {}),
    ("gll", "pipelined", {}),
    ("bp", "together", {}),
    ("backlink", "together", {"alpha": 0.5, "propagation_length": 1}),
    ("bwbpf", "pipelined", {}),
    ("associated", "together", {}),
    ("gll", "together", {"man": True}),
    ("gll", "sequential", {"hpff": True, "hpff_patch_grid": 1}),
]


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def host_has_gpu():
    """Whether this host has an NVIDIA GPU the `gpu` tests can use (`nvidia-smi -L` lists one)."""
    if HOST_CUDA_VISIBLE_DEVICES in ("", "-1") or shutil.which("nvidia-smi") is None:
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listed.returncode == 0 and "GPU" in listed.stdout


def gpu_environment():
    """This environment for a `gpu` test's child process: the host's GPUs visible again."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_LOCAL_TEST_ON_GPU": "1"}
    if HOST_CUDA_VISIBLE_DEVICES is None:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        env["CUDA_VISIBLE_DEVICES"] = HOST_CUDA_VISIBLE_DEVICES
    return env


def pytest_collection_modifyitems(config, items):
    skips = []
    if not config.getoption("--run-slow"):
        skips.append(("slow", pytest.mark.skip(reason="slow: pass --run-slow")))
    if any("gpu" in item.keywords for item in items) and not host_has_gpu():
        skips.append(("gpu", pytest.mark.skip(reason="gpu: this host has no GPU")))
    for item in items:
        for keyword, skip in skips:
            if keyword in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for every test of a process: two MirroredStrategy
    objects in one process reuse the same collective keys, and the second one's all-reduces can be
    paired with the first one's cached shapes."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(autouse=True)
def seed_and_policy():
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_resnet(method="gll", weight_decay=0.0, num_classes=5, input_shape=(8, 8, 3), **method_options):
    """A three-block ResNet small enough for exact gradient checks
    (block 0: stem + res1, block 1: res2, block 2: res3), plus the output
    block for methods that have one (bwbpf)."""
    rule = get_method(method, **method_options)
    separate = rule.separate_output_block

    def head(index):
        if index == 2 and not separate:
            return LinearHead(num_classes, name="output_head")
        return LinearHead(num_classes, name=f"head{index}") if rule.aux_heads else None

    blocks = [
        Block(
            [ConvBNReLU(4, name="stem"), ResidualUnit(4, name="res1")],
            head=head(0),
            weight_decay=weight_decay,
            name="block_0",
        ),
        Block([ResidualUnit(8, strides=2, name="res2")], head=head(1), weight_decay=weight_decay, name="block_1"),
        Block([ResidualUnit(8, name="res3")], head=head(2), weight_decay=weight_decay, name="block_2"),
    ]
    if separate:
        blocks.append(
            Block([], head=LinearHead(num_classes, name="output_head"), weight_decay=weight_decay, name="output_block")
        )
    model = LocalModel(blocks, method=rule)
    model.build((None, *input_shape))
    return model


class StopAtEpoch(keras.callbacks.Callback):
    """Interrupts `fit` at the start of `epoch` (a crash, for resume tests)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def tiny_batches(count, batch_size=6, num_classes=5, input_shape=(8, 8, 3), seed=0):
    """`count` random (x, y) batches: x standard normal, y uniform over the classes, from one seed."""
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(size=(batch_size, *input_shape)).astype("float32"), rng.integers(0, num_classes, size=batch_size))
        for _ in range(count)
    ]


def tiny_batch(batch_size=6, num_classes=5, input_shape=(8, 8, 3), seed=0):
    """One random (x, y) batch (`tiny_batches`' first)."""
    return tiny_batches(1, batch_size, num_classes, input_shape, seed)[0]


LEARNING_RATE = 0.1
ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def applied_gradients(model, x, y):
    """Runs one train_step with plain SGD (lr = LEARNING_RATE) and recovers
    the gradient each block applied, g = −Δθ / lr."""
    before = [[v.numpy().copy() for v in block.trainable_variables] for block in model.blocks]
    model.train_step((tf.constant(x), tf.constant(y)))
    return [
        [(b - v.numpy()) / LEARNING_RATE for b, v in zip(values, block.trainable_variables)]
        for values, block in zip(before, model.blocks)
    ]


def local_loss_gradients(model, x, y, weight_decay=0.0):
    """Hand-written reference of greedy local learning: for each block k, the gradient of its own loss
    (its head's cross-entropy plus ½·weight_decay·‖θ_k‖²) w.r.t. its own variables, from the un-stopped
    output of the blocks before it; and the summed gradient the later blocks' losses would send it
    without the cut (None for the last block)."""
    reference, leaked = [], []
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for block in model.blocks:
            h = block(h, training=True)
            loss = ce(y, block.head(h, training=True))
            decay = 0.5 * weight_decay * sum(tf.reduce_sum(v**2) for v in block.trainable_variables)
            losses.append(loss + decay)
    for k, block in enumerate(model.blocks):
        reference.append([g.numpy() for g in tape.gradient(losses[k], block.trainable_variables)])
        later = [tape.gradient(loss, block.trainable_variables) for loss in losses[k + 1 :]]
        leaked.append([sum(0.0 if g is None else g.numpy() for g in grads) for grads in zip(*later)] if later else None)
    return reference, leaked


def grads(tape, target, variables):
    """`target`'s gradients w.r.t. `variables` as arrays (zeros where it does not reach)."""
    return [np.zeros(v.shape) if g is None else g.numpy() for g, v in zip(tape.gradient(target, variables), variables)]


def l2_penalty(weight_decay, variables):
    """½·weight_decay·‖θ‖², the coupled weight decay a block adds to its loss."""
    return 0.5 * weight_decay * sum(tf.reduce_sum(v**2) for v in variables)


def compiled(model):
    """`model` compiled with plain SGD at LEARNING_RATE (what `applied_gradients` divides by)."""
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    return model


def resnet8_in_three_blocks(method, input_shape, num_classes, **options):
    """The registered resnet8 (stem + 3 residual units) in K = 3 blocks, [stem, unit1] [unit2 (stride 2)]
    [unit3], with each method's own heads, `compiled`: the network of the 2024 rules' gradient tests."""
    from keras_local.builder import build_model

    model = build_model("resnet8", method, num_blocks=3, input_shape=input_shape, num_classes=num_classes, **options)
    return compiled(model)


def assert_close(actual, expected, atol=2e-5):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a, e, rtol=1e-3, atol=atol)


def cli_train(run_dir, *settings, flags=()):
    """The `keras-local train` command line for a subprocess: `flags` (e.g.
    `("--workers", "2")`), the run folder, then one `--set` per setting."""
    command = [sys.executable, "-m", "keras_local.cli", "train", *flags, "--run-dir", str(run_dir)]
    return command + set_arguments(*settings)


def set_arguments(*settings):
    """The CLI's `--set` arguments, one per setting: `set_arguments("epochs=1")` is `["--set", "epochs=1"]`."""
    return [item for setting in settings for item in ("--set", setting)]


def single_process_env():
    """This environment for a subprocess that starts its own cluster: no inherited TF_CONFIG, quiet TF."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    return env

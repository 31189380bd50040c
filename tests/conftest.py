import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_local.block import Block  # noqa: E402
from keras_local.heads import LinearHead  # noqa: E402
from keras_local.layers import ConvBNReLU, ResidualUnit  # noqa: E402
from keras_local.model import LocalModel  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seed_and_policy():
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_resnet(method="gll", weight_decay=0.0, num_classes=5, input_shape=(8, 8, 3)):
    """A three-block ResNet small enough for exact gradient checks."""
    blocks = [
        Block([ConvBNReLU(4, name="stem"), ResidualUnit(4, name="res1")],
              head=LinearHead(num_classes, name="head0") if method != "bp" else None,
              weight_decay=weight_decay, name="block_0"),
        Block([ResidualUnit(8, strides=2, name="res2")],
              head=LinearHead(num_classes, name="head1") if method != "bp" else None,
              weight_decay=weight_decay, name="block_1"),
        Block([ResidualUnit(8, name="res3")], head=LinearHead(num_classes, name="output_head"),
              weight_decay=weight_decay, name="block_2"),
    ]
    model = LocalModel(blocks, method=method)
    model.build((None, *input_shape))
    return model


def tiny_batch(batch_size=6, num_classes=5, input_shape=(8, 8, 3), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size)
    return x, y

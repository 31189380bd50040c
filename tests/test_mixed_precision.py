"""Mixed precision (`dtype_policy`): both policies in every block order and under MirroredStrategy, the
loss scale of each block through `.keras` files and checkpoints, a user's LossScaleOptimizer, and a link
error that overflows float16."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, tiny_batches
from test_xla import CUT_CASES, END_TO_END_CASES, case_id  # noqa: E402
from test_xla import build as build_method_model  # noqa: E402

import keras_local as kl
from keras_local.checkpoint import RunCheckpoint
from keras_local.config import load_config

POLICIES = ["mixed_float16", "mixed_bfloat16"]
CASES = [
    ("gll", {}, "together"),
    ("gll", {}, "sequential"),
    ("gll", {}, "pipelined"),
    ("backlink", {"alpha": 0.5, "propagation_length": 1}, "together"),
    ("backlink", {"alpha": 0.5, "propagation_length": 1}, "sequential"),
    ("gll", {"hpff": True, "hpff_patch_grid": 1}, "sequential"),
]


def build(policy, method="gll", block_order="together", sync_batch_norm=False, **options):
    keras.utils.set_random_seed(0)
    return kl.build_model(
        "resnet8",
        method,
        num_blocks=3,
        input_shape=(8, 8, 3),
        num_classes=5,
        block_order=block_order,
        dtype_policy=policy,
        sync_batch_norm=sync_batch_norm,
        **options,
    )


def first_update(model, optimizer=None, steps=1, **compile_options):
    """The change of every trainable variable over `steps` steps of `model` (plain SGD)."""
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LEARNING_RATE), **compile_options)
    before = [v.numpy().copy() for v in model.trainable_variables]
    for x, y in tiny_batches(steps, batch_size=6):
        model.train_on_batch(x, y)
    return [v.numpy() - b for v, b in zip(model.trainable_variables, before)]


def norm(arrays):
    return float(np.linalg.norm(np.concatenate([x.ravel() for x in arrays])))


def cosine(first, second):
    a, b = np.concatenate([x.ravel() for x in first]), np.concatenate([x.ravel() for x in second])
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_build_model_computes_in_the_policy_and_leaves_the_global_one_alone():
    model = build("mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert {block.dtype_policy.name for block in model.blocks} == {"mixed_bfloat16"}
    assert all(v.dtype == "float32" for v in model.weights)
    x, _ = tiny_batches(1)[0]
    assert model.blocks[0](x).dtype == "bfloat16"
    assert model(x).dtype == "float32"  # float32 predictions
    with pytest.raises(ValueError, match=r"Unknown dtype_policy 'float8'\. Allowed: float32, mixed_float16"):
        build("float8")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("method, options, block_order", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_mixed_policies_train_every_block_order_like_float32(policy, method, options, block_order):
    reference = first_update(build("float32", method, block_order, **options), steps=3)
    model = build(policy, method, block_order, **options)
    update = first_update(model, steps=3)
    assert all(np.all(np.isfinite(u)) for u in update)
    loss_scaled = [type(block.optimizer).__name__ == "LossScaleOptimizer" for block in model.blocks]
    assert loss_scaled == [policy == "mixed_float16"] * len(model.blocks)
    # The same steps to the precision of the policy: a missing loss scale or a float16 link would not be.
    assert cosine(update, reference) > 0.95
    logs = model.test_on_batch(*tiny_batches(1)[0], return_dict=True)
    assert np.isfinite(logs["loss"])


FLOAT32_UPDATES = {}


@pytest.mark.large
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("block_order", ["together", "sequential", "pipelined"])
@pytest.mark.parametrize(
    "method, options", CUT_CASES + END_TO_END_CASES, ids=[case_id(*c) for c in CUT_CASES + END_TO_END_CASES]
)
def test_mixed_policies_train_every_method(policy, method, options, block_order):
    if block_order != "together" and (method, options) in END_TO_END_CASES:
        pytest.skip("an end-to-end method trains with block_order='together' only")
    steps = 2 if block_order == "pipelined" else 1  # the pipeline's block 1 trains from its second step
    key = (case_id(method, options), block_order)
    if key not in FLOAT32_UPDATES:  # one float32 reference for both policies
        model = build_method_model(method, options, block_order, dtype_policy="float32")
        FLOAT32_UPDATES[key] = first_update(model, steps=steps)
    reference = FLOAT32_UPDATES[key]
    # A loss scale float16 holds from the first step (Keras' 2^15 overflows some heads' gradients, and the
    # dynamic scale would skip that step before it halves).
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=2.0**8)
    update = first_update(
        build_method_model(method, options, block_order, dtype_policy=policy), optimizer=optimizer, steps=steps
    )
    assert all(np.all(np.isfinite(u)) for u in update)
    # The step of float32 to the policy's precision (bfloat16 keeps 8 bits: DGL's deep heads drift the most);
    # an unscaled loss or a float16 link error would not be.
    assert cosine(update, reference) > 0.75
    assert 0.5 < norm(update) / norm(reference) < 2.0


@pytest.mark.large  # two replicas, eight models
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("block_order", ["together", "sequential"])
def test_mixed_policies_train_under_mirrored_strategy(mirrored, policy, block_order):
    reference = first_update(build("float32", block_order=block_order), steps=2)
    with mirrored.scope():
        model = build(policy, block_order=block_order, sync_batch_norm=True)  # two replicas as one batch
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    before = [v.numpy().copy() for v in model.trainable_variables]
    x, y = np.concatenate([b[0] for b in tiny_batches(2)]), np.concatenate([b[1] for b in tiny_batches(2)])
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(6), epochs=1, verbose=0)
    update = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
    assert cosine(update, reference) > 0.95


def loss_scales(model):
    return [float(block.optimizer.dynamic_scale.numpy()) for block in model.blocks]


def test_a_users_loss_scale_optimizer_keeps_its_settings_through_keras_files_and_checkpoints(tmp_path):
    given = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(LEARNING_RATE), initial_scale=2.0**10, dynamic_growth_steps=2
    )
    model = build("mixed_float16")
    first_update(model, optimizer=given, steps=3)
    assert all(b.optimizer.initial_scale == 2.0**10 and b.optimizer.dynamic_growth_steps == 2 for b in model.blocks)
    assert loss_scales(model) == [2.0**11] * 3  # grown once, after 2 finite steps
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert [b.optimizer.dynamic_growth_steps for b in loaded.blocks] == [2] * 3
    assert loss_scales(loaded) == loss_scales(model)
    checkpoint = RunCheckpoint(tmp_path / "backup", every=1)
    checkpoint.set_model(model)
    checkpoint.save(0, 3, 3)
    fresh = build("mixed_float16")
    fresh.compile(optimizer=given)
    fresh.optimizer.build()
    checkpoint.restore(fresh)
    assert loss_scales(fresh) == loss_scales(model)
    assert [int(b.optimizer.iterations.numpy()) for b in fresh.blocks] == [3] * 3


def test_a_link_error_that_overflows_float16_is_dropped_not_frozen_in():
    model = build("mixed_float16", "backlink", alpha=0.5, propagation_length=1)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    model.build((None, 8, 8, 3))
    model.optimizer.build()
    # Block 1's error overflows float16 at a loss scale far past float16's range.
    model.blocks[1].optimizer.dynamic_scale.assign(2.0**40)
    first = [v.numpy().copy() for v in model.blocks[0].trainable_variables]
    logs = model.train_on_batch(*tiny_batches(1)[0], return_dict=True)
    assert logs["dropped_links"] == 1.0
    assert int(model.blocks[0].optimizer.iterations.numpy()) == 1  # block 0 updated, from its own loss
    assert not np.allclose(model.blocks[0].trainable_variables[0].numpy(), first[0])
    assert all(np.all(np.isfinite(v.numpy())) for v in model.trainable_variables)
    assert "dropped_links" not in build("float32", "backlink", alpha=0.5, propagation_length=1).metrics_names


def test_the_config_key_and_cli_setting_choose_the_policy():
    config = load_config(overrides=['dtype_policy="mixed_bfloat16"', "jit_compile=false", 'strategy="mirrored"'])
    assert (config["dtype_policy"], config["jit_compile"], config["strategy"]) == ("mixed_bfloat16", False, "mirrored")
    assert load_config(overrides=["jit_compile=true"])["jit_compile"] is True
    assert load_config()["jit_compile"] == "auto"
    for setting, message in [
        ('dtype_policy="float16x"', "Unknown dtype_policy 'float16x'"),
        ("jit_compile=1", "Unknown jit_compile 1. Allowed: true, false, 'auto'"),
        ('strategy="parameter_server"', "Unknown strategy 'parameter_server'"),
        ('strategy="mirrored" jit_compile=true', 'jit_compile = true cannot be used with strategy = "mirrored"'),
    ]:
        with pytest.raises(ValueError, match=message):
            load_config(overrides=setting.split(" "))

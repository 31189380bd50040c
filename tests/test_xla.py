"""XLA (`compile(jit_compile=True)`, on CPU here): every method and block order gives the weights it gives
without XLA; sequential, pipelined and several devices compile each block as its own program."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, assert_close, tiny_batches

import keras_local as kl
from keras_local.block import Block
from keras_local.heads import LinearHead

# Every rule that cuts gradients, with the options that exercise its own step (a backward link, MAN's
# moving average, HPFF's cascade, the label path), and the end-to-end ones (one program, "together" only).
CUT_CASES = [
    ("gll", {}),
    ("bwbpf", {}),
    ("backlink", {"alpha": 0.5, "propagation_length": 1}),
    ("dgl", {}),
    ("predsim", {}),
    ("infopro", {}),
    ("associated", {}),
    ("auglocal", {}),
    ("gll", {"man": True}),
    ("gll", {"hpff": True, "hpff_patch_grid": 1}),
]
END_TO_END_CASES = [("bp", {}), ("bwbpf", {"deep_supervision": True})]


def build(method, options, block_order, devices=None, dtype_policy=None):
    """The method's model of these tests: resnet8 in three blocks (Associated Learning: its MLP)."""
    keras.utils.set_random_seed(0)
    architecture, kwargs = ("mlp", {}) if method == "associated" else ("resnet8", {"num_blocks": 3})
    return kl.build_model(
        architecture,
        method,
        input_shape=(8, 8, 3),
        num_classes=5,
        block_order=block_order,
        devices=devices,
        dtype_policy=dtype_policy,
        **kwargs,
        **options,
    )


def trained_weights(method, options, block_order, jit_compile, devices=None, steps=3):
    model = build(method, options, block_order, devices)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), jit_compile=jit_compile)
    for x, y in tiny_batches(steps, batch_size=6):
        model.train_on_batch(x, y)
    model.evaluate(*tiny_batches(1, batch_size=6, seed=1)[0], verbose=0)
    return model, [v.numpy() for v in model.weights]


def case_id(method, options):
    return "+".join([method, *(key for key, value in options.items() if value is True)])


def assert_xla_gives_the_same_weights(method, options, block_order, devices=None, atol=2e-5):
    plain, expected = trained_weights(method, options, block_order, False, devices)
    compiled, actual = trained_weights(method, options, block_order, True, devices)
    assert compiled.jit_compile is True and plain.jit_compile is False
    assert compiled.compiles_blocks == (block_order != "together" or len(set(devices or [])) > 1)
    assert_close(actual, expected, atol=atol)
    assert not np.allclose(actual[0], build(method, options, block_order).weights[0].numpy())  # it trained


@pytest.mark.parametrize(
    "method, options, block_order",
    [
        ("gll", {}, "together"),
        ("gll", {}, "sequential"),
        ("gll", {}, "pipelined"),
        ("backlink", {"alpha": 0.5, "propagation_length": 1}, "sequential"),
    ],
)
def test_xla_gives_the_weights_of_the_plain_step(method, options, block_order):
    assert_xla_gives_the_same_weights(method, options, block_order)


@pytest.mark.large
@pytest.mark.parametrize("block_order", ["together", "sequential", "pipelined"])
@pytest.mark.parametrize("method, options", CUT_CASES, ids=[case_id(*case) for case in CUT_CASES])
def test_xla_gives_the_weights_of_the_plain_step_for_every_method(method, options, block_order):
    # DGL's heads (three 1x1 convolutions with batch norm over 2x2 maps of 6 examples, three dense layers)
    # amplify float32 reordering the most: one weight in a thousand moves by 1e-4 in three momentum steps.
    # A wrong gradient moves them by 1e-2.
    assert_xla_gives_the_same_weights(method, options, block_order, atol=5e-4 if method == "dgl" else 2e-5)


@pytest.mark.parametrize("method, options", END_TO_END_CASES, ids=[case_id(*case) for case in END_TO_END_CASES])
def test_end_to_end_methods_compile_as_one_program(method, options):
    assert_xla_gives_the_same_weights(method, options, "together")


@pytest.mark.parametrize("method, options", [("gll", {}), ("gll", {"man": True})], ids=["gll", "gll+man"])
def test_blocks_on_two_devices_are_two_xla_programs(method, options):
    devices = ["/cpu:0", "/cpu:1"]
    assert_xla_gives_the_same_weights(method, options, "pipelined", devices)
    model, _ = trained_weights(method, options, "sequential", True, devices)
    assert all("CPU:1" in v.value.device for v in model.blocks[-1].optimizer.variables)


def test_an_end_to_end_method_on_two_devices_refuses_xla_in_one_line():
    model = build("bp", {}, "together", devices=["/cpu:0", "/cpu:1"])
    with pytest.raises(ValueError, match="jit_compile=True cannot be used with method 'bp' and blocks on several"):
        model.compile(optimizer="sgd", jit_compile=True)
    model.compile(optimizer="sgd", jit_compile="auto")
    assert model.jit_compile is False


def block_programs(model, block_order):
    """The XLA programs one traced training step of `model` calls, and whether the step itself is XLA."""
    model.compile(optimizer="sgd", jit_compile=True)
    x, y = tiny_batches(1, batch_size=6)[0]
    model.train_on_batch(x, y)
    return model.compiles_blocks, {key[0]: key for key in model.__dict__.get("_block_programs", {})}


def test_sequential_and_pipelined_compile_block_by_block_and_together_as_one_program():
    for block_order in ("sequential", "pipelined"):
        compiles_blocks, programs = block_programs(build("gll", {}, block_order), block_order)
        assert compiles_blocks and "train" in programs
        graph = build("gll", {}, block_order)
        graph.compile(optimizer="sgd", jit_compile=True)
        assert graph.jit_compile is True  # what the user asked for, while Keras' step is not one program
    compiles_blocks, programs = block_programs(build("gll", {}, "together"), "together")
    assert not compiles_blocks and not programs


def tail_block():
    """A block whose tail (its last unit) has batch norm and dropout: state a second run must not change."""
    keras.utils.set_random_seed(3)
    units = [
        keras.layers.Dense(6, name="prefix"),
        keras.Sequential(
            [keras.layers.Dense(6), keras.layers.BatchNormalization(), keras.layers.Dropout(0.5)], name="tail"
        ),
    ]
    block = Block(units, head=LinearHead(5, name="head"), name="block")
    block.build((None, 4))
    block.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=keras.losses.SparseCategoricalCrossentropy(True))
    return block


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_tail_run_again_gives_the_gradients_and_state_of_the_kept_tape(jit_compile):
    x = tf.constant(np.random.default_rng(0).normal(size=(8, 4)).astype("float32"))
    y = tf.constant(np.arange(8) % 5)
    error = tf.constant(np.random.default_rng(1).normal(size=(8, 6)).astype("float32"))
    results = []
    for keep_tail_tape in (True, False):
        block = tail_block()

        def linked_step(x, y, error, block=block, keep_tail_tape=keep_tail_tape):
            step = block.compute_local_gradients(x, y, linked_units=1, keep_tail_tape=keep_tail_tape)
            gradients = block.finish_link(step, error, 1)
            return gradients, [tf.identity(v) for v in block.non_trainable_variables]

        run = tf.function(linked_step, jit_compile=True) if jit_compile else linked_step  # one XLA program
        gradients, state = run(x, y, error)
        results.append(([g.numpy() for g in gradients], [s.numpy() for s in state]))
    (kept, kept_state), (again, again_state) = results
    assert_close(again, kept, atol=1e-5)
    assert_close(again_state, kept_state, atol=1e-6)  # moving statistics updated once, same dropout seed
    assert not np.allclose(kept[-3], 0)  # the tail's kernel learned from the error


def test_a_distribution_strategy_refuses_xla_in_one_line(mirrored):
    with mirrored.scope():
        model = build("gll", {}, "sequential")
        with pytest.raises(ValueError, match="jit_compile=True cannot be used under a distribution strategy"):
            model.compile(optimizer="sgd", jit_compile=True)
        model.compile(optimizer="sgd", jit_compile="auto")
    assert model.jit_compile is False and not model.compiles_blocks

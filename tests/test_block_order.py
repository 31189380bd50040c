"""Block orders (together / sequential / pipelined), device placement and MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import DISTRIBUTED_CASES, LEARNING_RATE, assert_close, ce, tiny_batch, tiny_batches

import keras_local as kl
from keras_local.placement import canonical_device, place_blocks

NUM_CLASSES = 5


def mlp(method="gll", num_blocks=3, **kwargs):
    """Three dense units, no batch norm: exact under any batch split."""
    keras.utils.set_random_seed(1)
    return kl.build_model(
        "mlp",
        method,
        num_blocks=num_blocks,
        input_shape=(6,),
        num_classes=NUM_CLASSES,
        architecture_options={"hidden_units": (8, 8, 8)},
        **kwargs,
    )


def batches(count, batch_size=8, seed=0):
    return tiny_batches(count, batch_size, NUM_CLASSES, (6,), seed)


def train(model, data, optimizer=None, **compile_options):
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LEARNING_RATE), **compile_options)
    for x, y in data:
        model.train_on_batch(x, y)
    return model


def weights(model):
    return [v.numpy() for v in model.trainable_variables]


# -- sequential ----------------------------------------------------------------


@pytest.mark.parametrize(
    "method, options",
    [
        ("gll", {}),
        ("backlink", {"alpha": 0.5, "propagation_length": 1}),
        ("bwbpf", {}),
    ],
)
def test_sequential_gives_the_weights_of_together(method, options):
    from conftest import tiny_resnet

    data = [tiny_batch(seed=seed) for seed in range(3)]
    results = []
    for block_order in ("together", "sequential"):
        keras.utils.set_random_seed(0)
        model = tiny_resnet(method, weight_decay=1e-3, **options)
        model.block_order = block_order
        train(model, data, keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        results.append(weights(model))
    assert_close(results[1], results[0], atol=1e-6)


def waits(model):
    """The ops of a traced step that wait for a previous block's gradients."""
    model.compile(optimizer="sgd")
    graph = (
        tf.function(model.train_step)
        .get_concrete_function((tf.TensorSpec((None, 6)), tf.TensorSpec((None,), tf.int64)))
        .graph
    )
    return [op for op in graph.get_operations() if op.name.startswith("after_previous_block")]


def test_sequential_orders_each_block_after_the_previous_gradients():
    sequential = waits(mlp(block_order="sequential"))
    assert len(sequential) == 2  # before blocks 1 and 2
    assert all(op.control_inputs for op in sequential)
    assert all(len(op.control_inputs) >= 4 for op in sequential)  # the unit's and head's gradients before
    assert not waits(mlp())


# -- pipelined -----------------------------------------------------------------


def pipelined_reference(model, data):
    """The delayed updates written out: at step t block k trains (plain SGD)
    on what block k−1 produced at step t−1, with those examples' labels;
    block k starts at step k."""
    held = {0: None}
    for x, y in data:
        held[0] = (tf.constant(x), tf.constant(y))
        produced = {}
        for index, block in enumerate(model.blocks):
            if held.get(index) is None:
                continue
            inputs, labels = held[index]
            with tf.GradientTape() as tape:
                features = block(inputs, training=True)
                loss = ce(labels, block.head(features, training=True))
            gradients = tape.gradient(loss, block.trainable_variables)
            for variable, gradient in zip(block.trainable_variables, gradients):
                variable.assign_sub(LEARNING_RATE * gradient)
            produced[index + 1] = (features, labels)
        held.update(produced)
    return weights(model)


def test_pipelined_matches_the_delayed_updates_for_three_steps():
    data = batches(3)
    reference = pipelined_reference(mlp(), data)
    model = train(mlp(block_order="pipelined"), data)
    assert_close(weights(model), reference, atol=1e-6)
    assert [int(block.optimizer.iterations.numpy()) for block in model.blocks] == [3, 2, 1]
    together = train(mlp(), data)  # the test tells the block orders apart
    assert not np.allclose(weights(together)[-1], reference[-1])


@pytest.mark.parametrize("method, options", [("bwbpf", {}), ("associated", {}), ("backlink", {"alpha": 1.0})])
def test_pipelined_runs_every_cut_method_with_its_warm_up(method, options):
    data = batches(4)
    model = mlp(method, block_order="pipelined", **options)
    num_blocks = len(model.blocks)
    train(model, data[:1])
    if method == "associated":
        assert int(model.extra_blocks[-1].optimizer.iterations.numpy()) == 1  # label path from step 0
    train_more = [model.train_on_batch(x, y, return_dict=True) for x, y in data[1:]]
    steps = [int(block.optimizer.iterations.numpy()) for block in model.blocks]
    assert steps == [max(0, 4 - index) for index in range(num_blocks)]
    assert np.isfinite(train_more[-1]["loss"])
    history = model.fit(tf.data.Dataset.from_tensor_slices(data[0]).batch(3), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])  # partial batches flow through the buffers


def test_pipelined_refills_after_a_new_compile():
    model = train(mlp(block_order="pipelined"), batches(3))
    train(model, batches(1))  # compile again: a new warm-up, only block 0 trains
    assert [int(block.optimizer.iterations.numpy()) for block in model.blocks] == [1, 0, 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"block_order": "parallel"}, "Unknown block_order 'parallel'"),
        ({"method": "bp", "block_order": "sequential"}, "end to end"),
        ({"method": "bwbpf", "deep_supervision": True, "block_order": "pipelined"}, "end to end"),
        ({"devices": ["/cpu:0", "/cpu:1", "/cpu:0", "/cpu:1"]}, "4 devices for 3 blocks"),
        ({"devices": ["/gpu:7"]}, "Unknown device '/gpu:7'"),
        ({"devices": ["banana"]}, "Unknown device 'banana'"),
        ({"devices": []}, "at least one device"),
    ],
)
def test_invalid_block_orders_and_devices_fail_before_training(kwargs, message):
    kwargs = {"method": "gll", **kwargs}
    with pytest.raises(ValueError, match=message):
        mlp(kwargs.pop("method"), **kwargs)


def test_pipelined_rejects_several_steps_per_execution():
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        mlp(block_order="pipelined").compile(optimizer="sgd", steps_per_execution=2)


# -- devices -------------------------------------------------------------------


def test_place_blocks_groups_contiguous_blocks():
    assert place_blocks(4, ["/cpu:0", "CPU:1"]) == ["/device:CPU:0", "/device:CPU:0", "/device:CPU:1", "/device:CPU:1"]
    assert place_blocks(3, "/cpu:1") == ["/device:CPU:1"] * 3
    assert canonical_device("/job:localhost/replica:0/task:0/device:CPU:1") == "/device:CPU:1"


def test_blocks_live_and_train_on_their_devices():
    data = batches(3)
    model = mlp(block_order="pipelined", devices=["/cpu:0", "/cpu:1"])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9), jit_compile="auto")
    assert model.jit_compile is False
    for x, y in data:
        model.train_on_batch(x, y)
    last = model.blocks[-1]
    assert all("CPU:1" in v.value.device for v in last.trainable_variables)
    slots = [v for v in last.optimizer.variables if v.path.endswith("_momentum")]
    assert len(slots) == 4 and all("CPU:1" in v.value.device for v in slots)
    assert all("CPU:0" in v.value.device for v in model.blocks[0].trainable_variables)
    unplaced = train(mlp(block_order="pipelined"), data, keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
    assert_close(weights(model), weights(unplaced), atol=1e-6)
    model.compile(optimizer="sgd", jit_compile=True)  # XLA: each block its own program on its own device
    assert model.jit_compile is True and model.compiles_blocks


# -- MirroredStrategy ----------------------------------------------------------


@pytest.mark.large  # several epochs under MirroredStrategy
@pytest.mark.parametrize("method", ["dgl"])  # its heads also create batch norms when they are built
def test_synchronized_batch_norm_makes_two_replicas_train_as_one_process(mirrored, method):
    """resnet8 (batch norm in every unit, and in DGL's heads) on a global batch of 8: with
    sync_batch_norm=True two replicas of 4 give one process's weights, moving statistics included;
    without it each replica normalises its own half and they do not."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8, 8, 3)).astype("float32"), rng.integers(0, NUM_CLASSES, size=8)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def run(strategy, sync):
        with strategy.scope():
            keras.utils.set_random_seed(1)
            model = kl.build_model(
                "resnet8", method, num_blocks=3, input_shape=(8, 8, 3), num_classes=NUM_CLASSES, sync_batch_norm=sync
            )
            model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        model.fit(dataset, epochs=1, verbose=0)
        return [np.asarray(w) for w in model.get_weights()]

    single = run(tf.distribute.get_strategy(), False)
    assert_close(run(mirrored, True), single, atol=1e-5)
    unsynchronized = run(mirrored, False)
    assert max(np.abs(a - b).max() for a, b in zip(unsynchronized, single)) > 1e-3


def test_sync_batch_norm_is_checked_and_kept_in_the_saved_model(tmp_path):
    with pytest.raises(ValueError, match="sync_batch_norm must be True or False, got 'yes'"):
        kl.build_model("resnet8", "gll", num_blocks=2, sync_batch_norm="yes")
    model = kl.build_model("resnet8", "gll", num_blocks=2, sync_batch_norm=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    norms = [layer for layer in loaded._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert loaded.sync_batch_norm and norms and all(layer.synchronized for layer in norms)


@pytest.mark.large  # data-parallel replicas, as tests/test_multi_worker.py
@pytest.mark.parametrize("method, block_order, options", DISTRIBUTED_CASES)
def test_mirrored_strategy_step_equals_single_replica_step(mirrored, method, block_order, options):
    """Global batch 8 on 2 replicas (4 each) gives the weights of batch 8 on one."""
    data = batches(3 if block_order == "pipelined" else 1)
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.concatenate([x for x, _ in data]), np.concatenate([y for _, y in data]))
    ).batch(8)

    def run(strategy):
        with strategy.scope():
            model = mlp(method, block_order=block_order, weight_decay=1e-3, **options)
            model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        history = model.fit(dataset, epochs=1, verbose=0)
        return weights(model), history.history

    single, single_logs = run(tf.distribute.get_strategy())
    replicated, mirrored_logs = run(mirrored)
    assert_close(replicated, single, atol=1e-5)
    for key in single_logs:
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-4, err_msg=key)


def test_block_order_and_devices_survive_a_keras_round_trip(tmp_path):
    model = train(mlp(block_order="pipelined", devices=["/cpu:1"]), batches(3))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.block_order == "pipelined" and loaded.block_devices == ["/device:CPU:1"] * 3
    assert [int(b.optimizer.iterations.numpy()) for b in loaded.blocks] == [3, 2, 1]
    x, y = batches(1, seed=5)[0]
    loaded.train_on_batch(x, y)  # a new warm-up: only block 0 trains
    assert [int(b.optimizer.iterations.numpy()) for b in loaded.blocks] == [4, 2, 1]


# -- sequential with backward links: what each block's forward waits for -------------------------


def test_sequential_backlink_orders_block_k_minus_1_link_before_block_k_plus_1(monkeypatch):
    """With links, block k−1's update waits for block k's input error. Block k+1's
    forward must wait for that link update too (not only for block k's local
    gradients), or every pending tail stays alive beside the next blocks'
    activations and the sequential block_order saves nothing."""
    from conftest import tiny_batch, tiny_resnet

    from keras_local import block as block_module
    from keras_local import trainer as model_module

    model = tiny_resnet("backlink", alpha=0.5, propagation_length=1)
    model.block_order = "sequential"
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    model.optimizer.build()
    waits, links = [], {}
    original_after, original_link = model_module.after, block_module.Block.finish_link

    def spy_after(dependencies, tensor):
        result = original_after(dependencies, tensor)
        waits.append(result)
        return result

    def spy_link(self, step, features_error, linked_units):
        gradients = original_link(self, step, features_error, linked_units)
        tail = {id(v) for v in self.tail_variables(linked_units)}
        links[self.name] = [g for v, g in zip(self.trainable_variables, gradients) if id(v) in tail]
        return gradients

    monkeypatch.setattr(model_module, "after", spy_after)
    monkeypatch.setattr(block_module.Block, "finish_link", spy_link)
    x, y = tiny_batch()
    tf.function(model.train_step).get_concrete_function((tf.constant(x), tf.constant(y)))
    # after() is called for blocks 0, 1, 2 (in each trace; the last trace's links are kept).
    block_1_input, block_2_input = waits[-2:]
    block_2_waits_for = set(block_2_input.op.control_inputs)
    link_ops = {gradient.op for gradient in links["block_0"]}
    assert link_ops and link_ops <= block_2_waits_for
    # block 1's input waits for block 0's local gradients only (its link needs block 1's error).
    assert not link_ops & set(block_1_input.op.control_inputs)


def test_pipelined_buffers_are_read_and_written_on_the_device_of_the_block_that_reads_them(monkeypatch):
    """Block k's output crosses to block k+1's device once, in the buffer write; nothing of it goes
    through the default device (which, with remote blocks, is the client)."""
    from keras_local.block_order import PipelineBuffers

    placed = []
    read, write = PipelineBuffers.read, PipelineBuffers.write

    def spy_read(self, cut, labels_like, images_like):
        placed.append(("read", cut, tf.identity(labels_like).device))
        return read(self, cut, labels_like, images_like)

    def spy_write(self, cut, features, *args):
        placed.append(("write", cut, tf.identity(features).device))
        return write(self, cut, features, *args)

    monkeypatch.setattr(PipelineBuffers, "read", spy_read)
    monkeypatch.setattr(PipelineBuffers, "write", spy_write)
    train(mlp(block_order="pipelined", devices=["/cpu:0", "/cpu:1", "/cpu:1"]), batches(3))
    assert placed and {(kind, cut, device) for kind, cut, device in placed} == {
        ("write", 0, "/device:CPU:1"),
        ("read", 0, "/device:CPU:1"),
        ("write", 1, "/device:CPU:1"),
        ("read", 1, "/device:CPU:1"),
    }

"""The pipelined block order against hand-written references: BackLink's and HPFF's links one step late
(through the next block's copy of the tail), InfoPro's images carried with the batch, MAN's moving
average and Associated Learning's targets from the carried labels."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, assert_close, ce, tiny_batches, tiny_resnet

import keras_local as kl
from keras_local.checkpoint import RunCheckpoint

WEIGHT_DECAY = 1e-3


def weights(model):
    return [v.numpy() for v in model.trainable_variables]


def train(model, data, optimizer=None):
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LEARNING_RATE))
    for x, y in data:
        model.train_on_batch(x, y)
    return model


def pipelined(method="gll", devices=None, **options):
    """`tiny_resnet` (block 0: stem + res1, block 1: res2, block 2: res3) in the pipelined block order."""
    keras.utils.set_random_seed(0)
    model = tiny_resnet(method, weight_decay=WEIGHT_DECAY, **options)
    model = kl.LocalModel(model.blocks, method=model.method, block_order="pipelined", devices=devices)
    model.build((None, 8, 8, 3))
    return model


def run(units, x):
    for unit in units:
        x = unit(x, training=True)
    return x


def decay(variables):
    return 0.5 * WEIGHT_DECAY * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])


def backlink_reference(model, data, alpha, linked_units=1):
    """BackLink pipelined, written out with tapes (plain SGD): at step t block k trains on what block k−1
    produced at step t−1 (starting at step k). Its prefix and head learn from its own loss at once; its
    last `linked_units` units (the tail) learn one step late, from α·(its own error) + (1 − α)·(block
    k+1's error at its input), pushed through the tail as it was on that batch (its weights and input
    then), plus their weight decay. All of a step's gradients are taken before any update."""
    blocks, held = model.blocks, {}
    num_blocks = len(blocks)
    for x, y in data:
        held[0] = {"features": tf.constant(x), "labels": tf.constant(y), "link": None}
        produced, updates = {}, {}
        for index, block in enumerate(blocks):
            if index not in held:
                continue
            batch, linked = held[index], linked_units if index < num_blocks - 1 else 0
            tail_variables = block.tail_variables(linked)
            tail_ids = {id(v) for v in tail_variables}
            own = [v for v in block.trainable_variables if id(v) not in tail_ids]
            split = len(block.units) - linked
            inputs = batch["features"]
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(inputs)
                hidden = run(block.units[:split], inputs)
                features = run(block.units[split:], hidden)
                loss = ce(batch["labels"], block.head(features, training=True))
                objective = loss + decay(own)
            gradients = dict(zip((id(v) for v in own), tape.gradient(objective, own)))
            own_error = tape.gradient(loss, features)
            if batch["link"] is not None:  # the previous block's tail, through the copy of step t−1
                link, previous = batch["link"], blocks[index - 1]
                error = alpha * link["own_error"] + (1 - alpha) * tape.gradient(loss, inputs)
                tail = previous.tail_variables(linked_units)
                current = [v.numpy() for v in tail]
                state = [v.numpy() for v in previous.non_trainable_variables]
                for variable, value in zip(tail, link["weights"]):
                    variable.assign(value)
                with tf.GradientTape() as link_tape:
                    again = run(previous.units[-linked_units:], link["hidden"])
                    link_objective = tf.reduce_sum(again * error) + decay(tail)
                tail_gradients = link_tape.gradient(link_objective, tail)
                updates.setdefault(index - 1, {}).update(zip((id(v) for v in tail), tail_gradients))
                for variable, value in zip(tail, current):
                    variable.assign(value)
                for variable, value in zip(previous.non_trainable_variables, state):
                    variable.assign(value)
            updates.setdefault(index, {}).update(gradients)
            produced[index + 1] = {
                "features": features,
                "labels": batch["labels"],
                "link": {"hidden": hidden, "own_error": own_error, "weights": [v.numpy() for v in tail_variables]}
                if linked
                else None,
            }
        for index, block in enumerate(blocks):
            for variable in block.trainable_variables:
                gradient = updates.get(index, {}).get(id(variable))
                if gradient is not None:
                    variable.assign_sub(LEARNING_RATE * gradient)
        held.update(produced)
    return weights(model)


@pytest.mark.parametrize("alpha", [0.5, 0.0])
def test_pipelined_backlink_applies_the_next_blocks_error_one_step_late(alpha):
    data = tiny_batches(4)
    options = {"alpha": alpha, "propagation_length": 1}
    reference = backlink_reference(pipelined("backlink", **options), data, alpha)
    model = train(pipelined("backlink", **options), data)
    assert_close(weights(model), reference, atol=1e-5)
    assert [int(block.optimizer.iterations.numpy()) for block in model.blocks] == [4, 3, 2]
    gll = train(pipelined("gll"), data)  # the test tells the link from no link
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(weights(gll), reference))


@pytest.mark.parametrize("options", [{"alpha": 1.0, "propagation_length": 1}, {"alpha": 0.5, "propagation_length": 0}])
def test_pipelined_backlink_without_a_link_is_pipelined_gll(options):
    data = tiny_batches(4)
    gll = train(pipelined("gll"), data)
    backlink = train(pipelined("backlink", **options), data)
    for a, b in zip(weights(backlink), weights(gll)):
        np.testing.assert_array_equal(a, b)


def test_a_scheduled_alpha_drives_the_pipelined_link():
    data = tiny_batches(4)
    fixed = train(pipelined("backlink", alpha=0.5, propagation_length=1), data)
    model = pipelined("backlink", alpha=0.9, propagation_length=1)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    model.method_variable("alpha").assign(0.5)
    for x, y in data:
        model.train_on_batch(x, y)
    assert_close(weights(model), weights(fixed), atol=1e-6)


def small(architecture, method, devices=None, **options):
    """`mlp`: six dense units in three blocks of two; `resnet8`: three blocks on 8x8 images."""
    keras.utils.set_random_seed(1)
    return kl.build_model(
        architecture,
        method,
        num_blocks=3,
        input_shape=(6,) if architecture == "mlp" else (8, 8, 3),
        num_classes=5,
        architecture_options={"hidden_units": (8,) * 6} if architecture == "mlp" else None,
        block_order="pipelined",
        devices=devices,
        **options,
    )


@pytest.mark.parametrize(
    "architecture, method, options",
    [("mlp", "backlink", {"alpha": 0.5, "propagation_length": 1}), ("resnet8", "gll", {"hpff": True})],
)
def test_pipelined_links_on_two_devices_under_xla_give_the_plain_steps_weights(architecture, method, options):
    data = tiny_batches(4, 8, 5, (6,) if architecture == "mlp" else (8, 8, 3))
    reference = train(small(architecture, method, **options), data)
    model = small(architecture, method, devices=["/cpu:0", "/cpu:1", "/cpu:1"], **options)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=True)
    assert model.compiles_blocks
    for x, y in data:
        model.train_on_batch(x, y)
    assert_close(weights(model), weights(reference), atol=5e-5)
    copy = model._pipeline.links[0].tail_weights[0]  # block 1's copy of block 0's tail lives with block 1
    assert copy.device.endswith("CPU:1")


def carried_reference(model, data, momentum=None):
    """The pipelined block order written out (plain SGD): at step t block k trains on what block k−1
    produced at step t−1, against the labels, and for a method whose loss reads them the images, of
    those examples. With MAN's `momentum`, after the updates each block's moving average moves towards
    the next block's first unit as it was when the step began."""
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))  # the blocks' losses
    held = {}
    for x, y in data:
        held[0] = (tf.constant(x), tf.constant(y), tf.constant(x))
        produced, updates = {}, {}
        for index, block in enumerate(model.blocks):
            if index not in held:
                continue
            inputs, labels, images = held[index]
            target = {"labels": labels, "images": images} if model.method.needs_images else labels
            with tf.GradientTape() as tape:
                features = block(inputs, training=True)
                loss = block.local_loss(target, block.head(features, training=True))
            updates[index] = tape.gradient(loss, block.trainable_variables)
            produced[index + 1] = (features, labels, images)
        sources = {
            index: [tf.identity(w) for w in model.blocks[index + 1].units[0].trainable_weights]
            for index in updates
            if index + 1 < len(model.blocks)
        }
        for index, gradients in updates.items():
            for variable, gradient in zip(model.blocks[index].trainable_variables, gradients):
                variable.assign_sub(LEARNING_RATE * gradient)
        if momentum is not None:
            for index, source in sources.items():
                average, next_unit = model.blocks[index].head.average, model.blocks[index + 1].units[0]
                trained = [a for a, w in zip(average.weights, next_unit.weights) if w.trainable]
                for variable, value in zip(trained, source):
                    variable.assign(momentum * variable + (1 - momentum) * value)
        held.update(produced)
    return [v.numpy() for v in model.weights]


def images_model(method, **options):
    keras.utils.set_random_seed(2)
    return kl.build_model(
        "resnet8", method, num_blocks=3, input_shape=(8, 8, 3), num_classes=5, block_order="pipelined", **options
    )


@pytest.mark.parametrize(
    "method, options",
    [("infopro", {}), ("gll", {"man": True, "man_momentum": 0.9}), ("infopro", {"man": True, "man_momentum": 0.9})],
)
def test_pipelined_methods_that_read_images_or_average_the_next_block_match_the_written_out_steps(method, options):
    data = tiny_batches(4, 6, 5, (8, 8, 3))
    reference = carried_reference(images_model(method, **options), data, momentum=options.get("man_momentum"))
    model = train(images_model(method, **options), data)
    assert_close([v.numpy() for v in model.weights], reference, atol=2e-5)
    if method == "infopro":  # the images are carried: the current batch's would train blocks 1 and 2 otherwise
        assert model._pipeline.images[0] is not None


def associated_reference(model, data):
    """Associated Learning pipelined, written out (plain SGD): each step the label path trains on the
    batch's labels (t_0 = one-hot y, t_i = g_i(t_{i−1}), each label block on its own loss), and block 0
    regresses the codes of that forward; block k > 0 regresses the codes of the labels carried with its
    input, from the label path as this step's update left it."""
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    label_blocks, num_classes = model.extra_blocks, model.extra_blocks[0].head.units

    def codes(labels, training):
        code, result = tf.one_hot(tf.cast(labels, "int32"), num_classes), []
        for block in label_blocks:
            if training:
                with tf.GradientTape() as tape:
                    next_code = block(code, training=True)
                    loss = block.local_loss(code, block.head(next_code, training=True))
                gradients = tape.gradient(loss, block.trainable_variables)
                rate = float(block.optimizer.learning_rate.numpy())
                for variable, gradient in zip(block.trainable_variables, gradients):
                    variable.assign_sub(rate * gradient)
            else:
                next_code = block(code, training=False)
            code = tf.stop_gradient(next_code)
            result.append(code)
        return result

    held = {}
    for x, y in data:
        held[0] = (tf.constant(x), tf.constant(y))
        produced, updates = {}, {}
        for index, block in enumerate(model.blocks):
            if index not in held:
                continue
            inputs, labels = held[index]
            target = codes(labels, training=index == 0)[index]
            with tf.GradientTape() as tape:
                features = block(inputs, training=True)
                loss = block.local_loss(target, block.head(features, training=True))
            updates[index] = tape.gradient(loss, block.trainable_variables)
            produced[index + 1] = (features, labels)
        for index, gradients in updates.items():
            for variable, gradient in zip(model.blocks[index].trainable_variables, gradients):
                variable.assign_sub(LEARNING_RATE * gradient)
        held.update(produced)
    return [v.numpy() for v in model.weights]


def test_pipelined_associated_learning_regresses_the_codes_of_the_carried_labels():
    data = tiny_batches(4, 6, 5, (8, 8, 3))
    reference = associated_reference(images_model("associated"), data)
    model = train(images_model("associated"), data)
    assert_close([v.numpy() for v in model.weights], reference, atol=2e-5)


@pytest.mark.parametrize("stop_after", [1, 4])  # during the warm-up (K = 3), and after it
@pytest.mark.parametrize("method, options", [("backlink", {"alpha": 0.5, "propagation_length": 1}), ("infopro", {})])
def test_a_pipelined_run_resumed_from_its_checkpoint_goes_on_bit_for_bit(tmp_path, stop_after, method, options):
    """The checkpoint holds the batches in flight and the warm-up counter: no block skips an update
    and no batch is lost."""
    data = tiny_batches(6, 6, 5, (8, 8, 3))

    def fresh():
        model = images_model(method, **options) if method == "infopro" else pipelined(method, **options)
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        return model

    uninterrupted = fresh()
    for x, y in data:
        uninterrupted.train_on_batch(x, y)
    interrupted = fresh()
    for x, y in data[:stop_after]:
        interrupted.train_on_batch(x, y)
    checkpoint = RunCheckpoint(tmp_path, every=0)
    checkpoint.set_model(interrupted)
    checkpoint.save(0, stop_after, stop_after)
    assert (tmp_path / f"step-{stop_after}.pipeline.npz").exists()
    resumed = fresh()
    assert RunCheckpoint(tmp_path).restore(resumed) == (0, stop_after)
    for x, y in data[stop_after:]:
        resumed.train_on_batch(x, y)
    for a, b in zip(weights(resumed), weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)
    steps = [int(block.optimizer.iterations.numpy()) for block in resumed.blocks]
    assert steps == [int(block.optimizer.iterations.numpy()) for block in uninterrupted.blocks]


def test_a_keras_file_holds_no_pipeline_buffers_and_a_reload_refills_the_pipeline(tmp_path):
    model = train(pipelined("backlink", alpha=0.5, propagation_length=1), tiny_batches(3))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert len(loaded.weights) == len(model.weights)
    assert loaded.pipeline_state() == {"steps": 0}


def test_each_worker_keeps_its_own_batches_in_flight_beside_the_chiefs_checkpoint(tmp_path, monkeypatch):
    """Under MultiWorkerMirroredStrategy each worker's buffers hold its own examples: worker 1 writes
    them into the chief's folder under its own name (its own folder is temporary) and reads them back."""
    data = tiny_batches(2, 6, 5, (8, 8, 3))
    model = train(pipelined("backlink", alpha=0.5, propagation_length=1), data)
    chief, worker = tmp_path / "chief", tmp_path / "worker"
    checkpoint = RunCheckpoint(chief)
    checkpoint.set_model(model)
    checkpoint.save(0, 2, 2)  # the chief (no cluster)
    config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    own = RunCheckpoint(worker, restore_from=chief)
    own.set_model(model)
    model.set_pipeline_state({**model.pipeline_state(), "steps": np.array(1)})  # this worker's own state
    own.save(0, 2, 2)
    assert (chief / "step-2.pipeline-worker1.npz").exists() and not (worker / "step-2.pipeline.npz").exists()
    resumed = train(pipelined("backlink", alpha=0.5, propagation_length=1), [])
    RunCheckpoint(worker, restore_from=chief).restore(resumed)
    assert resumed.pipeline_state()["steps"] == 1

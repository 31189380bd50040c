"""Saving, resuming and exporting keep every block's optimizer state and weights."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import StopAtEpoch, tiny_batch, tiny_resnet

import keras_local as kl


def optimizer_state(model):
    return [[v.numpy().copy() for v in block.optimizer.variables] for block in model.blocks]


def assert_same_state(a, b):
    for block_a, block_b in zip(a, b):
        assert len(block_a) == len(block_b)
        for x, y in zip(block_a, block_b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.large  # an interrupted and resumed fit
def test_backup_and_restore_resumes_with_every_blocks_optimizer_state(tmp_path):
    x, y = tiny_batch(16)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

    def fresh():
        keras.utils.set_random_seed(1)
        model = tiny_resnet()
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        return model

    reference = fresh()
    reference.fit(dataset, epochs=3, verbose=0)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = fresh()
    try:
        interrupted.fit(dataset, epochs=3, verbose=0, callbacks=[backup, StopAtEpoch(2)])
    except RuntimeError:
        pass
    resumed = fresh()
    history = resumed.fit(dataset, epochs=3, verbose=0, callbacks=[backup])
    assert len(history.epoch) == 1  # only the third epoch ran again
    assert [int(b.optimizer.iterations) for b in resumed.blocks] == [6, 6, 6]
    for block_a, block_b in zip(optimizer_state(reference), optimizer_state(resumed)):
        for a, b in zip(block_a, block_b):  # momentum slots continued, not restarted
            np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.large  # fit with Keras' callbacks over several epochs
def test_stock_callbacks_work_with_per_block_optimizers(tmp_path):
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    x, y = tiny_batch(16)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_accuracy", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
    ]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y), callbacks=callbacks)
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "accuracy", "acc_0", "loss_1", "val_acc_2"} <= set(header)
    restored = keras.saving.load_model(str(tmp_path / "best.keras"))
    assert all(int(b.optimizer.iterations) > 0 for b in restored.blocks)
    assert os.listdir(tmp_path / "tb")


@pytest.mark.parametrize(
    "method, options, unit",
    [
        ("gll", {}, 0),
        ("backlink", {"alpha": 0.0, "propagation_length": 1}, 1),  # the tail: only the next block's error
    ],
)
def test_mixed_precision_scales_the_loss_in_the_custom_step(method, options, unit):
    x, y = tiny_batch(8)

    def update_size(policy):
        keras.mixed_precision.set_global_policy(policy)
        keras.utils.set_random_seed(3)
        model = tiny_resnet(method, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        layer = model.blocks[0].units[unit]
        kernel = getattr(layer, "conv", None) or layer.conv1
        kernel = kernel.kernel
        before = kernel.numpy().copy()
        model.train_step((tf.constant(x), tf.constant(y)))
        return model, np.abs(kernel.numpy() - before).mean()

    mixed, mixed_update = update_size("mixed_float16")
    assert type(mixed.blocks[0].optimizer).__name__ == "LossScaleOptimizer"
    _, full_update = update_size("float32")
    # Without scale_loss the LossScaleOptimizer would unscale an unscaled loss: 2**15 too small.
    assert 0.5 < mixed_update / full_update < 2.0


@pytest.mark.large  # loads in a new process
def test_exported_model_loads_without_keras_local(tmp_path):
    model = kl.build_model("resnet20", method="gll", num_blocks=3, head="conv", input_shape=(16, 16, 3), num_classes=4)
    model.compile(optimizer="sgd")
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
    model.fit(x, np.arange(4), epochs=1, verbose=0)
    path = str(tmp_path / "infer.keras")
    kl.export_inference_model(model, path)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, json, numpy as np, keras\n"
        f"m = keras.saving.load_model({path!r})\n"
        f"p = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        "assert not any(name.startswith('keras_local') for name in sys.modules)\n"
        "print(json.dumps(p.tolist()))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path, check=True
    )
    predictions = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-5)


def _as_older_file(source_path, target_path, edit):
    """Copies a `.keras` file, passing its config.json through `edit`."""
    import zipfile

    with zipfile.ZipFile(source_path) as source, zipfile.ZipFile(target_path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = json.dumps(edit(json.loads(data))).encode()
            target.writestr(item, data)


def test_files_and_configs_with_keys_renamed_since_still_load(tmp_path):
    """Keys renamed since 0.2 (`schedule` -> `block_order`, DenseReLU's `units`
    -> `width`): old `.keras` files and config files still load; both names at
    once is an error."""
    from keras_local.config import load_config

    model = kl.build_model(
        "mlp",
        "gll",
        num_blocks=2,
        input_shape=(6,),
        num_classes=3,
        block_order="sequential",
        architecture_options={"hidden_units": (8, 8)},
    )
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    model.save(tmp_path / "new.keras")

    def rename(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DenseReLU":
                node["config"]["units"] = node["config"].pop("width")
            if node.get("class_name") == "LocalModel":
                node["config"]["schedule"] = node["config"].pop("block_order")
            return {key: rename(value) for key, value in node.items()}
        return [rename(item) for item in node] if isinstance(node, list) else node

    _as_older_file(tmp_path / "new.keras", tmp_path / "old.keras", rename)
    import zipfile

    with zipfile.ZipFile(tmp_path / "old.keras") as old:
        old_config = old.read("config.json").decode()
    assert '"schedule"' in old_config and '"units"' in old_config and '"width"' not in old_config
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert loaded.block_order == "sequential"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    (tmp_path / "old.toml").write_text('schedule = "pipelined"\n')
    assert load_config(tmp_path / "old.toml")["block_order"] == "pipelined"
    with pytest.raises(ValueError, match="'schedule' is the old name of 'block_order'"):
        load_config(tmp_path / "old.toml", ["block_order=sequential"])

"""The contract every registered method keeps, run for each name in `kl.list_methods()`:
a new method is tested by registering it.

- a `.keras` round trip restores its weights, its predictions and every block's optimizer state;
- each block order (`together`, `sequential`, `pipelined`) trains a step or is refused with a
  `ValueError` before training;
- `export_inference_model` predicts what the model predicts;
- a frozen block is left untouched by a step, or freezing is refused with a `ValueError`;
- a per-example weight is refused with a `ValueError`, not silently dropped.
"""

import keras
import numpy as np
import pytest
from conftest import tiny_batch

import keras_local as kl
from keras_local.block_order import BLOCK_ORDERS

# Every registered method, and the rules that compose with the auxiliary-head methods as options (each rule
# on one base here; tests/methods/ checks them on gll, dgl and infopro).
# The composed rules run with the large tests (CI); tests/methods/ covers them in the quick ones.
COMPOSED = [pytest.param(name, marks=pytest.mark.large, id=name) for name in ("dgl+man", "infopro+hpff")]
METHODS = kl.list_methods() + COMPOSED
SHAPE, CLASSES = (16, 16, 3), 4


def _model(method, block_order="together"):
    name, _, option = method.partition("+")
    model = kl.build_model(
        "resnet8",
        method=name,
        num_blocks=2,
        input_shape=SHAPE,
        num_classes=CLASSES,
        block_order=block_order,
        **({option: True} if option else {}),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    return model


def _batch(size=8, seed=0):
    return tiny_batch(size, CLASSES, SHAPE, seed)


def _optimizer_state(model):
    return [[variable.numpy() for variable in block.optimizer.variables] for block in model.blocks + model.extra_blocks]


@pytest.mark.parametrize("method", METHODS)
def test_keras_round_trip_keeps_weights_predictions_and_optimizer_state(method, tmp_path):
    model = _model(method)
    # Build the optimizers in reverse block order: slots must still land on the right variables.
    for block in reversed(model.blocks):
        block.optimizer.build(block.trainable_variables)
    x, y = _batch()
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.method) is type(model.method) and loaded.method.get_config() == model.method.get_config()
    assert [int(block.optimizer.iterations) for block in loaded.blocks] == [4] * len(model.blocks)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_optimizer_state(model), _optimizer_state(loaded), strict=True):
        for slot_a, slot_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(slot_a, slot_b)
    momentum_slots = [v for v in loaded.blocks[-1].optimizer.variables if "momentum" in v.path]
    assert momentum_slots and any(np.abs(v.numpy()).max() > 0 for v in momentum_slots)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    # Training continues identically from the restored state.
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("block_order", BLOCK_ORDERS)
@pytest.mark.parametrize("method", METHODS)
def test_each_block_order_trains_or_is_refused_up_front(method, block_order):
    try:
        model = _model(method, block_order)
    except ValueError as error:
        assert block_order in str(error) and "\n" not in str(error)
        return
    x, y = _batch()
    before = [weight.copy() for weight in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed)
    assert all(np.isfinite(weight).all() for weight in model.get_weights())


@pytest.mark.parametrize("method", METHODS)
def test_the_exported_model_predicts_what_the_model_predicts(method):
    model = _model(method)
    x, y = _batch()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    inference = kl.export_inference_model(model)
    assert all(type(layer).__module__.startswith("keras.") for layer in inference.layers)
    np.testing.assert_allclose(inference.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_frozen_block_is_untouched_or_freezing_is_refused(method):
    model = _model(method)
    try:
        model.set_block_state(0, "frozen")
    except ValueError as error:
        assert method.partition("+")[0] in str(error) or "backpropagate" in str(error)
        return
    x, y = _batch()
    model.predict(x, verbose=0)  # builds every variable
    frozen = [variable.numpy().copy() for variable in model.blocks[0].variables]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    for before, variable in zip(frozen, model.blocks[0].variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())
    later = model.blocks[1].trainable_variables
    assert later and any(int(block.optimizer.iterations) > 0 for block in model.blocks[1:])


@pytest.mark.parametrize("method", METHODS)
def test_a_per_example_weight_is_refused(method):
    model = _model(method)
    x, y = _batch()
    with pytest.raises(ValueError, match="do not take sample_weight or class_weight"):
        model.fit(x, y, sample_weight=np.ones(len(y)), epochs=1, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="do not take sample_weight or class_weight"):
        model.fit(x, y, class_weight={label: 1.0 for label in range(CLASSES)}, epochs=1, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match="do not take sample_weight or class_weight"):
        model.evaluate(x, y, sample_weight=np.ones(len(y)), verbose=0)

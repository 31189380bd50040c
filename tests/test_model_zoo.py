"""Image models of keras.applications and keras-hub through keras_local: the defects of each, and the sweep.

The models are built in `model_zoo.py` (small configs, no downloads).
"""

import os

import keras
import numpy as np
import pytest
from conftest import tiny_batch

import keras_local as kl

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def keras_hub():
    return pytest.importorskip("keras_hub")


def _round_trip(local, path, images):
    """The model `local` saved to `path` and loaded back (in this process), and how far its predictions move."""
    local.save(path)
    loaded = keras.saving.load_model(path)
    return loaded, float(np.abs(loaded.predict(images, verbose=0) - local.predict(images, verbose=0)).max())


def _images(model, count=2):
    shape = tuple(keras.tree.flatten(model.inputs)[0].shape[1:])
    return np.random.default_rng(0).uniform(0, 1, (count, *shape)).astype("float32")


# keras-hub 0.32's layer configs that keras_local's layer-by-layer saving exposes (keras_local.repairs): each of
# these failed to save or to load on the code before the repair.
@pytest.mark.parametrize("name", ["MiT", "SegFormer", "Swin", "DeepLabV3", "DeiT"])
def test_keras_hub_backbones_with_broken_layer_configs_save_and_load(name, keras_hub, tmp_path):
    import model_zoo

    backbone = model_zoo.build(f"keras_hub.{name}")
    local = kl.build_model(backbone, "gll", num_blocks=2)
    images = _images(backbone)
    loaded, moved = _round_trip(local, tmp_path / "model.keras", images)
    assert moved == 0.0 and len(loaded.weights) == len(local.weights)
    for a, b in zip(local.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mit_encoder_blocks_keep_their_attention_reduction(keras_hub):
    import model_zoo

    encoder = model_zoo.build("keras_hub.MiT")
    kl.build_model(encoder, "gll", num_blocks=2)  # repairs the layers it takes (keras_local.repairs)
    block = encoder.get_layer("hierarchical_encoder_0_0")
    config = block.get_config()  # keras-hub 0.32 leaves sr_ratio out and writes keys its constructor refuses
    assert config["sr_ratio"] == 8 and "mlp" not in config and "drop_prop" not in config
    rebuilt = type(block).from_config(config)
    rebuilt(np.zeros((1, 64, 4), "float32"))  # its sublayers make their variables when called
    assert sorted(tuple(v.shape) for v in rebuilt.weights) == sorted(tuple(v.shape) for v in block.weights)


def test_dinov2_position_embeddings_trained_in_any_direction_are_saved(keras_hub, tmp_path):
    """keras-hub 0.32 keeps a change of the (trainable) interpolated position embeddings at saving only when
    the change sums to more than epsilon; one that sums to about zero was lost."""
    import model_zoo

    backbone = model_zoo.build("keras_hub.DINOv2")
    local = kl.build_model(backbone, "gll", num_blocks=2)
    embeddings = backbone.get_layer("embeddings").interpolated_position_embeddings
    change = np.random.default_rng(0).normal(0, 0.01, embeddings.shape)
    embeddings.assign(embeddings + change - change.mean())
    _, moved = _round_trip(local, tmp_path / "dinov2.keras", _images(backbone))
    assert moved < 1e-6


def test_vit_family_encoders_open_into_their_blocks(keras_hub):
    import model_zoo

    deit = model_zoo.build("keras_hub.DeiT")  # its blocks return (tokens, None): asked for scores, two tensors
    assert kl.cut_points(deit) == [
        "deit_patching_and_embedding",
        "transformer_block_1",
        "transformer_block_2",
        "transformer_block_3",
    ]
    dinov2 = model_zoo.build("keras_hub.DINOv2")  # a one-entry dict input, {"images": ...}
    assert kl.cut_points(dinov2) == ["embeddings", "layers_0", "layers_1", "layers_2"]
    for backbone in (deit, dinov2):
        local = kl.build_model(backbone, "gll", num_blocks=3)
        images = _images(backbone)
        given = keras.tree.map_structure(lambda _, images=images: images, backbone.input)
        np.testing.assert_allclose(local.backbone_model(include_top=False)(images), backbone(given), atol=1e-5)


def test_hgnetv2_units_end_in_the_stage_the_model_returns(keras_hub):
    import model_zoo

    backbone = model_zoo.build("keras_hub.HGNetV2")  # its encoder returns every stage; the model, the last
    local = kl.build_model(backbone, "gll", num_blocks=2)
    assert local.blocks[-1].units[-1].output.shape == (None, 4, 4, 128)
    images = _images(backbone)
    features = keras.tree.flatten(backbone(images))[0]  # the model returns {"stage2": ...}
    np.testing.assert_allclose(local.backbone_model(include_top=False)(images), features, atol=1e-5)


@keras.saving.register_keras_serializable(package="tests")
class ForgetfulDense(keras.layers.Layer):
    """A layer whose get_config leaves out its width: a config that loads into other variables."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.dense(x)

    def get_config(self):
        return super().get_config()  # the defect: without units


ForgetfulDense.__module__ = "third_party.layers"  # another library's layer: what check_saveable rebuilds


def test_a_layer_that_would_not_load_back_refuses_the_save_in_one_line(tmp_path):
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = ForgetfulDense(7, name="forgetful")(x)
    outputs = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    local = kl.build_model(keras.Model(inputs, outputs, name="forgets"), "gll", num_blocks=2)
    with pytest.raises(ValueError) as error:
        local.save(tmp_path / "forgets.keras")
    message = str(error.value)
    assert "layer 'forgetful' (third_party.layers.ForgetfulDense) would not load back" in message
    assert "variables of other shapes" in message and "\n" not in message
    assert not (tmp_path / "forgets.keras").exists()
    x, _ = tiny_batch(2)
    assert np.isfinite(local.predict(x, verbose=0)).all()


def test_repairs_name_the_library_version_they_are_for():
    from keras_local import repairs

    for (module, class_name), repair in repairs.REPAIRS.items():
        assert module.startswith("keras_hub.") and repair.found_in.startswith("keras-hub ")
        assert repair.defect and (repair.get_config or repair.methods or repair.load), class_name


@pytest.fixture(scope="module")
def loader():
    import model_zoo

    process = model_zoo.Loader()
    yield process
    process.close()


def _sweep():
    """Every model of the sweep: one keras.applications model of each classifier form and input size
    (`model_zoo.SMALLEST_OF_EACH_FAMILY`) and every keras-hub backbone run in CI (`large`); every other
    keras.applications model with --run-slow."""
    import model_zoo

    ci = set(model_zoo.SMALLEST_OF_EACH_FAMILY) | {name for name in model_zoo.NAMES if name.startswith("keras_hub.")}
    return [pytest.param(name, marks=pytest.mark.large if name in ci else pytest.mark.slow) for name in model_zoo.NAMES]


@pytest.mark.parametrize("name", _sweep())
def test_every_image_model_trains_block_wise_and_comes_back(name, loader, tmp_path):
    """Cut points, a finite step, the model given back equal to the trained one, and the `.keras` file loaded
    in a process that built none of the models (`model_zoo.py` prints the table of all of them)."""
    import model_zoo

    if name.startswith("keras_hub."):
        pytest.importorskip("keras_hub")
    row = model_zoo.check(name, str(tmp_path))
    assert row["cut_points"] >= 1 and row["trains"], row
    assert row["equal"] <= 1e-5, row
    assert loader(str(tmp_path / f"{name.replace('.', '_')}.keras")) == pytest.approx(0.0, abs=1e-5)

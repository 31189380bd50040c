"""Every shipped recipe is a valid run configuration, and a few train for real."""

import json
import pathlib

import pytest
from conftest import set_arguments

from keras_local import cli
from keras_local.builder import build_model_from_config
from keras_local.config import load_config
from keras_local.methods import method_option_names

ROOT = pathlib.Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(str(path.relative_to(ROOT)) for path in ROOT.rglob("*.toml"))
SHARED = ROOT.parents[1] / "shared" / "data" / "tfds"
SHAPES = {
    "cifar10": ((32, 32, 3), 10),
    "cifar10_jpeg": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "mnist": ((28, 28, 1), 10),
    "tiny_imagenet": ((64, 64, 3), 200),
}
TINY = set_arguments(
    "dataset=cifar10_sample",
    "train_examples=64",
    "test_examples=64",
    "batch_size=32",
    "eval_batch_size=64",
    "epochs=1",
    "verbose=0",
)


def test_the_paper_recipes_exist():
    assert len([r for r in RECIPES if r.startswith("bwbpf/")]) == 28
    assert len([r for r in RECIPES if r.startswith("backlink/")]) == 31
    assert len([r for r in RECIPES if r.startswith("associated/")]) == 24
    assert len([r for r in RECIPES if r.startswith("infopro/")]) == 24
    assert len([r for r in RECIPES if r.startswith("dgl/")]) == 3
    assert len([r for r in RECIPES if r.startswith("predsim/")]) == 1


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.startswith("tuning/")])
def test_tuning_recipe_declares_a_search_space(recipe):
    from keras_local import search

    config = load_config(ROOT / recipe, method_option_names=method_option_names())
    assert config["search"]
    input_shape, num_classes = SHAPES[config["dataset"]]
    search.hypermodel_from_config(config, input_shape, num_classes)  # validates the whole space


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_resolves_and_its_model_assembles(recipe):
    config = load_config(ROOT / recipe, method_option_names=method_option_names())
    input_shape, num_classes = SHAPES[config["dataset"]]
    model = build_model_from_config(config, input_shape, num_classes, build=False)
    if config["num_blocks"] == "auto":  # the method's own split (Associated Learning's components)
        assert len(model.blocks) == len(model.extra_blocks) == (2 if config["architecture"] == "mlp" else 4)
        return
    expected = config["num_blocks"] if config["cuts"] is None else len(config["cuts"]) + 1
    extra = 1 if model.method.separate_output_block else 0
    assert len(model.blocks) == expected + extra


@pytest.mark.parametrize(
    "recipe",
    [
        "backlink/resnet32_cifar10_k4_conv.toml",  # backward links, conv heads
        "backlink/alexnet_cifar10_k8_linear.toml",  # dense units, output layer alone in the last block
        "bwbpf/resnet50_cifar10_k4.toml",  # bottleneck units, separate output block
    ],
)
@pytest.mark.large  # whole runs of the paper recipes
def test_recipe_trains_one_epoch_on_the_embedded_sample(recipe, tmp_path, capsys):
    assert cli.main(["train", "--config", str(ROOT / recipe), "--run-dir", str(tmp_path), *TINY]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs the shared CIFAR-10 / Tiny-ImageNet copies")
@pytest.mark.parametrize("recipe", [r for r in RECIPES if "cifar100" not in r and "mnist" not in r])
def test_recipe_trains_on_the_shared_data(recipe, tmp_path):
    config = load_config(ROOT / recipe, method_option_names=method_option_names())
    dataset = ["--set", "dataset=cifar10_jpeg"] if config["dataset"] == "cifar10" else []
    argv = [
        "train",
        "--config",
        str(ROOT / recipe),
        "--run-dir",
        str(tmp_path),
        *dataset,
        "--set",
        f"data_dir={SHARED}",
        "--set",
        "epochs=1",
        "--set",
        "train_examples=512",
        "--set",
        "test_examples=512",
        "--set",
        "verbose=0",
    ]
    assert cli.main(argv) == 0


# -- each method's reference recipe (keras_local.recipes) ------------------------------------------


@pytest.mark.parametrize("method", __import__("keras_local").list_methods())
def test_every_method_carries_a_reference_recipe_that_is_a_valid_config(method):
    import keras_local as kl

    recipe = kl.get_method(method).reference_recipe("resnet32")
    assert recipe.source and {
        "optimizer",
        "learning_rate",
        "weight_decay",
        "weight_decay_scope",
        "batch_size",
        "epochs",
    } <= set(recipe.settings)
    config = load_config(
        None,
        [f'method="{method}"', 'architecture="resnet32"', 'recipe="reference"', "epochs=200"],
        method_option_names(),
    )
    for key, value in recipe.settings.items():
        if key == "method_options":
            assert value.items() <= config["method_options"].items()
        elif key != "epochs":
            assert config[key] == value, key
    build_model_from_config(config, (32, 32, 3), 10, build=False)


def _make_recipes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_recipes", ROOT.parent / "tools" / "make_recipes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_recipes_are_what_make_recipes_writes():
    make_recipes = _make_recipes()
    texts = make_recipes.generate()
    committed = {r for r in RECIPES if r.split("/")[0] in make_recipes.GENERATED}
    assert set(texts) == committed, "re-run python tools/make_recipes.py"
    stale = [path for path, text in texts.items() if (ROOT / path).read_text() != text]
    assert not stale, f"re-run python tools/make_recipes.py: {stale[:3]}"


CELL_KEYS = ("head", "split", "num_blocks", "method_options")  # what a table's cell sets itself


def _owner_recipe(folder, raw):
    """The recipe a generated TOML must carry, found from the TOML alone."""
    import keras_local as kl
    from keras_local.methods.associated.recipes import backprop_baseline_recipe

    method, architecture = raw["method"], raw["architecture"]
    if folder == "associated" and method == "bp":
        return backprop_baseline_recipe(architecture), False
    if folder in (method, "man", "hpff", "auglocal"):
        return kl.get_method(method, **raw.get("method_options", {})).reference_recipe(architecture), True
    return kl.get_method(folder).reference_recipe(architecture), False  # a baseline trained with its settings


@pytest.mark.parametrize(
    "recipe",
    [
        r
        for r in RECIPES
        if r.split("/")[0]
        in ("bwbpf", "backlink", "associated", "infopro", "dgl", "predsim", "man", "hpff", "auglocal")
    ],
)
def test_a_generated_recipe_carries_its_methods_reference_settings(recipe):
    import tomllib

    raw = tomllib.loads((ROOT / recipe).read_text())
    reference, own_method = _owner_recipe(recipe.split("/")[0], raw)
    settings = reference.for_dataset(raw["dataset"]).settings
    for key, value in settings.items():
        if key not in CELL_KEYS:
            assert raw.get(key) == value, (key, raw.get(key), value)
    if own_method:
        options = {name: value for name, value in settings.get("method_options", {}).items() if value is not None}
        assert options.items() <= raw.get("method_options", {}).items()


def test_recipe_for_dataset_overrides_only_that_dataset():
    import keras_local as kl

    bwbpf = kl.get_method("bwbpf").reference_recipe("resnet50")
    assert (bwbpf.settings["batch_size"], bwbpf.settings["epochs"]) == (128, 400)
    tiny = bwbpf.for_dataset("tiny_imagenet")
    assert (tiny.settings["batch_size"], tiny.settings["epochs"], tiny.settings["weight_decay"]) == (32, 200, 5e-4)
    assert bwbpf.for_dataset("cifar10").settings == bwbpf.settings
    associated = kl.get_method("associated").reference_recipe("resnet32")
    assert associated.for_dataset("cifar100").settings["weight_decay"] == 5e-4
    assert associated.settings["weight_decay"] == 1e-4
    config = load_config(
        None,
        ['method="associated"', 'architecture="resnet32"', 'dataset="cifar100"', 'recipe="reference"'],
        method_option_names(),
    )
    assert config["weight_decay"] == 5e-4  # the config's reference recipe is the dataset's


def test_reference_recipe_sits_under_the_file_and_the_overrides():
    config = load_config(
        None,
        ['method="predsim"', 'recipe="reference"', "learning_rate=0.001", 'output_loss="plain"'],
        method_option_names(),
    )
    assert (config["optimizer"], config["weight_decay"], config["lr_schedule"]) == ("adam", 0.0, "piecewise")
    assert config["learning_rate"] == 0.001 and config["method_options"]["output_loss"] == "plain"
    assert load_config(None, ['method="predsim"'], method_option_names())["optimizer"] == "sgd"  # shared
    with pytest.raises(ValueError, match="Unknown recipe 'paper'. Allowed: shared, reference"):
        load_config(None, ['recipe="paper"'], method_option_names())


def test_build_model_takes_the_model_keys_of_the_reference_recipe():
    import numpy as np

    import keras_local as kl

    predsim = kl.build_model("resnet8", "predsim", num_blocks=2, recipe="reference", input_shape=(8, 8, 3))
    assert predsim.method.output_loss == "scaled" and not np.any(predsim.output_head.dense.kernel.numpy())
    associated = kl.build_model("resnet20", "associated", recipe="reference", bridge="pooled", build=False)
    assert associated.method.bridge == "pooled"  # the call's options win
    assert len(associated.blocks) == 4  # the reference's components: stem + one per stage
    assert {(b.weight_decay, b.weight_decay_scope) for b in associated.blocks} == {(1e-4, "backbone_kernels")}
    assert (
        kl.build_model("resnet20", "gll", num_blocks=2, recipe="reference", build=False).blocks[0].weight_decay == 5e-4
    )


@pytest.mark.large  # a whole run of the CLI
def test_cli_applies_the_reference_recipe(tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--recipe",
            "reference",
            "--set",
            'method="dgl"',
            "--set",
            'architecture="dgl_cnn4"',
            "--set",
            "num_blocks=2",
            *TINY,
            "--set",
            "batch_size=32",
            "--set",
            "validation_freq=0",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    import csv

    with open(tmp_path / "run" / "history.csv") as file:  # validation_freq=0: only the final test
        rows = list(csv.DictReader(file))
    assert rows and all(row["val_accuracy"] == "NA" and row["accuracy"] != "NA" for row in rows)
    written = (tmp_path / "run" / "config.toml").read_text()
    assert 'recipe = "reference"' in written and 'lr_schedule = "piecewise"' in written
    assert 'head = "mlp_sr"' in written


def test_a_reference_recipe_on_a_users_model_is_never_looked_up_by_its_name():
    import keras

    import keras_local as kl
    from keras_local.recipes import OWN_MODEL

    def named(name):
        """A small model that happens to share a keras_local network's name."""
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
        x = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
        outputs = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
        return keras.Model(inputs, outputs, name=name)

    # keras_local's ResNet-110 recipe for Associated Learning decays the weights by 1e-4; its generic one does not.
    assert kl.get_method("associated").reference_recipe("resnet110").settings["weight_decay"] == 1e-4
    generic = kl.get_method("associated").reference_recipe(OWN_MODEL).settings["weight_decay"]
    with pytest.warns(UserWarning, match="recipe='reference' on your own model 'resnet110': associated's generic"):
        model = kl.build_model(named("resnet110"), "associated", num_blocks=2, recipe="reference", build=False)
    assert {block.weight_decay for block in model.blocks} == {generic} == {0.0}
    # InfoPro's ResNet-32 split indexes keras_local's ResNet-32 units; a user's "resnet32" is split evenly.
    with pytest.warns(UserWarning, match="'resnet32'"):
        infopro = kl.build_model(named("resnet32"), "infopro", num_blocks=2, recipe="reference", build=False)
    assert [len(block.units) for block in infopro.blocks] == [1, 1]
    with pytest.warns(UserWarning, match="'keras.applications.ResNet50'"):
        config = load_config(
            overrides=['recipe="reference"', 'method="infopro"', 'architecture="keras.applications.ResNet50"']
        )
    assert config["split"] == "even"

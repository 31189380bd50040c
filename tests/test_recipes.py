"""Every shipped recipe is a valid run configuration, and a few train for real."""

import json
import pathlib

import pytest

from keras_local import cli
from keras_local.builder import build_model_from_config
from keras_local.config import load_config
from keras_local.methods import method_option_names

ROOT = pathlib.Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(str(path.relative_to(ROOT)) for path in ROOT.rglob("*.toml"))
SHARED = ROOT.parents[1] / "shared" / "data" / "tfds"
SHAPES = {"cifar10": ((32, 32, 3), 10), "cifar10_jpeg": ((32, 32, 3), 10), "cifar100": ((32, 32, 3), 100),
          "mnist": ((28, 28, 1), 10), "tiny_imagenet": ((64, 64, 3), 200)}
TINY = ["--set", "dataset=cifar10_sample", "--set", "train_examples=64", "--set", "test_examples=64",
        "--set", "batch_size=32", "--set", "eval_batch_size=64", "--set", "epochs=1", "--set", "verbose=0"]


def test_the_paper_recipes_exist():
    assert len([r for r in RECIPES if r.startswith("bwbpf/")]) == 28
    assert len([r for r in RECIPES if r.startswith("backlink/")]) == 31
    assert len([r for r in RECIPES if r.startswith("associated/")]) == 24
    assert len([r for r in RECIPES if r.startswith("infopro/")]) == 24
    assert len([r for r in RECIPES if r.startswith("dgl/")]) == 3
    assert len([r for r in RECIPES if r.startswith("predsim/")]) == 1


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.startswith("tuning/")])
def test_tuning_recipe_declares_a_search_space(recipe):
    from keras_local import tuning

    config = load_config(ROOT / recipe, method_option_names=method_option_names())
    assert config["search"]
    input_shape, num_classes = SHAPES[config["dataset"]]
    tuning.hypermodel_from_config(config, input_shape, num_classes)  # validates the whole space


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_resolves_and_its_model_assembles(recipe):
    config = load_config(ROOT / recipe, method_option_names=method_option_names())
    input_shape, num_classes = SHAPES[config["dataset"]]
    model = build_model_from_config(config, input_shape, num_classes, build=False)
    if config["num_blocks"] == "auto":  # the method's own split (Associated Learning's components)
        assert len(model.blocks) == len(model.label_blocks) == (2 if config["architecture"] == "mlp" else 4)
        return
    expected = config["num_blocks"] if config["cuts"] is None else len(config["cuts"]) + 1
    extra = 1 if model.method.separate_output_block else 0
    assert len(model.blocks) == expected + extra


@pytest.mark.parametrize("recipe", [
    "backlink/resnet32_cifar10_k4_conv.toml",     # backward links, conv heads
    "backlink/alexnet_cifar10_k8_linear.toml",    # dense units, output layer alone in the last block
    "bwbpf/resnet50_cifar10_k4.toml",             # bottleneck units, separate output block
])
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
    argv = ["train", "--config", str(ROOT / recipe), "--run-dir", str(tmp_path), *dataset,
            "--set", f"data_dir={SHARED}", "--set", "epochs=1", "--set", "train_examples=512",
            "--set", "test_examples=512", "--set", "verbose=0"]
    assert cli.main(argv) == 0

"""Names and files from before the move of each method's parts into its folder (0.4) keep working."""

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_local as kl
from keras_local.methods import associated, dgl, infopro, predsim

MOVED = [
    ("keras_local.heads", "DGLHead", dgl.DGLHead),
    ("keras_local.heads", "PredSimHead", predsim.PredSimHead),
    ("keras_local.heads", "InfoProHead", infopro.InfoProHead),
    ("keras_local.heads", "Bridge", associated.Bridge),
    ("keras_local.losses", "PredSimLoss", predsim.PredSimLoss),
    ("keras_local.losses", "InfoProLoss", infopro.InfoProLoss),
    ("keras_local.losses", "similarity_matrix", predsim.similarity_matrix),
    ("keras_local.splitting", "infopro_cuts", infopro.infopro_cuts),
    ("keras_local.architectures", "dgl_cnn", dgl.networks.dgl_cnn),
]


@pytest.mark.parametrize("module, name, moved", MOVED)
def test_an_old_import_path_warns_with_the_new_one_and_gives_the_same_object(module, name, moved):
    import importlib

    old_module = importlib.import_module(module)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert getattr(old_module, name) is moved
    assert len(caught) == 1 and caught[0].category is DeprecationWarning
    assert f"{module}.{name} moved to {moved.__module__.rsplit('.', 1)[0]}" in str(caught[0].message)
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchHead'"):
        _ = old_module.NoSuchHead


def test_a_file_saved_before_the_move_loads(tmp_path):
    """A `.keras` file names each layer's module: files written before 0.4 name
    `keras_local.heads` for DGL's heads; they load by their registered name."""
    model = kl.build_model("resnet8", "dgl", num_blocks=2, input_shape=(8, 8, 3), num_classes=3)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    model.predict(x, verbose=0)
    model.save(tmp_path / "new.keras")

    def old_modules(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DGLHead":
                node["module"] = "keras_local.heads"
            return {key: old_modules(value) for key, value in node.items()}
        return [old_modules(item) for item in node] if isinstance(node, list) else node

    with zipfile.ZipFile(tmp_path / "new.keras") as source, zipfile.ZipFile(tmp_path / "old.keras", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                data = json.dumps(old_modules(json.loads(data))).encode()
            target.writestr(item, data)
    with zipfile.ZipFile(tmp_path / "old.keras") as old:
        assert '"module": "keras_local.heads", "class_name": "DGLHead"' in old.read("config.json").decode()
    loaded = keras.saving.load_model(tmp_path / "old.keras")
    assert isinstance(loaded.blocks[0].head, dgl.DGLHead)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_predsim_loss_saved_with_its_unused_num_classes_loads():
    config = {**predsim.PredSimLoss(0.5).get_config(), "num_classes": 10}  # as saved before 0.4
    assert predsim.PredSimLoss.from_config(config).beta == 0.5


def test_a_method_declaring_its_search_the_old_way_warns_and_gets_a_search_space():
    from keras_local.methods.base import Method, SearchSpace

    with pytest.warns(DeprecationWarning, match="declare search = SearchSpace"):

        class OldStyle(Method):
            name = "old_style"
            search_defaults = {"alpha": [0.0, 1.0]}
            searched_tail_option = "alpha"

    assert OldStyle.search == SearchSpace(options={"alpha": [0.0, 1.0]}, tail_option="alpha")


def test_a_method_written_with_heads_classify_or_head_classifies_gets_head_scores_with_a_warning():
    from keras_local.methods.base import Method

    with pytest.warns(DeprecationWarning, match="heads_classify are deprecated .* define head_scores"):

        class Codes(Method):
            heads_classify = False

    with pytest.warns(DeprecationWarning, match="head_classifies are deprecated"):

        class Embeddings(Method):
            def head_classifies(self, index, num_blocks):
                return index == num_blocks - 1

    assert [Codes().head_scores(k, 3) for k in range(3)] == ["decoded"] * 3
    assert [Embeddings().head_scores(k, 3) for k in range(3)] == [None, None, "logits"]
    assert Method().head_scores(0, 3) == "logits"

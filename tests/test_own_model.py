"""The user's own Keras model, cut at its cut points and trained block-wise."""

import json

import keras
import numpy as np
import pytest
from conftest import applied_gradients, assert_close, local_loss_gradients, set_arguments, tiny_batch
from own_models import residual_model, token_model

import keras_local as kl
from keras_local import cli

INSIDE_BLOCKS = [
    "res1_conv1",
    "res1_relu1",
    "res1_conv2",
    "res2_conv1",
    "res2_relu1",
    "res2_conv2",
    "res2_shortcut",
    "mix_a",
    "mix_b",
]


def test_cut_points_exclude_every_point_inside_a_residual_block_or_a_concatenation():
    assert kl.cut_points(residual_model()) == [
        "stem",
        "stem_bn",
        "stem_relu",
        "res1_add",
        "res1_out",
        "res2_add",
        "res2_out",
        "mix_concat",
        "pool",
    ]
    model = kl.build_model(residual_model(), "gll", num_blocks=2)
    units = [unit for block in model.blocks for unit in block.units]
    # Every layer inside a skip sits in one unit with the layers that close the skip.
    owner = {layer.name: index for index, unit in enumerate(units) for layer in unit.layers}
    assert owner["res1_conv1"] == owner["res1_conv2"] == owner["res1_add"]
    assert owner["res2_shortcut"] == owner["res2_conv2"] == owner["res2_add"]
    assert owner["mix_a"] == owner["mix_b"] == owner["mix_concat"]
    assert not set(INSIDE_BLOCKS) & set(kl.cut_points(residual_model()))
    # A shared layer is never cut between its calls; a Sequential cuts after every layer.
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="between")(shared(inputs))
    assert kl.cut_points(keras.Model(inputs, keras.layers.Dense(2, name="out")(shared(x)))) == ["shared"]
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")])
    assert kl.cut_points(sequential) == ["a"]


def test_units_classifier_and_cuts_by_name():
    model = kl.build_model(residual_model(), "gll", cuts=["res1_out", "res2_out"])
    assert [len(block.units) for block in model.blocks] == [5, 2, 1]
    assert [layer.name for layer in model.output_head.layers[1:]] == ["pool", "logits"]  # the user's classifier
    assert model.blocks[-1].head is model.output_head and model.output_head.outputs[0].shape[-1] == 5
    user = residual_model()
    backbone = keras.Model(user.input, user.get_layer("res2_out").output)
    model = kl.build_model(backbone, "gll", num_blocks=2, num_classes=3)  # no classifier: the method's head
    assert isinstance(model.output_head, kl.heads.LinearHead) and model.output_head.num_classes == 3


def test_gll_block_gets_only_its_own_local_loss_on_a_user_model():
    model = kl.build_model(residual_model(), "gll", cuts=["res1_out", "res2_out"])
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = tiny_batch()
    reference, leaked = local_loss_gradients(model, x, y)
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])
        if leaked[k] is not None:  # block k+1's loss does reach block k without the cut
            assert max(np.abs(g).max() for g in leaked[k]) > 1e-4


def test_backbone_model_is_the_users_model_with_the_trained_weights():
    user = residual_model()
    model = kl.build_model(user, "gll", num_blocks=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = tiny_batch(16)
    before = user.predict(x, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    backbone = model.backbone_model()
    assert backbone.name == "residual"
    assert [layer.name for layer in backbone.layers] == [layer.name for layer in user.layers]
    np.testing.assert_allclose(backbone.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(user.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)  # trained in place
    assert np.abs(before - model.predict(x, verbose=0)).max() > 1e-4


def test_a_user_models_round_trip_keeps_its_graph_and_every_blocks_optimizer_state(tmp_path):
    """What a user's model adds to the method contract's round trip (tests/test_method_contract.py):
    its replayed graph, a backward link into one of its blocks, its export."""
    model = kl.build_model(
        residual_model(), "backlink", num_blocks=3, block_order="sequential", propagation_length=1, alpha=0.5
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    x, y = tiny_batch(16)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    for a, b in zip(model.blocks, loaded.blocks):
        assert int(b.optimizer.iterations) == int(a.optimizer.iterations) > 0
        for u, v in zip(a.optimizer.variables, b.optimizer.variables):
            np.testing.assert_array_equal(u.numpy(), v.numpy())
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert [layer.name for layer in loaded.backbone_model().layers] == [layer.name for layer in residual_model().layers]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    inference = kl.export_inference_model(loaded, tmp_path / "inference.keras")
    np.testing.assert_allclose(inference.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "method, block_order",
    [
        ("gll", "together"),
        ("gll", "sequential"),
        ("bp", "together"),
        ("bwbpf", "pipelined"),
        ("dgl", "together"),
        ("predsim", "together"),
        ("infopro", "sequential"),
        ("associated", "together"),
    ],
)
def test_every_method_trains_a_user_model(method, block_order):
    model = kl.build_model(residual_model(), method, num_blocks=2, block_order=block_order)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    x, y = tiny_batch(16)
    logs = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert all(np.isfinite(values[-1]) for values in logs.values())


def test_token_features_get_token_heads_and_image_heads_refuse():
    model = kl.build_model(token_model(), "gll", num_blocks=2, head="conv", num_classes=5)
    assert model.blocks[0].head.token_pooling == "mean"
    model.compile(optimizer="sgd")
    x, y = tiny_batch(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    tokens = np.random.default_rng(0).normal(size=(2, 4, 8)).astype("float32")
    head = kl.heads.LinearHead(5, token_pooling="class")
    np.testing.assert_allclose(head(tokens), head.dense(tokens[:, 0]), atol=1e-6)
    head.token_pooling = "mean"
    np.testing.assert_allclose(head(tokens), head.dense(tokens.mean(axis=1)), atol=1e-6)
    with pytest.raises(ValueError, match="InfoPro's head reconstructs the image from a feature map"):
        kl.build_model(token_model(), "infopro", num_blocks=2, num_classes=5)


def _two_in():
    a, b = keras.Input((4,)), keras.Input((4,))
    return keras.Model([a, b], keras.layers.Add()([a, b]), name="two_in")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed")
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize(
    "make, options, message",
    [
        (_two_in, {}, "Model 'two_in' has 2 input(s) and 1 output(s)"),
        (Subclassed, {}, "subclassed model without a functional graph"),
        (lambda: keras.Sequential([keras.layers.Dense(3)], name="unbuilt"), {}, "pass input_shape="),
        (residual_model, {"cuts": ["res1_conv2"]}, "the nearest cut points are 'stem_relu' and 'res1_add'"),
        (residual_model, {"cuts": ["stem_rel"]}, "Did you mean 'stem_relu'"),
        (
            residual_model,
            {"cuts": ["pool"]},
            "is in its classifier, which stays whole as the output head; the last cut point before it is 'mix_concat'",
        ),
        (
            lambda: keras.applications.MobileNetV2(weights=None, alpha=0.35, include_top=False),
            {},
            "with undefined dimensions: pass input_shape",
        ),
        (residual_model, {"input_shape": (16, 16, 3)}, "input_shape=(16, 16, 3) does not fit model 'residual'"),
        (residual_model, {"num_classes": 10}, "ends in a classifier of 5 classes (pool, logits) but num_classes=10"),
        (
            lambda: keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(3, activation="softmax")],
                name="probabilities",
            ),
            {},
            "ends in a softmax",
        ),
        (lambda: "keras.applications.NoSuchNet", {}, "keras.applications has no model factory 'NoSuchNet'"),
    ],
)
def test_bad_models_are_refused_in_one_line(make, options, message):
    with pytest.raises(ValueError) as error:
        kl.build_model(make(), "gll", num_blocks=1, **options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_model_with_two_outputs_is_refused():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)], name="two_out")
    with pytest.raises(ValueError, match="has 1 input\\(s\\) and 2 output\\(s\\)"):
        kl.cut_points(model)


def test_a_list_of_layers_and_a_nested_model_are_cut_like_a_sequential():
    layers = [
        keras.layers.Conv2D(4, 3, name="c1"),
        keras.layers.ReLU(name="r1"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(5, name="fc"),
    ]
    model = kl.build_model(layers, "gll", num_blocks=2, input_shape=(8, 8, 3))
    assert [[u.layers[-1].name for u in block.units] for block in model.blocks] == [["c1"], ["r1"]]
    assert model.output_head.layers[-1].name == "fc" and model.backbone_model().layers[-1].name == "fc"
    inner = residual_model()
    inputs = keras.Input((8, 8, 3))
    wrapped = keras.Model(inputs, inner(inputs), name="wrapped")
    assert kl.cut_points(wrapped) == kl.cut_points(inner)  # the nested model opens into its layers


@pytest.mark.large  # a whole run of the CLI
def test_cli_trains_a_model_named_by_module_and_function(tmp_path):
    settings = ('architecture="own_models:residual_model"', 'cuts=["res1_out"]', "train_examples=64")
    settings += ("test_examples=64", "batch_size=32", "epochs=1", "verbose=0")
    argv = ["train", "--run-dir", str(tmp_path), *set_arguments(*settings)]
    assert cli.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_blocks"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert cli.main(["train", "--run-dir", str(tmp_path / "bad"), "--set", 'architecture="own_models:nothing"']) == 2


@pytest.mark.slow  # a keras.applications network on real batches (the sweep, tests/test_model_zoo.py, covers it in CI)
def test_keras_applications_model_trains_block_wise_on_cifar10_sample():
    train = kl.data.load_dataset("cifar10_sample", "train", batch_size=32, training=True, num_examples=64)
    model = kl.build_model(
        "keras.applications.MobileNetV2",
        "gll",
        num_blocks=3,
        split="balanced",
        architecture_options={"alpha": 0.35},
        block_order="sequential",
    )
    assert model.backbone_name.startswith("mobilenetv2_0.35")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    logs = model.fit(train, epochs=1, verbose=0).history
    assert {"acc_0", "acc_1", "accuracy"} <= set(logs) and np.isfinite(logs["loss"][-1])
    images, _ = next(iter(train))
    np.testing.assert_allclose(model.backbone_model()(images), model(images), atol=1e-5)


@pytest.mark.slow  # keras-hub backbones, whole runs (the sweep, tests/test_model_zoo.py, covers them in CI)
def test_keras_hub_backbones_train_block_wise_from_a_config(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    train = kl.data.load_dataset("cifar10_sample", "train", batch_size=32, training=True, num_examples=64)
    images, _ = next(iter(train))
    vit = keras_hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64
    )
    assert kl.cut_points(vit)[2:] == [
        "transformer_block_1",
        "transformer_block_2",
        "transformer_block_3",
        "transformer_block_4",
    ]
    resnet = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    for backbone, pooling in ((vit, "class"), (resnet, "mean")):
        model = kl.build_model(backbone, "gll", num_blocks=2)
        assert model.output_head.token_pooling == pooling
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        logs = model.fit(train, epochs=1, verbose=0).history
        assert np.isfinite(logs["loss"][-1]) and "acc_0" in logs
        np.testing.assert_allclose(model.backbone_model(include_top=False)(images), backbone(images), atol=1e-4)
    model.save(tmp_path / "resnet.keras")
    vit_model = kl.build_model(vit, "backlink", num_blocks=2, propagation_length=1)
    vit_model.compile(optimizer="sgd")
    vit_model.fit(train, epochs=1, verbose=0)
    vit_model.save(tmp_path / "vit.keras")
    loaded = keras.saving.load_model(tmp_path / "vit.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), vit_model.predict(images, verbose=0), atol=1e-5)
    np.testing.assert_allclose(loaded.backbone_model(include_top=False)(images), vit(images), atol=1e-4)


def test_the_models_input_dtype_is_kept():
    inputs = keras.Input((8, 8, 3), dtype="uint8", name="raw")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    outputs = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    model = kl.build_model(keras.Model(inputs, outputs, name="raw_pixels"), "gll", num_blocks=2)
    assert model.blocks[0].units[0].inputs[0].dtype == "uint8"
    assert model.backbone_model().inputs[0].dtype == "uint8"


def _classifier_after_pooling(form):
    """A small convolutional model ending in one of the classifier forms of keras.applications."""
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv_b")(x)
    if form == "pointwise":  # MobileNetV3: pooling keeps the dims, 1x1 convolutions, then Flatten
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
        x = keras.layers.Conv2D(8, 1, name="pre_logits")(x)
        x = keras.layers.Activation("relu", name="pre_logits_relu")(x)
        x = keras.layers.Dropout(0.2, name="dropout")(x)
        x = keras.layers.Conv2D(5, 1, name="logits_conv")(x)
        outputs = keras.layers.Flatten(name="flatten")(x)
    else:  # VGG: Flatten, then dense layers
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(8, activation="relu", name="fc1")(x)
        outputs = keras.layers.Dense(5, name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"classifier_{form}")


@pytest.mark.parametrize("form, classifier", [("pointwise", "pool"), ("dense", "flatten")])
def test_every_keras_classifier_form_is_kept_as_the_output_head(form, classifier):
    user = _classifier_after_pooling(form)
    model = kl.build_model(user, "gll", num_blocks=2)
    assert kl.graph.is_functional(model.output_head)  # the user's classifier, not a head keras_local added
    assert model.output_head.layers[1].name == classifier
    assert [unit.layers[-1].name for block in model.blocks for unit in block.units] == ["conv_a", "conv_b"]
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = tiny_batch(8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(model.backbone_model().predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(user.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_backbone_given_back_without_the_added_head_says_so():
    user = residual_model()
    backbone = keras.Model(user.input, user.get_layer("mix_concat").output, name="features")
    model = kl.build_model(backbone, "gll", num_blocks=2, num_classes=5)
    x, _ = tiny_batch(4)
    with pytest.warns(UserWarning, match="'features' has no classifier of its own") as caught:
        features = model.backbone_model()
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert features.output.shape == (None, 4, 4, 8)
    with_head = model.backbone_model(include_top=True)
    np.testing.assert_allclose(with_head.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@keras.saving.register_keras_serializable(package="tests")
class SplitChannels(keras.layers.Layer):
    """Returns (first half, second half) of the channels: a layer with two outputs."""

    def call(self, x):
        half = x.shape[-1] // 2
        return x[..., :half], x[..., half:]


@pytest.mark.parametrize("read", [0, 1])
def test_a_unit_outputs_the_output_of_a_several_output_layer_that_the_model_reads(read, tmp_path):
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = SplitChannels(name="split")(x)[read]
    x = keras.layers.Conv2D(4, 3, padding="same", name="after")(x)
    outputs = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    user = keras.Model(inputs, outputs, name="split_model")
    assert kl.cut_points(user) == ["conv", "split", "after", "pool"]
    model = kl.build_model(user, "gll", cuts=["split"])
    assert model.blocks[0].units[-1].output.shape == (None, 8, 8, 4)
    x, y = tiny_batch(4)
    np.testing.assert_allclose(model.predict(x, verbose=0), user.predict(x, verbose=0), atol=1e-6)
    model.save(tmp_path / "split.keras")
    loaded = keras.saving.load_model(tmp_path / "split.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), user.predict(x, verbose=0), atol=1e-6)


def test_the_model_output_that_is_not_a_layers_first_output_is_the_one_trained():
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    first, second = SplitChannels(name="stages")(x)  # like HGNetV2's encoder: the model returns its last stage
    user = keras.Model(inputs, second, name="last_stage")
    model = kl.build_model(user, "gll", num_blocks=2, num_classes=5)
    assert model.blocks[-1].units[-1].output.shape == (None, 8, 8, 4)
    x, _ = tiny_batch(4)
    np.testing.assert_allclose(model.backbone_model(include_top=False)(x), user(x), atol=1e-6)


def test_a_one_entry_dict_input_trains_like_a_single_input():
    inputs = {"images": keras.Input((8, 8, 3), name="images")}
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs["images"])
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(x)
    outputs = keras.layers.Dense(5, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    user = keras.Model(inputs, outputs, name="dict_input")
    assert kl.cut_points(user) == ["conv_a", "conv_b", "pool"]
    model = kl.build_model(user, "gll", num_blocks=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = tiny_batch(8)
    before = model.get_weights()
    model.fit({"images": x}, y, batch_size=8, epochs=1, verbose=0)  # batches as the user's model reads them
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights()))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    np.testing.assert_allclose(
        model.predict({"images": x}, verbose=0), user.predict({"images": x}, verbose=0), atol=1e-6
    )
    np.testing.assert_allclose(model.backbone_model()(x), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_users_model_built_in_float32_pipelines_under_a_mixed_policy(jit_compile):
    """The user's layers keep the float32 policy they were built with; the pipeline's buffers hold the
    model's compute dtype (bfloat16), and block 0's float32 output is cast into them."""
    model = kl.build_model(
        residual_model(), "gll", num_blocks=2, block_order="pipelined", dtype_policy="mixed_bfloat16"
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
    x, y = tiny_batch(8)
    logs = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert all(np.isfinite(values[-1]) for values in logs.values())

"""Every image model of keras.applications and keras-hub, built small, through keras_local's public API.

`check(name, directory)` builds the model (keras.applications with `weights=None`, logits out, at the
smallest input it accepts; a keras-hub backbone from a small config), then: `kl.cut_points`, a gll model of
K = 2-3 blocks, one training step, `backbone_model()` against the trained model, and a `.keras` save whose
reload a process that built none of the models compares (`Loader`). `tests/test_model_zoo.py` runs it;

    python tests/model_zoo.py [NAME ...]

prints the table of every model (or the named ones).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

import keras_local as kl

CLASSES = 10

# The keras.applications classifiers and the input they are built for: 32x32, or the smallest they accept.
APPLICATIONS = {
    name: {"InceptionResNetV2": 75, "InceptionV3": 75, "Xception": 71}.get(name, 32)
    for name in (
        "ConvNeXtTiny",
        "ConvNeXtSmall",
        "ConvNeXtBase",
        "ConvNeXtLarge",
        "ConvNeXtXLarge",
        "DenseNet121",
        "DenseNet169",
        "DenseNet201",
        "EfficientNetB0",
        "EfficientNetB1",
        "EfficientNetB2",
        "EfficientNetB3",
        "EfficientNetB4",
        "EfficientNetB5",
        "EfficientNetB6",
        "EfficientNetB7",
        "EfficientNetV2B0",
        "EfficientNetV2B1",
        "EfficientNetV2B2",
        "EfficientNetV2B3",
        "EfficientNetV2S",
        "EfficientNetV2M",
        "EfficientNetV2L",
        "InceptionV3",
        "MobileNet",
        "MobileNetV2",
        "MobileNetV3Small",
        "MobileNetV3Large",
        "NASNetMobile",
        "NASNetLarge",
        "ResNet50",
        "ResNet101",
        "ResNet152",
        "ResNet50V2",
        "ResNet101V2",
        "ResNet152V2",
        "VGG16",
        "VGG19",
        "Xception",
    )
}


# What CI runs of keras.applications: one model of each classifier form and input size the cutting treats
# differently (GAP keeping its dims then 1x1 convolutions, GAP then reshape, Flatten then dense layers,
# LayerNorm after pooling, 75x75 and 71x71 inputs). --run-slow runs every model of every family.
SMALLEST_OF_EACH_FAMILY = [
    f"keras.applications.{name}"
    for name in ("MobileNetV3Small", "MobileNet", "VGG16", "ConvNeXtTiny", "InceptionV3", "Xception")
]


def _resnet(hub, **differences):
    """A small keras-hub ResNet (its first stage must have 64 filters)."""
    config = dict(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
    )
    return hub.models.ResNetBackbone(**{**config, **differences})


def _resnet_encoder(hub):
    return _resnet(
        hub,
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 64, 64],
        stackwise_num_blocks=[1, 1, 1],
        stackwise_num_strides=[1, 2, 2],
    )


def _mit_encoder(hub):
    return hub.models.MiTBackbone(
        layerwise_depths=[2, 2],
        image_shape=(32, 32, 3),
        hidden_dims=[4, 8],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[8, 4],
        max_drop_path_rate=0.1,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
    )


# keras-hub's image backbones, each from a small config (after keras-hub's own tests): name -> builder.
HUB = {
    "ResNet": lambda hub: _resnet(
        hub, input_conv_filters=[16], stackwise_num_filters=[64, 32], block_type="bottleneck_block"
    ),
    "ResNetV2": lambda hub: _resnet(hub, use_pre_activation=True),
    "DenseNet": lambda hub: hub.models.DenseNetBackbone(
        stackwise_num_repeats=[2, 2, 2], growth_rate=4, image_shape=(32, 32, 3)
    ),
    "EfficientNet": lambda hub: hub.models.EfficientNetBackbone(
        stackwise_kernel_sizes=[3, 3, 3],
        stackwise_num_repeats=[1, 2, 2],
        stackwise_input_filters=[16, 16, 24],
        stackwise_output_filters=[16, 24, 32],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.0, 0.0, 0.25],
        stackwise_strides=[1, 2, 2],
        stackwise_block_types=["fused", "fused", "unfused"],
        stackwise_force_input_filters=[0, 0, 0],
        stackwise_nores_option=[False, False, False],
        width_coefficient=1.0,
        depth_coefficient=1.0,
        num_features=64,
        input_shape=(32, 32, 3),
    ),
    "MobileNet": lambda hub: hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144]],
        stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"], ["hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]],
        output_num_filters=64,
        input_activation="hard_swish",
        output_activation="hard_swish",
        input_num_filters=16,
        image_shape=(32, 32, 3),
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        squeeze_and_excite=0.5,
        last_layer_filter=48,
    ),
    "MobileNetV5": lambda hub: hub.models.MobileNetV5Backbone(
        stackwise_block_types=[["er"], ["uir", "uir"]],
        stackwise_num_blocks=[1, 2],
        stackwise_num_filters=[[24], [48, 48]],
        stackwise_strides=[[2], [2, 1]],
        stackwise_act_layers=[["relu"], ["relu", "relu"]],
        stackwise_exp_ratios=[[4.0], [6.0, 6.0]],
        stackwise_se_ratios=[[0.0], [0.0, 0.0]],
        stackwise_dw_kernel_sizes=[[0], [5, 5]],
        stackwise_dw_start_kernel_sizes=[[0], [0, 0]],
        stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
        stackwise_exp_kernel_sizes=[[3], [0, 0]],
        stackwise_pw_kernel_sizes=[[1], [0, 0]],
        stackwise_num_heads=[[0], [0, 0]],
        stackwise_key_dims=[[0], [0, 0]],
        stackwise_value_dims=[[0], [0, 0]],
        stackwise_kv_strides=[[0], [0, 0]],
        stackwise_use_cpe=[[False], [False, False]],
        image_shape=(32, 32, 3),
        stem_size=16,
        use_msfa=False,
    ),
    "CSPNet": lambda hub: hub.models.CSPNetBackbone(
        stem_filters=16,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_strides=2,
        stackwise_depth=[1, 2, 2],
        stackwise_num_filters=[16, 24, 32],
        down_growth=True,
        bottle_ratio=(0.5,) + (1.0,),
        block_ratio=(1.0,) + (0.5,),
        expand_ratio=(2.0,) + (1.0,),
        block_type="dark_block",
        stage_type="csp",
        stem_padding="same",
        image_shape=(32, 32, 3),
    ),
    "VGG": lambda hub: hub.models.VGGBackbone(
        stackwise_num_repeats=[2, 2, 2], stackwise_num_filters=[8, 16, 16], image_shape=(32, 32, 3)
    ),
    "Xception": lambda hub: hub.models.XceptionBackbone(
        stackwise_conv_filters=[[16, 16], [32, 32], [32, 32]],
        stackwise_pooling=[False, True, False],
        image_shape=(32, 32, 3),
    ),
    "HGNetV2": lambda hub: hub.models.HGNetV2Backbone(
        depths=[1, 1],
        embedding_size=32,
        hidden_sizes=[64, 128],
        stem_channels=[3, 16, 32],
        hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[[32, 16, 64, 1, 1, 3], [64, 32, 128, 1, 1, 3]],
        apply_downsample=[False, True],
        use_lightweight_conv_block=[False, False],
        out_features=["stage2"],
        image_shape=(32, 32, 3),
    ),
    "ViT": lambda hub: hub.models.ViTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, mlp_dim=32
    ),
    "DeiT": lambda hub: hub.models.DeiTBackbone(
        image_shape=(32, 32, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, intermediate_dim=32
    ),
    "ViTDet": lambda hub: hub.models.ViTDetBackbone(
        image_shape=(32, 32, 3),
        patch_size=4,
        hidden_size=8,
        num_layers=3,
        global_attention_layer_indices=[2],
        intermediate_dim=16,
        num_heads=2,
        num_output_channels=8,
        window_size=4,
    ),
    "DINOv2": lambda hub: hub.models.DINOV2Backbone(
        patch_size=14,
        num_layers=3,
        hidden_dim=16,
        num_heads=2,
        intermediate_dim=32,
        image_shape=(70, 70, 3),
        position_embedding_shape=(70, 70, 3),
    ),
    "DINOv3": lambda hub: hub.models.DINOV3Backbone(
        patch_size=16, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32, image_shape=(64, 64, 3)
    ),
    "Swin": lambda hub: hub.models.SwinTransformerBackbone(
        image_shape=(32, 32, 3), embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4
    ),
    "MiT": _mit_encoder,
    "SegFormer": lambda hub: hub.models.SegFormerBackbone(image_encoder=_mit_encoder(hub), projection_filters=16),
    "DeepLabV3": lambda hub: hub.models.DeepLabV3Backbone(
        image_encoder=_resnet_encoder(hub),
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P4",
        dilation_rates=[2, 4],
        upsampling_size=4,
        image_shape=(32, 32, 3),
    ),
}

NAMES = [f"keras.applications.{name}" for name in APPLICATIONS] + [f"keras_hub.{name}" for name in HUB]


def build(name):
    """The user's model that `name` (an entry of NAMES) stands for."""
    if name.startswith("keras.applications."):
        short = name.rsplit(".", 1)[1]
        size = APPLICATIONS[short]
        return getattr(keras.applications, short)(
            weights=None, input_shape=(size, size, 3), classes=CLASSES, classifier_activation=None
        )
    import keras_hub

    return HUB[name.split(".", 1)[1]](keras_hub)


def _images(model, count=4, seed=0):
    shape = tuple(keras.tree.flatten(model.inputs)[0].shape[1:])
    return np.random.default_rng(seed).uniform(0, 1, (count, *shape)).astype("float32")


def check(name, directory):
    """One row of the table: the model `name` through keras_local (eager steps: what is checked is the
    arithmetic, not the tracing), its `.keras` file written to `directory` with the images and the
    predictions its reload must give back (`load_saved`)."""
    keras.utils.clear_session(free_memory=True)
    started = time.time()
    row = {"model": name}
    model = build(name)
    row["parameters"] = model.count_params()
    row["cut_points"] = len(kl.cut_points(model))
    local = kl.build_model(model, "gll", num_blocks=min(3, row["cut_points"] + 1))
    row["blocks"] = [len(block.units) for block in local.blocks]
    row["classifier"] = kl.graph.is_functional(local.output_head)  # the user's own, kept as the output head
    local.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)
    x = _images(model)
    history = local.fit(x, np.arange(len(x)) % CLASSES, batch_size=len(x), epochs=1, verbose=0).history
    row["trains"] = bool(np.isfinite(history["loss"][-1]))
    # The model given back against the trained one: the logits, or (a backbone) the user's model's features.
    backbone = local.backbone_model(include_top=row["classifier"])
    given = keras.tree.map_structure(lambda _: x, model.input)  # a one-entry dict of images, or the images
    trained = local(x, training=False) if row["classifier"] else model(given, training=False)
    row["equal"] = _difference(backbone(x, training=False), trained)
    # (After the calls above: a model may update batch-norm statistics when called, as SegFormer's fuse does.)
    path = os.path.join(directory, name.replace(".", "_"))
    local.save(path + ".keras")
    np.savez(path + ".npz", images=x, logits=keras.ops.convert_to_numpy(local(x, training=False)))
    row["seconds"] = round(time.time() - started, 1)
    return row


def _difference(a, b):
    """max |a - b| over the first tensors of `a` and `b`, a NaN where both hold one counting as equal (an
    untrained EfficientNetV2L at 32x32 may predict NaN in inference mode after one step, as it does after
    Keras' own `fit`); inf where only one holds a NaN."""
    a, b = (keras.ops.convert_to_numpy(keras.tree.flatten(value)[0]) for value in (a, b))
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    both = ~np.isnan(a)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def load_saved(path):
    """max |predictions of the reloaded `path` - the saved ones| (`check`'s files), or why it fails."""
    import keras_hub  # noqa: F401  (keras-hub's layers, registered for loading)

    keras.utils.clear_session(free_memory=True)
    saved = np.load(path[: -len(".keras")] + ".npz")
    try:
        loaded = keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - reported, as the table's round trip
        return f"{type(error).__name__}: {str(error).strip().splitlines()[-1][:300]}"
    return _difference(loaded(saved["images"], training=False), saved["logits"])


class Loader:
    """A process that has built none of the models and loads each saved file it is given (`load_saved`)."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )

    def __call__(self, path):
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _serve_loads():
    for line in sys.stdin:
        print(json.dumps(load_saved(line.strip())), flush=True)


def main(names):
    """Prints the table of `names` (every model by default), one line per model as it is checked."""
    directory = tempfile.mkdtemp(prefix="model_zoo_")
    loader = Loader()
    print("| model | parameters | cut points | blocks | trains | equal | round trip | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names or NAMES:
        try:
            row = check(name, directory)
            row["round_trip"] = loader(os.path.join(directory, name.replace(".", "_") + ".keras"))
        except Exception as error:  # noqa: BLE001 - a table of what fails
            print(f"| {name} | | | | refused: {type(error).__name__}: {_last_line(error)} | | | |", flush=True)
            continue
        round_trip = row["round_trip"] if isinstance(row["round_trip"], str) else f"{row['round_trip']:.1e}"
        cells = [
            name,
            f"{row['parameters']:,}",
            row["cut_points"],
            "+".join(map(str, row["blocks"])),
            "yes" if row["trains"] else "NO",
            f"{row['equal']:.1e}",
            round_trip,
            row["seconds"],
        ]
        print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    loader.close()


def _last_line(error):
    return str(error).strip().splitlines()[-1][:200]


if __name__ == "__main__":
    _serve_loads() if sys.argv[1:] == ["--load"] else main(sys.argv[1:])

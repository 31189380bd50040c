"""Repairs of other libraries' layers whose saving is broken, and the check
that a model's layers can be saved.

keras_local saves a user's model layer by layer (each unit is a functional
model of the user's layers), so it relies on every layer's own `get_config`,
`from_config` and variable saving, where a library's whole-model saving may
not (keras-hub's backbones save their constructor's arguments). The defects
this exposes are repaired here, in one table (`REPAIRS`), each with the
version of the library it was found in:

- at cutting and at loading, `repair_layers` gives each affected layer a
  corrected `get_config` (or method) of its own, so any save of it writes a
  config that loads (the user's own model's saves included);
- at loading, `repair_config` corrects configs that were written wrong.

Before a `LocalModel` is saved, `check_saveable` rebuilds every layer of
another library from its config (once per distinct config) and compares its
variables with the original's: a layer that would not come back refuses the
save in one line rather than writing a file that cannot be loaded.

Example:

```python
import keras_hub

encoder = keras_hub.models.MiTBackbone(
    layerwise_depths=[1, 1], num_layers=2, hidden_dims=[4, 8], layerwise_num_heads=[1, 2],
    layerwise_sr_ratios=[8, 4], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3],
    layerwise_strides=[4, 2], image_shape=(32, 32, 3),
)
local = kl.build_model(encoder, "gll", num_blocks=2)
local.save("mit.keras")      # its encoder blocks write sr_ratio, which keras-hub 0.32's own config leaves out
keras.saving.load_model("mit.keras").count_params() == local.count_params()   # True
```
"""

import importlib
import json
import warnings

import keras

KERAS_HUB = "keras-hub 0.32.0"

# A reference to a class in a config (keras cannot serialize classes): resolved when the config loads.
CLASS_REFERENCE = "keras_local>class:"


class Repair:
    """How to repair one class's saving: `get_config(layer)` writes the
    config its constructor accepts; `methods` ({name: function(layer, ...)})
    replace broken methods; `load(config)` corrects a config written wrong.
    `found_in` names the library version, `defect` what is wrong."""

    def __init__(self, found_in, defect, get_config=None, methods=None, load=None):
        self.found_in = found_in
        self.defect = defect
        self.get_config = get_config
        self.methods = methods or {}
        self.load = load


def _base_config(layer):
    return keras.layers.Layer.get_config(layer)


def _without(*keys):
    def load(config):
        return {key: value for key, value in config.items() if key not in keys}

    return load


def _mit_encoder_config(layer):
    return {
        **_base_config(layer),
        "project_dim": layer.project_dim,
        "num_heads": layer.num_heads,
        "sr_ratio": layer.attn.sr_ratio,
        "drop_prob": layer.drop_path.rate,
        "layer_norm_epsilon": layer.norm1.epsilon,
    }


def _class_as_reference(key, attribute):
    """A get_config that writes the class held in `attribute` under `key` as a `CLASS_REFERENCE`."""

    def get_config(layer):
        held = getattr(layer, attribute)
        object.__setattr__(layer, attribute, None)
        try:
            config = type(layer).get_config(layer)
        finally:
            object.__setattr__(layer, attribute, held)
        config[key] = None if held is None else f"{CLASS_REFERENCE}{held.__module__}.{held.__qualname__}"
        return config

    return get_config


def _built_shape_as_tuple(config):
    shape = (config.get("build_config") or {}).get("input_shape")
    if isinstance(shape, list):
        return {**config, "build_config": {**config["build_config"], "input_shape": tuple(shape)}}
    return config


def _dinov2_embeddings_trained(layer):
    original = layer._interpolate_position_embeddings(
        layer.position_embeddings,
        patch_size=layer.patch_size,
        source_shape=layer.position_embedding_shape,
        target_shape=layer.image_shape,
        antialias=layer.antialias_in_interpolation,
    )
    difference = keras.ops.max(keras.ops.abs(original - layer.interpolated_position_embeddings))
    return bool(keras.ops.convert_to_numpy(difference) > keras.config.epsilon())


def _refused_keys(*keys):
    """The repair of a config that writes derived `keys` its constructor refuses: dropped on load."""
    return Repair(
        KERAS_HUB, f"get_config writes {' and '.join(keys)}, which the constructor refuses", load=_without(*keys)
    )


# (module, class name) -> Repair.
REPAIRS = {
    ("keras_hub.src.models.vit.vit_layers", "ViTPatchingAndEmbedding"): _refused_keys("num_patches", "num_positions"),
    ("keras_hub.src.models.vit.vit_layers", "ViTEncoderBlock"): _refused_keys("key_dim"),
    ("keras_hub.src.models.deit.deit_layers", "DeiTEmbeddings"): _refused_keys("num_patches", "num_positions"),
    ("keras_hub.src.models.deit.deit_layers", "DeiTEncoderBlock"): _refused_keys("key_dim"),
    ("keras_hub.src.models.mit.mit_layers", "HierarchicalTransformerEncoder"): Repair(
        KERAS_HUB,
        "get_config writes mlp (a layer) and drop_prop, which the constructor refuses, and leaves out "
        "sr_ratio and layer_norm_epsilon (MiT, SegFormer)",
        get_config=_mit_encoder_config,
    ),
    ("keras_hub.src.models.swin_transformer.swin_transformer_layers", "PatchEmbedding"): Repair(
        KERAS_HUB,
        "get_config serializes norm_layer, a class, as if it were a layer, and fails",
        get_config=_class_as_reference("norm_layer", "norm_layer"),
    ),
    ("keras_hub.src.models.swin_transformer.swin_transformer_layers", "SwinTransformerStage"): Repair(
        KERAS_HUB,
        "get_config serializes downsample, a class, as if it were a layer, and fails",
        get_config=_class_as_reference("downsample", "_downsample_cls"),
    ),
    ("keras_hub.src.models.deeplab_v3.deeplab_v3_layers", "SpatialPyramidPooling"): Repair(
        KERAS_HUB,
        "build concatenates a tuple to its input shape, which a loaded config holds as a list",
        load=_built_shape_as_tuple,
    ),
    ("keras_hub.src.models.dinov2.dinov2_layers", "DINOV2Embedding"): Repair(
        KERAS_HUB,
        "saving keeps trained position embeddings only when their change sums to more than epsilon; "
        "a change of any sign is kept here",
        methods={"_is_interpolated_position_embeddings_updated": _dinov2_embeddings_trained},
    ),
}


def _repair_of(layer):
    return REPAIRS.get((type(layer).__module__, type(layer).__name__))


def repair_layers(layer):
    """Gives `layer` and every layer inside it that `REPAIRS` names its
    repaired `get_config` and methods (on the instance; the class is left
    alone). Returns `layer`."""
    for inner in layer._flatten_layers(include_self=True, recursive=True):
        repair = _repair_of(inner)
        if repair is None or getattr(inner, "_keras_local_repaired", False):
            continue
        # object.__setattr__: a plain instance attribute, which Keras' layer tracking would otherwise wrap.
        if repair.get_config is not None:
            object.__setattr__(inner, "get_config", lambda inner=inner, repair=repair: repair.get_config(inner))
        for name, method in repair.methods.items():
            object.__setattr__(inner, name, lambda *args, inner=inner, method=method, **kwargs: method(inner))
        object.__setattr__(inner, "_keras_local_repaired", True)
    return layer


def repair_config(serialized):
    """A serialized piece of a user's model with every config that `REPAIRS`
    knows to be written wrong corrected, so it loads."""
    if isinstance(serialized, list):
        return [repair_config(item) for item in serialized]
    if not isinstance(serialized, dict):
        return serialized
    repaired = {key: repair_config(value) for key, value in serialized.items()}
    repair = REPAIRS.get((repaired.get("module"), repaired.get("class_name")))
    if repair is not None and repair.load is not None and isinstance(repaired.get("config"), dict):
        corrected = repair.load({**repaired["config"], "build_config": repaired.get("build_config")})
        repaired["build_config"] = corrected.pop("build_config")
        repaired["config"] = corrected
    return repaired


def _class_references(serialized, found=None):
    """{reference: class} for every `CLASS_REFERENCE` string in `serialized` (keras and keras-hub classes only)."""
    found = {} if found is None else found
    if isinstance(serialized, dict):
        for value in serialized.values():
            _class_references(value, found)
    elif isinstance(serialized, list):
        for value in serialized:
            _class_references(value, found)
    elif isinstance(serialized, str) and serialized.startswith(CLASS_REFERENCE):
        module, _, name = serialized[len(CLASS_REFERENCE) :].rpartition(".")
        if module.split(".")[0] not in ("keras", "keras_hub"):
            raise ValueError(f"A saved config refers to class {module}.{name}, outside keras and keras-hub.")
        found[serialized] = getattr(importlib.import_module(module), name)
    return found


def restore_layer(serialized):
    """A layer (a unit, a head) from its serialized config, repaired first
    (`repair_config`) and given its repaired methods (`repair_layers`)."""
    serialized = repair_config(serialized)
    with keras.saving.custom_object_scope(_class_references(serialized)):
        layer = keras.saving.deserialize_keras_object(serialized)
    if not isinstance(layer, keras.layers.Layer):
        return layer
    repair_layers(layer)
    if isinstance(layer, keras.Model) and any(map(_foreign, getattr(layer, "layers", []))):
        _called_once(layer, layer.inputs[0].shape, layer.inputs[0].dtype)
    return layer


def _called_once(layer, shape, dtype):
    """Calls `layer` on zeros of `shape` (one example): a layer of another library may make its variables
    only when it really runs, not when a loading model traces it (keras-hub 0.32's Swin PatchEmbedding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer(keras.ops.zeros((1, *shape[1:]), dtype=dtype), training=False)


def _foreign(layer):
    """Whether `layer` comes from another library than keras and keras_local."""
    return type(layer).__module__.split(".")[0] not in ("keras", "keras_local")


_checked = {}  # config as JSON -> None (it loads) or why not


def check_saveable(units, name):
    """Raises a one-line ValueError where a layer of another library in
    `units` (functional models of a user's layers) would not come back from
    a `.keras` file: its config fails to write or to load, or the layer it
    loads holds variables of other shapes."""
    for unit in units:
        for layer in unit.layers:
            reason = _reload_problem(layer) if _foreign(layer) else None
            if reason is not None:
                raise ValueError(
                    f"Cannot save {name!r}: layer {layer.name!r} ({type(layer).__module__}.{type(layer).__name__}) "
                    f"would not load back from a .keras file ({reason}). keras_local repairs the defects it "
                    f"knows (keras_local.repairs.REPAIRS); save the weights with save_weights() instead."
                )


def _reload_problem(layer):
    try:
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer), default=str))
    except Exception as error:  # noqa: BLE001 - a library's get_config may fail in any way
        return f"its get_config fails: {type(error).__name__}: {_summary(error)}"
    key = json.dumps({**config, "config": {**config.get("config", {}), "name": None}}, sort_keys=True, default=str)
    if key not in _checked:
        _checked[key] = _rebuild_problem(layer, config)
    return _checked[key]


def _rebuild_problem(layer, config):
    try:
        with keras.device("cpu"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # what a library warns while rebuilding its layer
            rebuilt = restore_layer(config)
    except Exception as error:  # noqa: BLE001
        return f"its config does not load: {type(error).__name__}: {_summary(error)}"
    built_shape = (config.get("build_config") or {}).get("input_shape")
    if built_shape is not None and len(rebuilt.weights) != len(layer.weights):
        try:  # a layer that makes its variables when first called, as a loading block calls it
            _called_once(rebuilt, built_shape, layer.compute_dtype)
        except Exception as error:  # noqa: BLE001
            return f"the layer its config loads cannot be called: {type(error).__name__}: {_summary(error)}"
    shapes = [tuple(v.shape) for v in layer.weights]
    rebuilt_shapes = [tuple(v.shape) for v in rebuilt.weights]
    if sorted(shapes) != sorted(rebuilt_shapes):
        return f"its config rebuilds {len(rebuilt_shapes)} variables of other shapes than its {len(shapes)}"
    return None


def _summary(error):
    """The last line of `error`'s message (Keras puts the innermost cause there)."""
    text = str(error).strip().splitlines()
    return text[-1][:200] if text else type(error).__name__

"""Run configurations: defaults, TOML recipes and `key=value` overrides.

A configuration is a flat dict. `load_config` starts from `DEFAULTS`,
applies the method's reference recipe when `recipe = "reference"`
(`keras_local.recipes`), then a TOML file, then `--set key=value`
overrides, and rejects unknown keys and wrongly typed values before
anything is built or trained.

Example:

```python
config = load_config("recipes/gll_resnet32_cifar10.toml", ["epochs=5", "num_blocks=8"])
config["epochs"]      # 5
```
"""

import difflib
import tomllib

from keras_local.block import Block
from keras_local.block_order import BLOCK_ORDERS
from keras_local.methods import get_method
from keras_local.own_model import is_model_spec
from keras_local.precision import DTYPE_POLICIES
from keras_local.recipes import check_recipe, recipe_architecture
from keras_local.splitting import SPLITS, cut_items, parse_cuts

DEFAULTS = {
    # model
    "architecture": "resnet20",
    "method": "gll",
    "num_blocks": 4,
    "cuts": None,
    "split": "even",
    "head": None,  # the method's default head
    "method_options": {},
    "architecture_options": {},
    # "shared": these settings as given; "reference": the method's own recipe under the file and --set
    # (Method.reference_recipe: optimizer, schedule, weight decay, batch, epochs, head, options).
    "recipe": "shared",
    # block order and placement
    "block_order": "together",
    "devices": None,
    # ["host:port", ...]: TensorFlow servers (`keras-local serve`) to put blocks on; devices defaults to
    # one worker per block group (keras_local.cluster)
    "remote_workers": None,
    # data
    "dataset": "cifar10_sample",
    "data_dir": None,
    "train_split": "train",
    "test_split": "test",
    "train_examples": None,
    "test_examples": None,
    "batch_size": 128,
    "eval_batch_size": 256,
    # optimisation
    "epochs": 6,
    # Evaluate on the test split every this many epochs during training (0: only at the end).
    "validation_freq": 1,
    "optimizer": "sgd",
    "learning_rate": 0.05,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 5e-4,
    # "all" (PyTorch's coupled decay on every variable) or "backbone_kernels" (units' kernels only).
    "weight_decay_scope": "all",
    # Keras' dtype policy of the model: "float32", "mixed_float16" or "mixed_bfloat16" (keras_local.precision).
    "dtype_policy": "float32",
    # XLA: true, false or "auto" (Keras' default: on where a GPU is and no distribution strategy); with the
    # sequential or pipelined block order, or blocks on several devices, each block is its own XLA program
    # (keras_local.compilation).
    "jit_compile": "auto",
    # "mirrored": data-parallel over every GPU of this machine in one process (tf.distribute.MirroredStrategy);
    # None: one device (or the multi-worker strategy TF_CONFIG sets up).
    "strategy": None,
    # Batch norm statistics over the global batch under a data-parallel strategy (build_model's sync_batch_norm).
    "sync_batch_norm": False,
    "lr_schedule": "cosine",
    "final_learning_rate": 0.0,
    # Linear warm-up from warmup_learning_rate to learning_rate over the first
    # warmup_epochs, then the cosine decay (InfoPro: 10 epochs from 0.01).
    "warmup_epochs": 0,
    "warmup_learning_rate": 0.01,
    # "piecewise": the learning rate is multiplied by lr_multipliers[i] once
    # lr_boundaries[i - 1] (a fraction of all training steps) is passed.
    "lr_boundaries": [0.4, 0.6, 0.8, 0.9],
    "lr_multipliers": [1.0, 0.1, 0.01, 0.001, 0.0005],
    "seed": 0,
    # outputs
    "run_dir": None,
    "tensorboard": False,
    "verbose": 2,  # Keras' fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch
    # Save the training state (weights, every block's optimizer) every this many batches and at every
    # epoch end (0: epoch ends only); a re-run of an interrupted command resumes from it.
    "checkpoint_every": 100,
    # `keras-local tune`'s search space (keras_local.tuning.LocalHyperModel):
    # key = value (fixed), [choices] or {min, max, sampling}; keys it lacks are
    # fixed at the values above.
    "search": {},
    # Local-learning callbacks (keras_local.callbacks), e.g.
    # block_logger = true, block_early_stopping = {patience = 3}.
    "callbacks": {},
}

OPTIMIZERS = ("sgd", "adam")

WEIGHT_DECAY_SCOPES = Block.WEIGHT_DECAY_SCOPES

LR_SCHEDULES = ("cosine", "constant", "piecewise")

JIT_COMPILE = (True, False, "auto")

STRATEGIES = (None, "mirrored")

# The Python types each key accepts (None is accepted where the default is None).
_TYPES = {
    "num_blocks": (int, str),
    "batch_size": int,
    "eval_batch_size": int,
    "epochs": int,
    "seed": int,
    "verbose": int,
    "checkpoint_every": int,
    "validation_freq": int,
    "train_examples": int,
    "test_examples": int,
    "warmup_epochs": int,
    "warmup_learning_rate": float,
    "learning_rate": float,
    "final_learning_rate": float,
    "momentum": float,
    "weight_decay": float,
    "nesterov": bool,
    "tensorboard": bool,
    "sync_batch_norm": bool,
    "method_options": dict,
    "architecture_options": dict,
    "lr_boundaries": list,
    "lr_multipliers": list,
    "cuts": (list, str),
    "devices": list,
    "remote_workers": list,
    "search": dict,
    "callbacks": dict,
}


def parse_value(text):
    """A TOML value (`5`, `0.1`, `true`, `[3, 7]`, `"x"`), or the bare text as a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_method_spec(text):
    """A method and its options as benchmarks' command lines write them:
    `"backlink:alpha=0.5,propagation_length=1"` → `("backlink", {"alpha": 0.5, "propagation_length": 1})`."""
    name, _, options = text.partition(":")
    pairs = [item.partition("=") for item in options.split(",") if item]
    return name, {key: parse_value(value) for key, _, value in pairs}


def parse_overrides(overrides):
    """`["epochs=5", "alpha=0.5"]` → `{"epochs": 5, "alpha": 0.5}`."""
    parsed = {}
    for item in overrides or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {item!r}.")
        parsed[key.strip()] = parse_value(value.strip())
    return parsed


# Keys renamed since an earlier release: old name -> new name. Configs and run
# folders written with the old name keep working.
RENAMED_KEYS = {"schedule": "block_order"}


def rename_legacy_keys(values):
    """`values` with each renamed key under its current name."""
    renamed = dict(values)
    for old, new in RENAMED_KEYS.items():
        if old in renamed:
            if new in renamed:
                raise ValueError(f"Config key {old!r} is the old name of {new!r}; give only {new!r}.")
            renamed[new] = renamed.pop(old)
    return renamed


def resolve(values, method_option_names=()):
    """Merges `values` over the defaults and validates them.

    Keys that are not run settings but are in `method_option_names` go into
    `method_options` (so `--set alpha=0.5` works for methods with options).
    """

    values = rename_legacy_keys(values)
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in DEFAULTS.items()}
    recipe = values.get("recipe", DEFAULTS["recipe"])
    if not isinstance(recipe, str):
        raise ValueError(f"Config key 'recipe' has the wrong type: got {recipe!r}.")
    layers = [values]
    if check_recipe(recipe) == "reference":
        layers.insert(0, _reference_settings(values))
    for key, value in (item for layer in layers for item in layer.items()):
        if key in DEFAULTS:
            config[key] = value if not isinstance(DEFAULTS[key], dict) else {**config[key], **value}
        elif key in method_option_names:
            config["method_options"][key] = value
        else:
            raise ValueError(_unknown_key_message(key, method_option_names))
    for key, expected in _TYPES.items():
        value = config[key]
        if value is None and DEFAULTS[key] is None:
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            config[key] = value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"Config key {key!r} has the wrong type: got {value!r}.")
    for key, allowed in (
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", LR_SCHEDULES),
        ("block_order", BLOCK_ORDERS),
        ("split", SPLITS),
        ("weight_decay_scope", WEIGHT_DECAY_SCOPES),
        ("dtype_policy", DTYPE_POLICIES),
    ):
        if config[key] not in allowed:
            raise ValueError(f"Unknown {key} {config[key]!r}. Allowed: {', '.join(allowed)}.")
    for key, allowed in (("jit_compile", JIT_COMPILE), ("strategy", STRATEGIES)):
        if not any(config[key] is value or isinstance(value, str) and config[key] == value for value in allowed):
            names = ", ".join("true" if v is True else "false" if v is False else repr(v) for v in allowed)
            raise ValueError(f"Unknown {key} {config[key]!r}. Allowed: {names}.".replace("None", "none (not set)"))
    if config["verbose"] not in (0, 1, 2):
        raise ValueError(
            f"verbose must be 0 (silent), 1 (progress bar) or 2 (one line per epoch), got {config['verbose']!r}."
        )
    if config["checkpoint_every"] < 0:
        raise ValueError(
            f"checkpoint_every must be >= 0 batches (0: at epoch ends only), got {config['checkpoint_every']!r}."
        )
    if config["strategy"] == "mirrored" and config["jit_compile"] is True:
        raise ValueError(
            'jit_compile = true cannot be used with strategy = "mirrored": each block\'s update all-reduces its '
            'gradients across replicas, which an XLA program cannot do; use jit_compile = "auto" or false.'
        )
    _check_cuts(config, values)
    _check_method(config)
    workers = config["remote_workers"]
    if workers is not None and (
        not workers
        or not all(isinstance(w, str) and w.rpartition(":")[0] and w.rpartition(":")[2].isdigit() for w in workers)
    ):
        raise ValueError(f'remote_workers must list the TensorFlow servers as "host:port" strings, got {workers!r}.')
    if config["validation_freq"] < 0:
        raise ValueError(f"validation_freq must be >= 0 (0: only at the end), got {config['validation_freq']!r}.")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if config[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {config[key]!r}.")
    if config["learning_rate"] <= 0:
        raise ValueError(f"learning_rate must be > 0, got {config['learning_rate']!r}.")
    if isinstance(config["num_blocks"], str) and config["num_blocks"] != "auto":
        raise ValueError(
            f'num_blocks must be a positive integer or "auto" (the method\'s default split), '
            f"got {config['num_blocks']!r}."
        )
    boundaries, multipliers = config["lr_boundaries"], config["lr_multipliers"]
    if (
        len(multipliers) != len(boundaries) + 1
        or any(not 0 < b < 1 for b in boundaries)
        or sorted(boundaries) != boundaries
    ):
        raise ValueError(
            f"lr_boundaries={boundaries} must be increasing fractions of training in (0, 1), with "
            f"one more lr_multipliers (got {len(multipliers)})."
        )
    if config["warmup_epochs"] and (
        config["lr_schedule"] != "cosine" or not 0 < config["warmup_epochs"] < config["epochs"]
    ):
        raise ValueError(
            f'warmup_epochs={config["warmup_epochs"]!r} needs lr_schedule="cosine" and 0 < warmup_epochs < '
            f"epochs ({config['epochs']})."
        )
    if not 0 <= config["final_learning_rate"] <= config["learning_rate"]:
        raise ValueError(
            f"final_learning_rate must be in 0..learning_rate ({config['learning_rate']!r}), "
            f"got {config['final_learning_rate']!r}."
        )
    return config


def _unknown_key_message(key, method_option_names):
    """One line: the unknown key and the closest known ones."""

    known = sorted(set(DEFAULTS) | set(method_option_names))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = (
        f" Did you mean {' or '.join(repr(name) for name in close)}?"
        if close
        else (" Run settings are listed in keras_local.config.DEFAULTS; method options with `keras-local list`.")
    )
    return f"Unknown config key {key!r}.{hint}"


def _check_method(config):
    """The method, its options and a `[callbacks] method_schedule`'s values, checked by building the method."""

    method = get_method(config["method"], **config["method_options"])
    schedule = config["callbacks"].get("method_schedule")
    if not isinstance(schedule, dict) or set(schedule) != {"name", "values"}:
        return  # callbacks_from_config says what a method_schedule needs
    name, values = schedule["name"], schedule.get("values")
    if name not in type(method).options:
        raise ValueError(
            f"[callbacks] method_schedule name {name!r} is not an option of method "
            f"{config['method']!r}; its options: {', '.join(type(method).options) or 'none'}."
        )
    if not isinstance(values, list) or not values:
        raise ValueError(
            f"[callbacks] method_schedule values must be a non-empty list (one per epoch), got {values!r}."
        )
    for epoch, value in enumerate(values):
        try:
            get_method(config["method"], **{**config["method_options"], name: value})
        except ValueError as error:
            raise ValueError(f"[callbacks] method_schedule {name} = {value!r} (epoch {epoch + 1}): {error}") from None


def _check_cuts(config, values):
    """`cuts` fixes K (one more block than cuts): `num_blocks` follows it, or must agree with it.
    A user's own model (`keras_local.own_model`) may name its cut points instead of unit indices."""

    cuts = config["cuts"]
    if cuts is None:
        return
    count = len(cut_items(cuts) if is_model_spec(config["architecture"]) else parse_cuts(cuts)) + 1
    if "num_blocks" in values and config["num_blocks"] != count:
        raise ValueError(
            f"cuts={cuts!r} make {count} blocks but num_blocks={config['num_blocks']!r}; "
            f"give one of them, or make them agree."
        )
    config["num_blocks"] = count


def _reference_settings(values):
    """The reference recipe of the method (and network) that `values` name."""

    method = values.get("method", DEFAULTS["method"])
    architecture = values.get("architecture", DEFAULTS["architecture"])
    try:
        recipe = get_method(method).reference_recipe(recipe_architecture(method, architecture, architecture))
        return dict(recipe.for_dataset(values.get("dataset", DEFAULTS["dataset"])).settings)
    except NotImplementedError as error:
        raise ValueError(str(error)) from None


def load_config(path=None, overrides=(), method_option_names=()):
    """Defaults ← TOML file at `path` ← `overrides` (list of "key=value")."""
    values = {}
    if path is not None:
        try:
            with open(path, "rb") as file:
                values = tomllib.load(file)
        except FileNotFoundError:
            raise ValueError(f"Config file {str(path)!r} does not exist.") from None
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"Config file {str(path)!r} is not valid TOML: {error}.") from None
    values.update(parse_overrides(overrides))
    return resolve(values, method_option_names)


def to_toml(config):
    """Writes a flat config (and its `method_options` table) as TOML text."""

    def literal(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(literal(item) for item in value) + "]"
        if isinstance(value, dict):  # an inline table, e.g. a search range
            return "{" + ", ".join(f"{key} = {literal(item)}" for key, item in value.items()) + "}"
        return repr(value)

    lines = [
        f"{key} = {literal(value)}"
        for key, value in config.items()
        if value is not None and not isinstance(value, dict)
    ]
    for key, value in config.items():
        if isinstance(value, dict) and value:
            lines += ["", f"[{key}]"] + [f"{name} = {literal(item)}" for name, item in value.items()]
    return "\n".join(lines) + "\n"

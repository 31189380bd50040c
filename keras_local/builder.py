"""`build_model`: the one entry point from names to a built LocalModel."""

import math

from keras_local.architectures import architecture_option_names, get_architecture
from keras_local.block import Block
from keras_local.heads import HEADS, get_head, set_token_pooling
from keras_local.methods import get_method
from keras_local.methods.base import Network
from keras_local.model import LocalModel
from keras_local.own_model import is_model_spec, load_model_spec, prepare_model
from keras_local.precision import dtype_policy_scope
from keras_local.recipes import check_recipe, recipe_architecture
from keras_local.splitting import block_sizes, resolve_cuts, split_units
from keras_local.validation import check_number


def build_model(
    architecture,
    method="gll",
    *,
    num_blocks=None,
    cuts=None,
    split=None,
    head=None,
    input_shape=None,
    num_classes=None,
    weight_decay=None,
    weight_decay_scope=None,
    architecture_options=None,
    block_order="together",
    devices=None,
    name=None,
    build=True,
    recipe=None,
    dataset=None,
    sync_batch_norm=False,
    dtype_policy=None,
    **method_options,
):
    """Builds a LocalModel: `architecture`'s units cut into blocks, with heads.

    Args:
        architecture: a name from `list_architectures()`, or the user's own
            model (`keras_local.own_model`): a functional `keras.Model`
            (keras.applications, a keras-hub backbone), a `keras.Sequential`,
            a list of layers, or `"keras.applications.NAME"` /
            `"module:function"`. Its units are the pieces between its cut
            points (`kl.cut_points(model)`); its classifier, if it has one,
            is the output head; the blocks share the model's layers.
        method: a name from `list_methods()` (or a `Method` instance).
        num_blocks: K, for an even split (lower blocks get the extra units).
        cuts: explicit block boundaries (unit indices, list or "3,7,11"; for
            the user's own model also names of cut points, cutting after
            that layer); overrides `split`.
        split: how `num_blocks` cuts the network: `"even"` (the default: the same number
            of units per block) or `"balanced"` (about the same activation
            memory per block: fewer of the large early units per block), or
            InfoPro's tables for resnet32 / resnet110: `"infopro"` (K = 2, 4,
            8, 16) and `"infopro_balanced"` (InfoPro*, resnet110, K = 2, 3, 4).
        head: auxiliary head of blocks 1..K−1, a name from `list_heads()`
            (default: the method's, `linear` for most, `mlp_sr` for `dgl`).
            The last block uses the network's output head (GAP → Dense),
            except for methods with a separate output block (`bwbpf`), where
            every one of the K blocks gets a `head` and the output layer is
            `model.blocks[-1]`, a block without units. Accepted by every
            method so that a config can switch method freely (`bp` has no
            auxiliary heads and ignores it).
        input_shape: shape of one example (default: the model's own, or
            (32, 32, 3)).
        num_classes: number of classes (default: the model's classifier's,
            or 10).
        weight_decay: coupled L2 (PyTorch semantics), see `Block` (default 0).
        weight_decay_scope: `"all"` (default) or `"backbone_kernels"`, see `Block`.
        architecture_options: the architecture's own options, e.g.
            `{"stem": "cifar"}` for the bottleneck ResNets.
        block_order: `"together"`, `"sequential"` or `"pipelined"`
            (`keras_local.block_order`).
        devices: devices for the blocks, e.g. `["/gpu:0", "/gpu:1"]`
            (`keras_local.placement.place_blocks`).
        build: create the weights (False: only check the arguments and
            assemble the blocks, which is fast even for ResNet-152).
        recipe: `"reference"` takes the model keys of the method's reference
            recipe (head, split, weight decay and its scope, method options;
            `keras_local.recipes`) wherever the call leaves them unset.
        dataset: the dataset's name, for options that follow it (InfoPro's
            `image_normalization`).
        sync_batch_norm: every batch norm of the network and its heads (a
            user's model's too) normalises with the statistics of the global
            batch under a data-parallel strategy (`MirroredStrategy`,
            `MultiWorkerMirroredStrategy`: Keras' `synchronized=True`), so that
            N replicas train as one process on the whole batch.
        dtype_policy: the Keras dtype policy the layers, blocks and heads made
            here compute in (`"float32"`, `"mixed_float16"`, `"mixed_bfloat16"`;
            default: Keras' global policy). The heads' logits and every loss
            are float32; under `"mixed_float16"` `compile` gives each block a
            `LossScaleOptimizer` of its own. A user's own model keeps the
            policy its layers were made with.
        **method_options: options of the method (e.g. `alpha`).

    Example:

    ```python
    model = kl.build_model("resnet32", method="gll", num_blocks=4, head="linear",
                           input_shape=(32, 32, 3), num_classes=10)
    [len(block.units) for block in model.blocks]    # [4, 4, 4, 4]
    resnet = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10,
                                         classifier_activation=None)
    model = kl.build_model(resnet, "gll", cuts=["conv2_block3_out", "conv3_block4_out", "conv4_block6_out"])
    ```
    """
    with dtype_policy_scope(dtype_policy):  # every layer, block and head made here computes in it
        _check_removed_keywords(method_options)
        if not isinstance(sync_batch_norm, bool):
            raise ValueError(f"sync_batch_norm must be True or False, got {sync_batch_norm!r}.")
        rule = get_method(method, **method_options)
        if recipe is not None and check_recipe(recipe) == "reference":
            name = architecture if isinstance(architecture, str) else getattr(architecture, "name", "layers")
            label = recipe_architecture(rule.name, architecture, name)
            settings = rule.reference_recipe(label).model_settings()
            if isinstance(method, str):
                rule = get_method(method, **{**settings.get("method_options", {}), **method_options})
            head = settings.get("head") if head is None else head
            split = settings.get("split") if split is None else split
            weight_decay = settings.get("weight_decay") if weight_decay is None else weight_decay
            weight_decay_scope = (
                settings.get("weight_decay_scope") if weight_decay_scope is None else weight_decay_scope
            )
        method = rule
        split = "even" if split is None else split
        weight_decay = 0.0 if weight_decay is None else weight_decay
        weight_decay_scope = "all" if weight_decay_scope is None else weight_decay_scope
        head = method.default_head if head is None else head
        HEADS.get(head)
        if num_classes is not None:
            check_number("num_classes", num_classes, 2, integer=True)
        if input_shape is not None:
            input_shape = tuple(input_shape)
            if not input_shape or not all(isinstance(d, int) and d > 0 for d in input_shape):
                raise ValueError(f"input_shape must be a tuple of positive ints, got {input_shape!r}.")
        if num_blocks is not None:
            check_number("num_blocks", num_blocks, 1, integer=True)
        own = _own_model(architecture, input_shape, num_classes, architecture_options)
        if own is None:
            input_shape, num_classes = input_shape or (32, 32, 3), num_classes or 10
            options = _with_method_defaults(architecture, method, architecture_options or {})
            units = get_architecture(architecture, input_shape=input_shape, **options)
        else:
            input_shape, num_classes = own.input_shape, num_classes or own.num_classes or 10
            architecture, units, cuts = own.name, own.units, own.unit_cuts(cuts)
        if num_blocks is None and cuts is None:
            cuts = method.default_cuts(architecture, len(units))
        cuts = resolve_cuts(
            len(units),
            num_blocks,
            cuts,
            split=split,
            architecture=architecture,
            costs=activation_sizes(units, input_shape) if split == "balanced" else None,
        )
        method.validate(block_sizes(len(units), cuts))

        groups = split_units(units, cuts)
        method.configure(architecture=architecture, num_blocks=len(groups), dataset=dataset)
        unit_shapes = _unit_shapes(units, input_shape)
        features_shape = unit_shapes[-1]
        network = Network(groups, unit_shapes, tuple(input_shape), num_classes)
        decay = dict(weight_decay=weight_decay, weight_decay_scope=weight_decay_scope)
        blocks = []
        for index, group in enumerate(groups):
            block_head = method.block_head(index, architecture, num_classes)  # the method's own, if it has one
            if block_head is None and index == len(groups) - 1 and not method.separate_output_block:
                block_head = output_head(method, own, num_classes, features_shape)
            elif block_head is None and method.aux_heads:
                block_head = get_head(
                    head,
                    num_classes,
                    name_prefix=f"block{index}_head",
                    image_shape=input_shape,
                    **(method.head_options() if head == method.default_head else {}),
                )
                block_head = method.auxiliary_head(index, block_head, network)  # MAN, HPFF, AugLocal
            blocks.append(Block(group, head=block_head, **decay, name=f"block_{index}"))
        if method.separate_output_block:
            blocks.append(
                Block([], head=output_head(method, own, num_classes, features_shape), **decay, name="output_block")
            )
        for block in blocks if own is not None else ():
            set_token_pooling(block.head, own.token_pooling)
        extra_blocks = method.extra_blocks(architecture, num_classes, len(blocks))
        model = LocalModel(
            blocks,
            method=method,
            extra_blocks=extra_blocks,
            block_order=block_order,
            devices=devices,
            backbone_name=None if own is None else own.name,
            sync_batch_norm=sync_batch_norm,
            name=name or f"{architecture}_{method.name}",
        )
        if build:
            model.build((None, *input_shape))
        return model


def _check_removed_keywords(method_options):
    """A one-line error for a keyword that an earlier version took and 0.4 removed (`schedule`)."""
    if "schedule" in method_options:
        raise ValueError(
            f"build_model(schedule={method_options['schedule']!r}) was removed in keras_local 0.4 (deprecated "
            f"since 0.3): use block_order={method_options['schedule']!r}."
        )


def _own_model(architecture, input_shape, num_classes, architecture_options):
    """The user's own model prepared for cutting (`keras_local.own_model`), or None for a keras_local name."""
    if isinstance(architecture, str) and not is_model_spec(architecture):
        return None
    if is_model_spec(architecture):
        architecture = load_model_spec(
            architecture, input_shape or (32, 32, 3), num_classes or 10, architecture_options
        )
    elif architecture_options:
        raise ValueError(
            f"architecture_options={architecture_options!r} are for keras_local's networks and "
            f"model factories; a model instance is already built."
        )
    return prepare_model(architecture, input_shape, num_classes)


def output_head(method, own, num_classes, features_shape):
    """The network's output layer: the user's model's own classifier where it
    has one, else the method's output head."""
    if own is not None and own.classifier is not None:
        return own.classifier
    return method.output_head(num_classes, features_shape)


def _unit_shapes(units, input_shape):
    """The output shape of each unit, in order."""
    shape, shapes = (None, *input_shape), []
    for unit in units:
        shape = tuple(unit.compute_output_shape(shape))
        shapes.append(shape)
    return shapes


def activation_sizes(units, input_shape):
    """Elements of each unit's output for one example: a proxy of the
    activation memory a unit holds for its backward pass."""
    return [math.prod(shape[1:]) for shape in _unit_shapes(units, input_shape)]


def build_model_from_config(config, input_shape, num_classes, build=True):
    """`build_model` with the model keys of a run configuration (`keras_local.config`)."""
    return build_model(
        config["architecture"],
        method=config["method"],
        num_blocks=None if config["cuts"] is not None or config["num_blocks"] == "auto" else config["num_blocks"],
        cuts=config["cuts"],
        split=config["split"],
        head=config["head"],
        input_shape=input_shape,
        num_classes=num_classes,
        weight_decay=config["weight_decay"],
        weight_decay_scope=config["weight_decay_scope"],
        architecture_options=config["architecture_options"],
        block_order=config["block_order"],
        devices=config["devices"],
        dataset=config["dataset"],
        sync_batch_norm=config["sync_batch_norm"],
        dtype_policy=config["dtype_policy"],
        build=build,
        **config["method_options"],
    )


def _with_method_defaults(architecture, method, options):
    """The user's architecture options over the method's preferred ones,
    keeping only those the architecture accepts (e.g. AL's ELU activation)."""
    accepted = architecture_option_names(architecture)
    defaults = {key: value for key, value in method.architecture_defaults().items() if key in accepted}
    return {**defaults, **options}

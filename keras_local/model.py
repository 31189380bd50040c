"""LocalModel: a network of blocks trained block by block with `fit`."""

import contextlib
import inspect
import warnings

import keras
import tensorflow as tf

from keras_local.block import Block, single_input
from keras_local.block_order import check_block_order
from keras_local.export import backbone_model
from keras_local.graph import is_functional
from keras_local.methods import get_method, list_methods
from keras_local.optimizers import BlockOptimizers, _inner, clones_one_optimizer, resolve_block_optimizers
from keras_local.placement import device_exists, place_blocks
from keras_local.repairs import check_saveable
from keras_local.trainer import LocalTrainer


def synchronize_batch_norm(blocks):
    """Makes every BatchNormalization of `blocks` (units and heads) normalise with the global batch's
    statistics under a data-parallel strategy (Keras' `synchronized=True`)."""
    for block in blocks:
        for layer in [layer for layer in (*block.units, block.head) if layer is not None]:
            for each in [layer, *layer._flatten_layers(include_self=False, recursive=True)]:
                if isinstance(each, keras.layers.BatchNormalization):
                    each.synchronized = True


def _saved_optimizer(optimizer):
    """What a `.keras` file keeps of a block's optimizer: a LossScaleOptimizer only where its settings are
    not the defaults Keras' `compile` would make it with again."""
    inner = _inner(optimizer)
    if inner is optimizer:
        return optimizer
    defaults = inspect.signature(keras.optimizers.LossScaleOptimizer).parameters
    same = all(getattr(optimizer, key) == defaults[key].default for key in ("initial_scale", "dynamic_growth_steps"))
    return inner if same else optimizer


def _cutting_methods():
    """The registered methods whose blocks (with default options) are cut from each other."""
    return [name for name in list_methods() if get_method(name).cut_gradients]


@keras.saving.register_keras_serializable(package="keras_local")
class LocalModel(LocalTrainer, keras.Model):
    """A network cut into blocks, each trained by its own optimizer.

    `call` is plain inference: all blocks, then `inference_head` (the last
    block's head, the network's output head; for BWBPF and PredSim, whose
    output layer is a block of its own, that block's; for Associated
    Learning, the last bridge and the label path's decoders). It takes the
    images, or a one-entry dict of them. `train_step` runs one step of the method over all blocks:
    for local methods every block reads `stop_gradient` of the previous
    block's output and applies the gradient of its own (weighted) local loss
    with its own optimizer (a block whose last units the method links to the
    next block, `Method.linked_units`, once that block has sent back the
    error at its input); for a method that does not cut gradients
    (`Method.cut_gradients` False) one end-to-end gradient of the weighted
    sum of the heads' losses is split among the blocks' optimizers. Logs hold
    `loss` / `accuracy` (the output head's) and `loss_k` / `acc_k` for each
    block `model.blocks[k]` with a head.

    `block_order` orders the blocks of a step (`keras_local.block_order`):
    `"together"`, `"sequential"` (one block's activations alive at a time) or
    `"pipelined"` (block k trains on block k−1's output of the previous step;
    no data dependency between the K updates of a step). `devices` puts the
    blocks on devices (`keras_local.placement.place_blocks`).

    `block_states[k]` is `"train"`, `"frozen"` (forward only, in inference
    mode: no head, no gradient, no update) or `"idle"` (not run at all; only
    a run of last blocks can idle). `set_block_state` changes it (the
    local-learning callbacks do); `method_variable(name)` turns a numeric
    method option (BackLink's `alpha`, BWBPF's `lambda_local`, PredSim's
    `beta`, ...) into a variable that can change between steps without a
    retrace.

    Usually built with `keras_local.build_model`.

    Example:

    ```python
    model = kl.build_model("resnet20", method="gll", num_blocks=4,
                           input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    train = kl.data.load_dataset("cifar10_sample", "train", batch_size=128, training=True, num_examples=512)
    model.fit(train, epochs=1)
    model.blocks[2].optimizer.iterations   # 4: each block has its own optimizer
    ```
    """

    def __init__(
        self,
        blocks,
        method="gll",
        method_options=None,
        extra_blocks=None,
        block_order="together",
        devices=None,
        block_states=None,
        backbone_name=None,
        sync_batch_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Batch norm over the global batch under a data-parallel strategy (`synchronize_batch_norm`),
        # also for the layers that units and heads create when they are built.
        self.sync_batch_norm = bool(sync_batch_norm)
        # The name of the user's own model the blocks were cut from (`backbone_model`), if any.
        self.backbone_name = backbone_name
        if not blocks or not all(isinstance(block, Block) for block in blocks):
            raise ValueError(f"blocks must be a non-empty list of Block, got {blocks!r}.")
        if blocks[-1].head is None:
            raise ValueError("The last block must have a head: it is the network's output head.")
        self.blocks = list(blocks)
        self.method = get_method(method, **(method_options or {}))
        # Blocks the method trains besides the network's (Method.extra_blocks), one per block or none.
        self.extra_blocks = list(extra_blocks or [])
        if self.extra_blocks and len(self.extra_blocks) != len(self.blocks):
            raise ValueError(
                f"extra_blocks must be one per block ({len(self.blocks)}) or none, got {len(self.extra_blocks)}."
            )
        self.block_order = check_block_order(block_order, self.method)
        if devices is not None and tf.distribute.has_strategy():
            raise ValueError(
                f"devices={list(devices)!r} places blocks by hand, which a distribution strategy "
                f"({type(tf.distribute.get_strategy()).__name__}) cannot replicate: build the model outside "
                f"the strategy's scope, or without devices."
            )
        self.devices = None if devices is None else list(devices)
        self.block_devices = None if devices is None else place_blocks(len(self.blocks), self.devices)
        self._pipeline = None
        self._pipeline_steps = 0
        self._restored_pipeline = None  # a RunCheckpoint's pipeline state, until the buffers exist
        self.block_states = ["train"] * len(self.blocks)
        for index, state in enumerate(block_states or ()):
            self.set_block_state(index, state)
        self.method_variables = {}
        self.extra_losses = [
            keras.metrics.Mean(name=f"{self.method.extra_loss_name}_{k}") for k in range(len(self.extra_blocks))
        ]
        # Blocks whose head accuracy is logged as acc_k (none for bp: only the output).
        logged = [index for index, block in enumerate(self.blocks) if block.head is not None and self.method.aux_heads]
        self._logged_position = {index: position for position, index in enumerate(logged)}
        self.block_losses = [keras.metrics.Mean(name=f"loss_{k}") for k in logged]
        # ... and of those, the blocks whose heads score the classes (not an embedding, not a code).
        classifying = [index for index in logged if self.method.head_scores(index, len(self.blocks)) is not None]
        self._accuracy_position = {index: position for position, index in enumerate(classifying)}
        self.block_accuracies = [keras.metrics.SparseCategoricalAccuracy(name=f"acc_{k}") for k in classifying]
        # Backward links under float16 (`LocalTrainer.dropped_links`).
        num_blocks = len(self.blocks)
        linked = any(self.method.linked_units(k, num_blocks) > 0 for k in range(num_blocks - 1))
        if linked and any(block.dtype_policy.name == "mixed_float16" for block in self.blocks):
            self._dropped_links = keras.metrics.Sum(name="dropped_links")

    @property
    def output_head(self):
        return self.blocks[-1].head

    @property
    def inference_head(self):
        """The layers that turn the last block's features into the output:
        the output head, then the method's decoders (Associated Learning's
        h_L … h_1 after the last bridge)."""
        return [self.output_head, *self.method.decoders(self)]

    def backbone_model(self, include_top=None):
        """The network as a plain functional `keras.Model` sharing the trained
        weights: for a user's own model, that model's topology and layer
        names (`keras_local.export.backbone_model`)."""
        return backbone_model(self, include_top=include_top)

    # -- block states and method variables --------------------------------

    BLOCK_STATES = ("train", "frozen", "idle")

    def set_block_state(self, index, state):
        """Sets block `index` to `"train"`, `"frozen"` or `"idle"` (see the
        class doc); the next training step uses it (the step function is
        traced again once, not on every step)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.blocks):
            raise ValueError(f"Block index must be in 0..{len(self.blocks) - 1}, got {index!r}.")
        if state not in self.BLOCK_STATES:
            raise ValueError(f"Unknown block state {state!r}. Allowed: {', '.join(self.BLOCK_STATES)}.")
        if state != "train" and not self.method.cut_gradients:
            raise ValueError(
                f"Method {self.method.name!r} backpropagates one loss end to end, so its blocks cannot be "
                f"frozen or idle one at a time; use a method that cuts gradients ({', '.join(_cutting_methods())})."
            )
        states = list(self.block_states)
        states[index] = state
        idle = [k for k, value in enumerate(states) if value == "idle"]
        if idle and idle != list(range(idle[0], len(states))):
            raise ValueError(
                f"Block states {states}: only a run of last blocks can be idle "
                f"(a block after an idle one would have no input)."
            )
        if states == self.block_states:
            return
        self.block_states = states
        if self.train_function is not None:
            self.make_train_function(force=True)

    def method_options(self):
        """The method's options as plain values (a scheduled option's current value)."""
        return {
            key: float(value) if isinstance(value, tf.Variable) else value
            for key, value in self.method.get_config().items()
        }

    def method_variable(self, name):
        """A non-trainable variable holding the method's numeric option
        `name`, read by every later step (created on first call; the step
        function is traced again once). Assign to it to change the option.

        Example:

        ```python
        model = kl.build_model("resnet20", "backlink", num_blocks=4, alpha=0.5)
        model.method_variable("alpha").assign(0.25)
        ```
        """
        if name not in self.method_variables:
            value = self.method.get_config().get(name)
            if name not in self.method.schedulable:
                raise ValueError(
                    f"Method {self.method.name!r} has no numeric option {name!r} to schedule; "
                    f"it has: {', '.join(self.method.schedulable) or 'none'}."
                )
            self.method.check_variable(name, self.block_order)
            variable = tf.Variable(float(value), trainable=False, dtype="float32", name=f"method_{name}")
            self.method_variables[name] = variable
            self.method.bind_variable(name, variable, self)
            if self.train_function is not None:
                self.make_train_function(force=True)
        return self.method_variables[name]

    # -- building -----------------------------------------------------------

    def build(self, input_shape):
        shape = tuple(input_shape)
        for index, block in enumerate(self.blocks):
            with self.on_device(index):
                if not block.built:
                    block.build(shape)
            shape = block.compute_output_shape(shape)
        if self.sync_batch_norm:
            synchronize_batch_norm(self.blocks + self.extra_blocks)
        if self.compiled:
            self.optimizer.build()

    def on_device(self, index):
        """The device scope of block `index` (nothing when unplaced)."""
        if self.block_devices is None:
            return contextlib.nullcontext()
        return tf.device(self.block_devices[index])

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def call(self, inputs, training=None):
        x = single_input(inputs)
        for index, block in enumerate(self.blocks):
            with self.on_device(index):
                x = block(x, training=training)
        for layer in self.inference_head:
            x = layer(x, training=training)
        return keras.ops.cast(x, "float32")  # float32 predictions under a mixed dtype policy

    # -- compiling ----------------------------------------------------------

    def compile(self, optimizer="sgd", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`, with one optimizer per block.

        Args:
            optimizer: one optimizer (cloned from its config for every block),
                a list with one optimizer per block, or a callable
                `block_index -> optimizer`.
            loss: the loss of every head; defaults to
                `SparseCategoricalCrossentropy(from_logits=True)` (mean squared
                error for Associated Learning, whose label blocks always use it).
            metrics: metrics of the output head; defaults to `["accuracy"]`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`).
        """
        if self.block_devices is not None and len(set(self.block_devices)) > 1 and not self.method.cut_gradients:
            # One gradient through every block: no block can be an XLA program of its own.
            if kwargs.get("jit_compile") is True:
                raise ValueError(
                    f"jit_compile=True cannot be used with method {self.method.name!r} and blocks on several "
                    f"devices ({sorted(set(self.block_devices))}): its one end-to-end gradient would be one XLA "
                    f"program, which runs on one device. Use jit_compile=False, or one device."
                )
            kwargs["jit_compile"] = False
        strategy = getattr(self, "_distribute_strategy", None) or (
            tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
        )
        if kwargs.get("jit_compile") is True and strategy is not None:
            raise ValueError(
                f"jit_compile=True cannot be used under a distribution strategy "
                f"({type(strategy).__name__}): each block's update all-reduces its "
                f"gradients across replicas, which an XLA program cannot do. Use jit_compile='auto' (off under "
                f"a strategy, as Keras resolves it) or False."
            )
        if self.block_order == "pipelined" and kwargs.get("steps_per_execution", 1) != 1:
            raise ValueError(
                f"block_order='pipelined' needs steps_per_execution=1, got {kwargs['steps_per_execution']!r}: "
                f"each of its K-1 warm-up steps runs a different step function."
            )
        loss = loss or self.method.default_loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"] if metrics is None else metrics
        all_blocks = self.blocks + self.extra_blocks
        factors = [1.0] * len(self.blocks) + [self.method.extra_learning_rate_factor()] * len(self.extra_blocks)
        devices = (
            None if self.block_devices is None else self.block_devices + self.block_devices[: len(self.extra_blocks)]
        )
        # Each optimizer's own variables (its step count, rate, loss scale) on its block's device, where a
        # block compiled as its own XLA program reads them.
        optimizers = resolve_block_optimizers(
            optimizer, len(all_blocks), learning_rate_factors=factors, devices=devices
        )
        for index, (block, block_optimizer) in enumerate(zip(self.blocks, optimizers)):
            with self.on_device(index):
                block.compile(
                    optimizer=block_optimizer,
                    loss=self.method.block_loss(index, len(self.blocks), loss),
                    metrics=["accuracy"] if self.method.head_scores(index, len(self.blocks)) == "logits" else [],
                )  # a block alone scores its raw outputs
            block.sent_loss = self.method.sent_loss(index, len(self.blocks), loss)
        for index, (block, block_optimizer) in enumerate(zip(self.extra_blocks, optimizers[len(self.blocks) :])):
            with self.on_device(index):
                block.compile(optimizer=block_optimizer, loss=self.method.extra_block_loss)
        # Keras itself only uses the model-level loss to trace the model under a
        # distribution strategy (the method's output may score differently from its blocks).
        super().compile(optimizer=None, loss=self.method.prediction_loss(loss), metrics=metrics, **kwargs)
        self._block_loss = loss
        self.__dict__["_block_programs"] = {}  # the blocks' XLA programs (LocalTrainer) read these optimizers
        # The factors hold where one optimizer was cloned with them (given optimizers keep their own rates).
        self.optimizer = BlockOptimizers(
            all_blocks, devices=devices, learning_rate_factors=factors if clones_one_optimizer(optimizer) else None
        )
        if self.built:
            self.optimizer.build()
        self.reset_pipeline()

    def get_compile_config(self):
        config = super().get_compile_config()
        if not config:  # not compiled: the file holds the network only
            return None
        config["loss"] = keras.saving.serialize_keras_object(self._block_loss)
        # A LossScaleOptimizer whose settings are not Keras' own (the user's) is saved with them; the one
        # `compile` makes under "mixed_float16" is made again by it.
        config["optimizer"] = [
            keras.saving.serialize_keras_object(_saved_optimizer(block.optimizer))
            for block in self.blocks + self.extra_blocks
        ]
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    # -- serialization ------------------------------------------------------

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Like `keras.Model.save`; a model with a layer of another library
        that would not load back refuses in one line first
        (`keras_local.repairs.check_saveable`), before any file is written."""
        check_saveable([unit for block in self.blocks for unit in block.units if is_functional(unit)], self.name)
        return super().save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "blocks": [keras.saving.serialize_keras_object(block) for block in self.blocks],
            "method": self.method.name,
            "method_options": self.method_options(),
            "extra_blocks": [keras.saving.serialize_keras_object(block) for block in self.extra_blocks],
            "block_order": self.block_order,
            "devices": self.devices,
            "block_states": list(self.block_states),
            "backbone_name": self.backbone_name,
            "sync_batch_norm": self.sync_batch_norm,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for old, new in (("label_blocks", "extra_blocks"), ("schedule", "block_order")):
            if old in config:  # the names in files saved by keras_local 0.1 and 0.2
                config[new] = config.pop(old)
        for key in ("blocks", "extra_blocks"):
            config[key] = [keras.saving.deserialize_keras_object(block) for block in config.get(key, [])]
        devices = config.get("devices")
        if devices and any(not device_exists(device) for device in devices):
            # E.g. saved by a run with blocks on remote workers: the blocks load on this process's device.
            warnings.warn(
                f"The model was saved with its blocks on {devices}, which this process does not "
                f"have; it loads on the default device.",
                stacklevel=2,
            )
            config["devices"] = None
        return cls(**config)

"""LocalModel: a network of blocks trained block by block with `fit`."""

import contextlib
import functools

import keras
import tensorflow as tf
from keras import ops

from keras_local.block import Block, unpack_batch
from keras_local.heads import logits_of
from keras_local.losses import unscale_for_replicas
from keras_local.methods import get_method
from keras_local.optimizers import BlockOptimizers, _inner, resolve_block_optimizers
from keras_local.placement import place_blocks
from keras_local.schedules import PipelineBuffers, after, check_schedule


def _loss_scale(optimizer):
    """The dynamic loss scale of a LossScaleOptimizer (mixed precision), else 1."""
    return getattr(optimizer, "dynamic_scale", 1.0)


@keras.saving.register_keras_serializable(package="keras_local")
class LocalModel(keras.Model):
    """A network cut into blocks, each trained by its own optimizer.

    `call` is plain inference (all blocks, then the last block's head, which
    is the network's output head; for `bwbpf` the last block is the output
    layer alone). `train_step` runs one step of the method over all blocks:
    for local methods every block reads `stop_gradient` of the previous
    block's output and applies the gradient of its own (weighted) local loss
    with its own optimizer, a block with a backward-link tail (`backlink`)
    once the next block has sent back the error at its input; for `bp` and
    `bwbpf(deep_supervision=True)` one end-to-end gradient of the weighted
    sum of the heads' losses is split among the blocks' optimizers. Logs hold
    `loss` / `accuracy` (the output head's) and `loss_k` / `acc_k` for each
    block `model.blocks[k]` with a head.

    `schedule` orders the blocks of a step (`keras_local.schedules`):
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
    model.fit(train, epochs=1)
    model.blocks[2].optimizer.iterations
    ```
    """

    def __init__(self, blocks, method="gll", method_options=None, label_blocks=None,
                 schedule="together", devices=None, block_states=None, **kwargs):
        super().__init__(**kwargs)
        if not blocks or not all(isinstance(block, Block) for block in blocks):
            raise ValueError(f"blocks must be a non-empty list of Block, got {blocks!r}.")
        if blocks[-1].head is None:
            raise ValueError("The last block must have a head: it is the network's output head.")
        self.blocks = list(blocks)
        self.method = get_method(method, **(method_options or {}))
        self.label_blocks = list(label_blocks or [])
        if self.method.label_path != bool(self.label_blocks) or (
            self.label_blocks and len(self.label_blocks) != len(self.blocks)
        ):
            raise ValueError(
                f"Method {self.method.name!r} needs {len(self.blocks) if self.method.label_path else 0} "
                f"label blocks (one per block when it has a label path), got {len(self.label_blocks)}."
            )
        self.schedule = check_schedule(schedule, self.method)
        self.devices = None if devices is None else list(devices)
        self.block_devices = None if devices is None else place_blocks(len(self.blocks), self.devices)
        self._pipeline = None
        self._pipeline_steps = 0
        self.block_states = ["train"] * len(self.blocks)
        for index, state in enumerate(block_states or ()):
            self.set_block_state(index, state)
        self.method_variables = {}
        self.autoencoder_losses = [
            keras.metrics.Mean(name=f"autoencoder_loss_{k}") for k in range(len(self.label_blocks))
        ]
        # Blocks whose head accuracy is logged as acc_k (none for bp: only the output).
        logged = [
            index for index, block in enumerate(self.blocks)
            if block.head is not None and self.method.aux_heads
        ]
        self._metric_position = {index: position for position, index in enumerate(logged)}
        self.block_losses = [keras.metrics.Mean(name=f"loss_{k}") for k in logged]
        self.block_accuracies = [] if self.label_blocks else [
            keras.metrics.SparseCategoricalAccuracy(name=f"acc_{k}") for k in logged
        ]

    @property
    def output_head(self):
        return self.blocks[-1].head

    @property
    def inference_head(self):
        """The layers that turn the last block's features into the output:
        the output head, or for a label path the last bridge then the
        decoders h_L … h_1."""
        return [self.output_head, *(block.head for block in reversed(self.label_blocks))]

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
                f"frozen or idle one at a time; use a method that cuts gradients (gll, backlink, ...)."
            )
        states = list(self.block_states)
        states[index] = state
        idle = [k for k, value in enumerate(states) if value == "idle"]
        if idle and idle != list(range(idle[0], len(states))):
            raise ValueError(f"Block states {states}: only a run of last blocks can be idle "
                             f"(a block after an idle one would have no input).")
        if states == self.block_states:
            return
        self.block_states = states
        if self.train_function is not None:
            self.make_train_function(force=True)

    def method_options(self):
        """The method's options as plain values (a scheduled option's current value)."""
        return {key: float(value) if isinstance(value, tf.Variable) else value
                for key, value in self.method.get_config().items()}

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
            self.method.check_variable(name, self.schedule)
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
        if self.label_blocks:
            shape = (None, self.label_blocks[0].head.units)  # one-hot labels
            for index, block in enumerate(self.label_blocks):
                with self.on_device(index):
                    if not block.built:
                        block.build(shape)
                shape = block.compute_output_shape(shape)
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
        x = inputs
        for index, block in enumerate(self.blocks):
            with self.on_device(index):
                x = block(x, training=training)
        for layer in self.inference_head:
            x = layer(x, training=training)
        return x

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
        if self.block_devices is not None and len(set(self.block_devices)) > 1:
            if kwargs.get("jit_compile") is True:
                raise ValueError(
                    f"jit_compile=True cannot be used with blocks on several devices "
                    f"({sorted(set(self.block_devices))}): XLA compiles for one device."
                )
            kwargs["jit_compile"] = False
        if self.schedule == "pipelined" and kwargs.get("steps_per_execution", 1) != 1:
            raise ValueError(
                f"schedule='pipelined' needs steps_per_execution=1, got {kwargs['steps_per_execution']!r}: "
                f"each of its K-1 warm-up steps runs a different step function."
            )
        loss = loss or self.method.default_loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"] if metrics is None else metrics
        all_blocks = self.blocks + self.label_blocks
        factors = [1.0] * len(self.blocks) + [
            self.method.autoencoder_learning_rate_factor for _ in self.label_blocks
        ]
        optimizers = resolve_block_optimizers(optimizer, len(all_blocks), learning_rate_factors=factors)
        for index, (block, block_optimizer) in enumerate(zip(self.blocks, optimizers)):
            block.compile(optimizer=block_optimizer, loss=self.method.block_loss(index, len(self.blocks), loss),
                          metrics=[] if self.label_blocks else ["accuracy"])
        for block, block_optimizer in zip(self.label_blocks, optimizers[len(self.blocks):]):
            block.compile(optimizer=block_optimizer, loss="mean_squared_error")
        # Keras itself only uses the model-level loss to trace the model under a
        # distribution strategy; Associated Learning's blocks regress codes while
        # its output scores classes, so the output gets a class loss there.
        output_loss = keras.losses.SparseCategoricalCrossentropy() if self.label_blocks else loss
        super().compile(optimizer=None, loss=output_loss, metrics=metrics, **kwargs)
        self._block_loss = loss
        devices = None if self.block_devices is None else self.block_devices + self.block_devices[:len(self.label_blocks)]
        self.optimizer = BlockOptimizers(all_blocks, devices=devices)
        if self.built:
            self.optimizer.build()
        self.reset_pipeline()

    def get_compile_config(self):
        config = super().get_compile_config()
        config["loss"] = keras.saving.serialize_keras_object(self._block_loss)
        config["optimizer"] = [
            keras.saving.serialize_keras_object(_inner(block.optimizer))
            for block in self.blocks + self.label_blocks
        ]
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    # -- training -----------------------------------------------------------

    def train_step(self, data):
        if self.schedule == "pipelined":
            return self._pipelined_step(data, active=len(self.blocks))
        x, y = unpack_batch(data)
        if self.label_blocks:
            logits, loss = self._local_step(x, y, targets=self._label_step(y))
            if logits is not None and self.block_states[-1] != "idle":
                logits = self._decode(logits)
        elif self.method.cut_gradients:
            logits, loss = self._local_step(x, y)
        else:
            logits, loss = self._end_to_end_step(x, y)
        if self.block_states[-1] == "idle":
            return self._no_output_metrics(x, y)
        return self._update_output_metrics(x, y, logits, loss)

    def _no_output_metrics(self, x, y):
        """The output metrics of a step that gives no output (pipeline
        warm-up, idle last block): zero-weighted placeholders."""
        placeholder = ops.zeros((ops.shape(x)[0], self._num_outputs()))
        return self.compute_metrics(x, y, placeholder, sample_weight=ops.zeros((ops.shape(x)[0],)))

    def _label_step(self, y, training=True, update_metrics=True):
        """The label path: t_0 = one-hot y, t_i = g_i(sg(t_{i−1})). Trains
        each label block on ‖h_i(t_i) − sg(t_{i−1})‖² (when `training`) and
        returns the stopped codes sg(t_i), the blocks' targets."""
        code = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), self.label_blocks[0].head.units)
        targets = []
        for index, block in enumerate(self.label_blocks):
            code = ops.stop_gradient(code)
            with self.on_device(index):
                if training:
                    step = block.compute_local_gradients(code, code)
                    block.optimizer.apply(step.gradients, block.trainable_variables)
                    next_code, loss = step.features, step.loss
                else:
                    next_code = block(code, training=False)
                    loss = block.compute_loss(y=code, y_pred=block.head(next_code, training=False), training=False)
            if update_metrics:
                self.autoencoder_losses[index].update_state(unscale_for_replicas(loss))
            code = next_code
            targets.append(ops.stop_gradient(code))
        return targets

    def _decode(self, bridge_output):
        """h_1∘…∘h_L of the last bridge's output: the network's prediction."""
        x = bridge_output
        for block in reversed(self.label_blocks):
            x = block.head(x, training=False)
        return x

    def _local_step(self, x, y, targets=None):
        """Each block learns from its own loss on the stopped output of the
        previous one; a block with a backward-link tail applies its update
        once the next block has sent back the error at its input. With the
        `"sequential"` schedule a block's forward waits for the previous
        block's gradients."""
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        # waiting: (block, its LocalStep, its propagation length). With the "sequential" schedule block k+1's
        # forward waits for block k's local gradients and for block k−1's link update, so that no
        # block's activations outlive the step after its own.
        features, waiting, previous_gradients, link_gradients = x, None, [], []
        target = self._loss_target(x, y)
        logits = loss = None
        for index, block in enumerate(self.blocks):
            state = self.block_states[index]
            if state == "idle":
                break
            if state == "frozen":
                with self.on_device(index):
                    features = block(ops.stop_gradient(features), training=False)
                    if index == num_blocks - 1:  # the output still scores the batch
                        outputs = block.head(features, training=False)
                        target_k = target if targets is None else targets[index]
                        logits, loss = logits_of(outputs), block.local_loss(target_k, outputs, training=False)
                previous_gradients = []
                continue
            linked = index + 1 < num_blocks and self.block_states[index + 1] == "train"
            propagation_length = self.method.linked_units(index, num_blocks) if linked else 0
            inputs = ops.stop_gradient(features)
            if self.schedule == "sequential":
                inputs = after(previous_gradients, inputs)
            with self.on_device(index):
                step = block.compute_local_gradients(
                    inputs, target if targets is None else targets[index],
                    loss_weight=weights[index],
                    propagation_length=propagation_length, input_gradient=waiting is not None,
                )
            if waiting is not None:
                previous, previous_step, previous_length = waiting
                with self.on_device(index - 1):
                    error = self.method.link(previous_step.features_gradient, ops.cast(step.input_gradient, "float32"))
                    gradients = previous.finish_link(previous_step, error, previous_length)
                    previous.optimizer.apply(gradients, previous.trainable_variables)
                link_gradients = gradients  # the next block's forward also waits for this update
                waiting = None
            if propagation_length > 0:
                waiting = (block, step, propagation_length)
            else:
                with self.on_device(index):
                    block.optimizer.apply(step.gradients, block.trainable_variables)
            self._update_block_metrics(index, y, step.logits, step.loss)
            features, previous_gradients = step.features, step.gradients + link_gradients
            link_gradients = []
            logits, loss = step.logits, step.loss
        return logits, loss

    # -- the pipelined schedule ----------------------------------------------

    def reset_pipeline(self):
        """Empties the pipeline: the next step starts a new warm-up."""
        self._pipeline_steps = 0

    def make_train_function(self, force=False):
        """For the pipelined schedule: one step function per warm-up stage
        (step t < K−1 trains blocks 0..t), then the steady one (all blocks)."""
        if self.schedule != "pipelined":
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        if self._pipeline is None:  # per-replica buffers under the model's strategy
            with self.distribute_strategy.scope():
                self._pipeline = PipelineBuffers(self.blocks, self.block_devices)
        num_blocks, functions = len(self.blocks), {}

        def train_function(iterator):
            active = min(self._pipeline_steps + 1, num_blocks)
            if active not in functions:
                functions[active] = self._make_function(functools.partial(self._pipelined_step, active=active))
            logs = functions[active](iterator)
            self._pipeline_steps = min(self._pipeline_steps + 1, num_blocks)
            return logs

        self.train_function = train_function
        return train_function

    def _num_outputs(self):
        if self.label_blocks:
            return self.label_blocks[0].head.units
        return self.output_head.compute_output_shape(self.blocks[-1].features_shape)[-1]

    def _pipelined_step(self, data, active):
        """Blocks 0..active−1 each train on their input: block 0 on the batch,
        block k on what block k−1 wrote to its buffer on the previous step
        (with those examples' labels), then write their output for block k+1."""
        x, y = unpack_batch(data)
        if self._pipeline is None:
            raise ValueError("The pipeline is not set up: train with fit / train_on_batch, "
                             "which call make_train_function first.")
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        held = [(x, y)] + [self._pipeline.read(cut, y) for cut in range(active - 1)]  # read before any write
        if "idle" in self.block_states:
            active = min(active, self.block_states.index("idle"))
        for index in range(active):
            block, (inputs, labels) = self.blocks[index], held[index]
            if self.block_states[index] == "frozen":
                with self.on_device(index):
                    features = block(ops.stop_gradient(inputs), training=False)
                if index + 1 < num_blocks:
                    self._pipeline.write(index, ops.stop_gradient(features), labels)
                continue
            targets = None
            if self.label_blocks:  # the label path on the labels this block's input came with
                targets = self._label_step(labels, training=index == 0, update_metrics=index == 0)
            with self.on_device(index):
                step = block.compute_local_gradients(
                    ops.stop_gradient(inputs), labels if targets is None else targets[index],
                    loss_weight=weights[index],
                )
                block.optimizer.apply(step.gradients, block.trainable_variables)
            self._update_block_metrics(index, labels, step.logits, step.loss)
            if index + 1 < num_blocks:
                self._pipeline.write(index, ops.stop_gradient(step.features), labels)
        if active < num_blocks or self.block_states[-1] != "train":  # warm-up, or no output trained
            return self._no_output_metrics(x, y)
        logits = self._decode(step.logits) if self.label_blocks else step.logits
        return self._update_output_metrics(inputs, labels, logits, step.loss)

    def _end_to_end_step(self, x, y):
        """One tape over the whole network; each block's optimizer applies its
        share of the gradient of the weighted sum of the losses of all heads."""
        weights = self.method.loss_weights(len(self.blocks))
        scales = [_loss_scale(block.optimizer) for block in self.blocks]
        mixed_precision = any(not isinstance(scale, float) for scale in scales)
        common_scale = ops.min(ops.stack(scales)) if mixed_precision else 1.0
        with tf.GradientTape() as tape:
            features, total = x, 0.0
            for index, block in enumerate(self.blocks):
                with self.on_device(index):
                    features = block(features, training=True)
                    total += block.weight_decay_loss()
                    if block.head is not None:
                        outputs = block.head(features, training=True)
                        logits, loss = logits_of(outputs), block.local_loss(y, outputs)
                        total += weights[index] * loss
                if block.head is not None:
                    self._update_block_metrics(index, y, logits, loss)
            scaled_total = total * common_scale
        variables = [block.trainable_variables for block in self.blocks]
        gradients = tape.gradient(scaled_total, variables)
        for index, (block, block_gradients, scale) in enumerate(zip(self.blocks, gradients, scales)):
            if mixed_precision:  # each LossScaleOptimizer unscales by its own scale
                block_gradients = [g * (scale / common_scale) for g in block_gradients]
            with self.on_device(index):
                block.optimizer.apply(block_gradients, block.trainable_variables)
        return logits, loss

    def _loss_target(self, x, y):
        """What the blocks' losses compare with: the labels, or for methods
        that also read the images (InfoPro) `{"labels": y, "images": x}`."""
        return {"labels": y, "images": x} if self.method.needs_images else y

    def _update_block_metrics(self, index, y, logits, loss):
        position = self._metric_position.get(index)
        if position is not None:
            self.block_losses[position].update_state(unscale_for_replicas(loss))
            if self.block_accuracies:
                self.block_accuracies[position].update_state(y, logits)

    def _update_output_metrics(self, x, y, logits, loss):
        self._loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=ops.shape(x)[0])
        return self.compute_metrics(x, y, logits)

    def test_step(self, data):
        x, y = unpack_batch(data)
        targets = self._label_step(y, training=False) if self.label_blocks else None
        features = x
        for index, block in enumerate(self.blocks):
            with self.on_device(index):
                features = block(features, training=False)
                if block.head is not None:
                    outputs = block.head(features, training=False)
                    target = self._loss_target(x, y) if targets is None else targets[index]
                    logits, loss = logits_of(outputs), block.local_loss(target, outputs, training=False)
            if block.head is not None:
                self._update_block_metrics(index, y, logits, loss)
        if self.label_blocks:
            logits = self._decode(logits)
        return self._update_output_metrics(x, y, logits, loss)

    # -- serialization ------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "blocks": [keras.saving.serialize_keras_object(block) for block in self.blocks],
            "method": self.method.name,
            "method_options": self.method_options(),
            "label_blocks": [keras.saving.serialize_keras_object(block) for block in self.label_blocks],
            "schedule": self.schedule,
            "devices": self.devices,
            "block_states": list(self.block_states),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("blocks", "label_blocks"):
            config[key] = [keras.saving.deserialize_keras_object(block) for block in config.get(key, [])]
        return cls(**config)

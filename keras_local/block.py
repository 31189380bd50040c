"""A block: a run of backbone units, an optional head, and its own optimizer."""

import keras
import tensorflow as tf
from keras import ops

from keras_local.block_order import after
from keras_local.heads import logits_of
from keras_local.losses import scale_for_replicas, unscale_for_replicas
from keras_local.repairs import restore_layer


def unpack_batch(data):
    """`(x, y)` of a batch; a `sample_weight` (given to `fit`, or made by Keras
    from `class_weight`) is refused: the local losses weigh every example the same."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:
        raise ValueError(
            "keras_local models do not take sample_weight or class_weight (got a per-example weight): each "
            "block's local loss weighs every example the same. Resample the dataset instead, e.g. with "
            "tf.data.Dataset.rejection_resample."
        )
    return single_input(x), y


def single_input(x):
    """`x`, or the tensor of inputs given as a one-entry dict (`{"images": x}`,
    as a user's model may name its input)."""
    if isinstance(x, dict) and len(x) == 1:
        return next(iter(x.values()))
    return x


class LocalStep:
    """What one block computed on one batch: `features` (its output),
    `logits` and `loss` of its head, `gradients` for its trainable variables;
    for backward links, `input_gradient` (the error sent back) and, while a
    tail waits for the next block's error, `features_gradient` and either the
    tail's `tape` (its activations kept) or its input, `tail_inputs`, and the
    state its non-trainable variables had before it ran, `tail_state` (the
    tail is run again when the error arrives: `Block.finish_link`)."""

    FIELDS = (
        "features",
        "logits",
        "loss",
        "gradients",
        "input_gradient",
        "features_gradient",
        "tail_inputs",
        "tail_state",
    )

    def __init__(self, features, logits, loss, gradients, **links):
        self.features = features
        self.logits = logits
        self.loss = loss
        self.gradients = gradients
        self.input_gradient = links.get("input_gradient")
        self.features_gradient = links.get("features_gradient")
        self.tail_inputs = links.get("tail_inputs")
        self.tail_state = links.get("tail_state")
        self.tape = None

    def as_outputs(self):
        """The step as a dict of tensors (what a compiled block program returns; the tape stays behind)."""
        return {field: getattr(self, field) for field in self.FIELDS}


def _run(units, x):
    for unit in units:
        x = unit(x, training=True)
    return x


def _state_of(units):
    """The non-trainable variables of `units` (batch-norm statistics, random seeds)."""
    return [v for unit in units for v in unit.non_trainable_variables]


def _add(first, second):
    """The sum of two gradients, either of which may be None (no path)."""
    if first is None:
        return second
    return first if second is None else first + second


@keras.saving.register_keras_serializable(package="keras_local")
class Block(keras.Model):
    """A contiguous run of units with an auxiliary head, trained by its own optimizer.

    `call` returns the block's features (what the next block reads); `head`
    turns them into logits for the block's local loss. A compiled block trains
    on its own with `fit` (greedy sequential training): its `train_step`
    differentiates its local loss w.r.t. its own variables only.

    Args:
        units: list of backbone layers, applied in order.
        head: a layer giving logits from the features, or None (a block of
            `bp` that is not the last one has no head).
        weight_decay: coupled L2 as in PyTorch's `SGD(weight_decay=...)`:
            adds `weight_decay * w` to the gradient of the variables that
            `weight_decay_scope` names (Keras' optimizer `weight_decay` is
            the decoupled kind, which differs once momentum is used).
        weight_decay_scope: `"all"` (PyTorch's: every trainable variable of
            the block, head, biases and batch norm included) or
            `"backbone_kernels"` (only the conv / dense kernels of the units:
            Associated Learning's L2 on its ResNets' kernels, not its bridges).

    Example:

    ```python
    from keras_local.heads import LinearHead
    from keras_local.layers import ConvBNReLU

    images, labels = next(iter(kl.data.load_dataset("cifar10_sample", "train", batch_size=256)))
    block = Block([ConvBNReLU(16)], head=LinearHead(10))
    block.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    block.fit(images, labels, epochs=1)
    features = block.predict(images)     # the input of the next block
    ```
    """

    WEIGHT_DECAY_SCOPES = ("all", "backbone_kernels")

    def __init__(self, units, head=None, weight_decay=0.0, weight_decay_scope="all", **kwargs):
        super().__init__(**kwargs)
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
        if weight_decay_scope not in self.WEIGHT_DECAY_SCOPES:
            raise ValueError(
                f"Unknown weight_decay_scope {weight_decay_scope!r}. Allowed: {', '.join(self.WEIGHT_DECAY_SCOPES)}."
            )
        self.units = list(units)
        self.head = head
        self.weight_decay = float(weight_decay)
        self.weight_decay_scope = weight_decay_scope
        # The part of the local loss whose error a backward link sends back (None: all of it; set by
        # `LocalModel.compile` from `Method.sent_loss`).
        self.sent_loss = None

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.input_shape_without_batch = shape[1:]
        for unit in self.units:  # units may come built (deserialized with their build config)
            if not unit.built:
                unit.build(shape)
            shape = tuple(unit.compute_output_shape(shape))
        if self.head is not None and not self.head.built:
            self.head.build(shape)
        self.features_shape = shape

    def build_from_config(self, config):
        self.build(config["input_shape"])

    def call(self, inputs, training=None):
        x = inputs
        for unit in self.units:
            x = unit(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for unit in self.units:
            shape = tuple(unit.compute_output_shape(shape))
        return shape

    def decayed_variables(self):
        """The trainable variables that `weight_decay` applies to."""
        if self.weight_decay_scope == "all":
            return self.trainable_variables
        return [v for unit in self.units for v in unit.trainable_variables if v.name == "kernel"]

    def weight_decay_loss(self, variables=None):
        """½·λ·Σ‖w‖² over the decayed ones among `variables` (default: all
        the block's), so its gradient is λ·w; scaled for the number of
        replicas like any Keras loss."""
        if not self.weight_decay:
            return 0.0
        decayed = {id(v) for v in self.decayed_variables()}
        variables = [v for v in (self.trainable_variables if variables is None else variables) if id(v) in decayed]
        if not variables:
            return 0.0
        total = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) for v in variables]))
        return scale_for_replicas(0.5 * self.weight_decay * total)

    def local_loss(self, y, outputs, training=True):
        """The block's compiled loss (e.g. cross-entropy) on its head's
        outputs: logits, or a dict of named outputs (e.g. PredSim's
        `{"logits", "similarity"}`) that the compiled loss object reads, as it
        reads a dict `y` (InfoPro's `{"labels", "images"}`)."""
        if isinstance(outputs, dict) or isinstance(y, dict):
            return keras.losses.get(self.loss)(y, outputs)
        return self.compute_loss(y=y, y_pred=outputs, training=training)

    def sent_part(self, y, outputs, loss_weight):
        """`loss_weight ·` the part of the local loss whose error is sent back
        (`sent_loss`), scaled for the optimizer (None: the whole loss is sent)."""
        if self.sent_loss is None:
            return None
        # A Keras Loss divides by the number of replicas itself, as the compiled loss does.
        return self.optimizer.scale_loss(loss_weight * self.sent_loss(y, outputs))

    def compute_local_gradients(
        self, inputs, y, loss_weight=1.0, linked_units=0, input_gradient=False, keep_tail_tape=True
    ):
        """Forward through the block and its head, and the gradients of
        `loss_weight · local loss + weight decay` w.r.t. `self.trainable_variables`.

        Args:
            inputs: the block's input (already stopped by the caller).
            y: the labels.
            loss_weight: the weight of the local loss in the method's objective.
            linked_units: units at the end (the tail) whose gradients
                wait for the next block's error (`finish_link`); their entries
                in `gradients` are None until then.
            input_gradient: also return ∂(loss_weight · loss)/∂inputs, the
                error a backward link sends to the previous block (of the
                `sent_loss` part of the loss, when one is set).
            keep_tail_tape: whether a waiting tail keeps its tape (its
                activations) for `finish_link`, or only its input, to run it
                again then (what a block compiled as its own program does: a
                tape cannot leave the program).

        Returns a `LocalStep`; its `loss` is the local loss without weight or
        weight decay, as Keras' losses return it (divided by the number of
        replicas under a distribution strategy). Its gradients are scaled by
        the optimizer's loss scale under mixed precision, as `optimizer.apply`
        expects; its `input_gradient` is not.
        """
        linked_units = min(linked_units, len(self.units))
        if linked_units > 0:
            return self._compute_with_tail(inputs, y, loss_weight, linked_units, input_gradient, keep_tail_tape)
        separate = input_gradient and self.sent_loss is not None
        with tf.GradientTape(persistent=separate) as tape:
            if input_gradient:
                tape.watch(inputs)
            features = self(inputs, training=True)
            outputs = self.head(features, training=True)
            logits, loss = logits_of(outputs), self.local_loss(y, outputs)
            scaled = self.optimizer.scale_loss(loss_weight * loss + self.weight_decay_loss())
            sent = self.sent_part(y, outputs, loss_weight) if separate else None
        variables = list(self.trainable_variables)
        gradients = tape.gradient(scaled, variables + ([inputs] if input_gradient and not separate else []))
        step = LocalStep(features, logits, loss, gradients[: len(variables)])
        if input_gradient:
            error = tape.gradient(sent, inputs) if separate else gradients[-1]
            step.input_gradient = ops.cast(error, "float32") / self._loss_scale()
        return step

    def _loss_scale(self):
        return ops.cast(getattr(self.optimizer, "dynamic_scale", 1.0), "float32")

    def _compute_with_tail(self, inputs, y, loss_weight, linked_units, input_gradient, keep_tail_tape=True):
        """`compute_local_gradients` for a block whose last `linked_units`
        units wait for the next block's error. Three tapes: the prefix's (its
        gradients are taken now, then it is released), the tail's (kept for
        the link: it holds only the tail's activations) and the head's. The
        local error flows head → tail → prefix through `output_gradients`;
        the tail's weight gradients are left for `finish_link`."""
        split = len(self.units) - linked_units
        prefix_units, tail_units = self.units[:split], self.units[split:]
        separate = input_gradient and self.sent_loss is not None
        with tf.GradientTape(persistent=separate) as prefix_tape:
            if input_gradient:
                prefix_tape.watch(inputs)
            hidden = _run(prefix_units, inputs)
        tail_inputs = ops.stop_gradient(hidden) if prefix_units else inputs
        tail_state = None if keep_tail_tape else [tf.identity(v.value) for v in _state_of(tail_units)]  # values now
        with tf.GradientTape(persistent=True) as tail_tape:
            tail_tape.watch(tail_inputs)
            features = _run(tail_units, tail_inputs)
        head_inputs = ops.stop_gradient(features)
        tail = {id(v) for v in self.tail_variables(linked_units)}
        local = [v for v in self.trainable_variables if id(v) not in tail]  # the head's and the prefix's
        with tf.GradientTape(persistent=separate) as head_tape:
            head_tape.watch(head_inputs)
            outputs = self.head(head_inputs, training=True)
            logits, loss = logits_of(outputs), self.local_loss(y, outputs)
            scaled = self.optimizer.scale_loss(loss_weight * loss + self.weight_decay_loss(local))
            sent = self.sent_part(y, outputs, loss_weight) if separate else None
        *own, features_gradient = head_tape.gradient(scaled, local + [head_inputs])
        gradients = dict(zip((id(v) for v in local), own))  # the prefix's: weight decay only so far
        hidden_gradient = tail_tape.gradient(features, tail_inputs, output_gradients=features_gradient)
        prefix_variables = [v for unit in prefix_units for v in unit.trainable_variables]
        input_error = hidden_gradient
        if prefix_units:
            through = prefix_tape.gradient(
                hidden, prefix_variables + ([inputs] if input_gradient else []), output_gradients=hidden_gradient
            )
            input_error = through[-1] if input_gradient else None
            for variable, gradient in zip(prefix_variables, through):
                gradients[id(variable)] = _add(gradients.get(id(variable)), gradient)
        if separate:  # only the sent part's error goes back: through the tail (and prefix) once more
            sent_gradient = head_tape.gradient(sent, head_inputs)
            input_error = tail_tape.gradient(features, tail_inputs, output_gradients=sent_gradient)
            if prefix_units:
                input_error = prefix_tape.gradient(hidden, inputs, output_gradients=input_error)
        step = LocalStep(features, logits, loss, [gradients.get(id(v)) for v in self.trainable_variables])
        if keep_tail_tape:
            step.tape = tail_tape
        else:
            step.tail_inputs, step.tail_state = tail_inputs, tail_state
        step.features_gradient = ops.cast(features_gradient, "float32") / self._loss_scale()
        if input_gradient:
            step.input_gradient = ops.cast(input_error, "float32") / self._loss_scale()
        return step

    def tail_variables(self, linked_units):
        """The trainable variables of the last `linked_units` units (all, if the block has fewer)."""
        if linked_units <= 0:
            return []
        return [v for unit in self.units[-linked_units:] for v in unit.trainable_variables]

    def tail_input_shape(self, linked_units):
        """The shape (batch dimension None) of what the last `linked_units` units read."""
        shape = (None, *self.input_shape_without_batch)
        for unit in self.units[: len(self.units) - min(linked_units, len(self.units))]:
            shape = tuple(unit.compute_output_shape(shape))
        return shape

    def tail_state(self, linked_units):
        """The non-trainable variables of the last `linked_units` units (batch-norm statistics, seeds)."""
        return _state_of(self.units[-min(linked_units, len(self.units)) :])

    def tail_gradients(self, tail_inputs, features_error, linked_units, tail_state, tail_weights=None, loss_scale=None):
        """The gradients of the last `linked_units` units' trainable variables when the tail, run again on
        `tail_inputs` from the non-trainable state `tail_state`, learns from `features_error` (the error at
        the block's output), plus their weight decay; scaled by `loss_scale` (default: the optimizer's) as
        `optimizer.apply` expects.

        The tail runs statelessly (`keras.StatelessScope`): its batch-norm statistics and seeds are not
        changed (the block's own forward already updated them), and a dropout draws the mask it drew then.
        With `tail_weights` (values of `tail_variables`, as a copy of the tail on another device holds
        them) the tail runs with those values and the gradients are taken with respect to them.
        """
        units, tail = self.units[-min(linked_units, len(self.units)) :], self.tail_variables(linked_units)
        mapping = list(zip(_state_of(units), tail_state))
        sources = tail
        if tail_weights is not None:
            sources = [ops.convert_to_tensor(value) for value in tail_weights]
            mapping += list(zip(tail, sources))
        scale = self._loss_scale() if loss_scale is None else ops.cast(loss_scale, "float32")
        # Run the tail again only once its error exists: not alongside the next block's step, whose
        # activations would then be alive with the tail's.
        tail_inputs = after([features_error], tail_inputs)
        with tf.GradientTape() as tape:
            if tail_weights is not None:  # the block's own trainable variables are watched already
                tape.watch(sources)
            with keras.StatelessScope(state_mapping=mapping):
                features = _run(units, tail_inputs)
                link = ops.sum(ops.cast(features, "float32") * ops.stop_gradient(ops.cast(features_error, "float32")))
                scaled = (link + self.weight_decay_loss(tail)) * scale
        return tape.gradient(scaled, sources)

    def finish_link(self, step, features_error, linked_units):
        """Completes a step's gradients with a tail that learns from `features_error`.

        `step` is this block's `LocalStep` (computed with the same
        `linked_units`) and `features_error` the error at the block's
        output that the method's `link` made of the block's own error
        (`step.features_gradient`) and the next block's. It is pushed through
        the tail only, so the last `linked_units` units' parameters get its
        gradient plus their weight decay once; every other variable keeps its
        local gradient. A step with its tail's tape reuses it (nothing is
        recomputed); a step without (`keep_tail_tape=False`) runs the tail
        again on its kept input (`tail_gradients`): the same activations,
        since no weight has changed since.
        """
        tail = self.tail_variables(linked_units)
        if step.tape is None:
            gradients = self.tail_gradients(step.tail_inputs, features_error, linked_units, step.tail_state)
        else:
            mixed = ops.cast(features_error, "float32")
            with step.tape:  # re-enter the tape to add the mixed error and the tail's decay
                link = ops.sum(ops.cast(step.features, "float32") * ops.stop_gradient(mixed))
                scaled = self.optimizer.scale_loss(link + self.weight_decay_loss(tail))
            gradients = step.tape.gradient(scaled, tail)
            step.tape = None
        return self.with_tail_gradients(step.gradients, gradients, linked_units)

    def with_tail_gradients(self, gradients, tail_gradients, linked_units):
        """`gradients` (one per trainable variable) with the tail's entries replaced by `tail_gradients`."""
        tail = dict(zip((id(v) for v in self.tail_variables(linked_units)), tail_gradients))
        return [tail.get(id(variable), gradient) for variable, gradient in zip(self.trainable_variables, gradients)]

    def train_step(self, data):
        x, y = unpack_batch(data)
        step = self.compute_local_gradients(x, y)
        self.optimizer.apply(step.gradients, self.trainable_variables)
        logits, loss = step.logits, step.loss
        self._loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=ops.shape(x)[0])
        return self.compute_metrics(x, y, logits)

    def test_step(self, data):
        x, y = unpack_batch(data)
        outputs = self.head(self(x, training=False), training=False)
        logits, loss = logits_of(outputs), self.local_loss(y, outputs, training=False)
        self._loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=ops.shape(x)[0])
        return self.compute_metrics(x, y, logits)

    def get_config(self):
        return {
            "name": self.name,
            "units": [keras.saving.serialize_keras_object(unit) for unit in self.units],
            "head": keras.saving.serialize_keras_object(self.head),
            "weight_decay": self.weight_decay,
            "weight_decay_scope": self.weight_decay_scope,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["units"] = [restore_layer(unit) for unit in config["units"]]
        config["head"] = restore_layer(config["head"])
        config["dtype"] = keras.saving.deserialize_keras_object(config.get("dtype"))
        return cls(**config)

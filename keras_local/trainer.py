"""`LocalTrainer`: how a LocalModel trains and evaluates, one step at a time.

`LocalModel` (keras_local.model) is what the network is: its blocks, their
states, devices, optimizers and config. This mixin is how a step runs over
those blocks, the way Keras separates its `Trainer` from `Model`:

- `train_step` picks the step of the method and block order: `_local_step`
  (every block on its stopped input and its own loss; a tail linked to the
  next block waits for its error, mixed by `method.link`), `_end_to_end_step`
  (one tape over the network: `bp`, BWBPF's deep supervision) or
  `_pipelined_step` (block k on block k−1's output of the previous step);
- every step runs a block through a few helpers: `_train_block` (forward,
  gradients, update), `_finish_link` (a waiting tail's update once the next
  block's error arrives, a `PendingLink`), `_infer_block` (a frozen or
  evaluated block) and, pipelined, `_link_through_copy` (the next block's
  device runs the tail as it was a step earlier) and `_apply_block`; where
  the model compiles block by block (`keras_local.compilation`), each is an
  XLA program of its own;
- the pipelined block order's state (`pipeline_state`, `set_pipeline_state`):
  the batches in flight and the warm-up counter, for `RunCheckpoint`;
- `test_step` scores every head;
- the metrics: `loss` / `accuracy` of the output, `loss_k` / `acc_k` of each
  block in `logged_blocks`.

Under `tf.distribute.MultiWorkerMirroredStrategy` two steps work around
Keras 3.15 (keras-team/keras#20585, where `fit` fails for any model under
that strategy): a step's logs leave it as 1-element vectors, which Keras'
multi-worker reduction (a mean along axis 0) turns back into the scalars
every other strategy logs; and the symbolic build before the first epoch
reads this worker's share of a batch instead of reducing a nested batch
across workers.
"""

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from keras import ops

from keras_local.block import LocalStep, unpack_batch
from keras_local.block_order import HeldBatch, PipelineBuffers, after
from keras_local.cluster import is_multi_worker
from keras_local.compilation import block_program, compiles_blocks
from keras_local.heads import logits_of
from keras_local.losses import unscale_for_replicas


class PendingLink(NamedTuple):
    """A block whose last `linked_units` units (its tail) wait for the next block's error."""

    index: int
    step: LocalStep
    linked_units: int


def _loss_scale(optimizer):
    """The dynamic loss scale of a LossScaleOptimizer (mixed precision), else 1."""
    return getattr(optimizer, "dynamic_scale", 1.0)


class LocalTrainer:
    """The training and evaluation steps of `LocalModel` (a mixin placed before `keras.Model`)."""

    @property
    def logged_blocks(self):
        """Indices of the blocks whose head's loss and accuracy are logged (`loss_k`, `acc_k`)."""
        return sorted(self._logged_position)

    def train_step(self, data):
        if self.block_order == "pipelined":
            return self._pipelined_step(data, active=len(self.blocks))
        x, y = unpack_batch(data)
        if self.method.cut_gradients:
            logits, loss = self._local_step(x, y, self.method.targets(self, x, y))
            if logits is not None and self.block_states[-1] != "idle":
                logits = self.decode(logits)
        else:
            logits, loss = self._end_to_end_step(x, y)
        if self.block_states[-1] == "idle":
            return self._no_output_metrics(x, y)
        return self._update_output_metrics(x, y, logits, loss)

    def _no_output_metrics(self, x, y):
        """The output metrics of a step that gives no output (pipeline
        warm-up, idle last block): zero-weighted placeholders."""
        placeholder = ops.zeros((ops.shape(x)[0], self._num_outputs()))
        return self._step_logs(self.compute_metrics(x, y, placeholder, sample_weight=ops.zeros((ops.shape(x)[0],))))

    def _step_logs(self, logs):
        """A step's logs as the strategy's reduction wants them (see the module doc)."""
        if is_multi_worker(self.distribute_strategy):
            return {key: ops.reshape(value, (1,)) for key, value in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and is_multi_worker(strategy):
            for _, _, batches in iterator:  # as Keras does: one batch, then the iterator is reset
                data_batch = tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def decode(self, outputs):
        """The prediction from the output head's outputs: the method's decoders, if any."""
        for layer in self.method.decoders(self):
            outputs = layer(outputs, training=False)
        return outputs

    @property
    def compiles_blocks(self):
        """Whether each block's step is its own XLA program (`keras_local.compilation`): a compiled
        model with `jit_compile` on, and blocks that one program cannot hold (sequential or pipelined
        block order, blocks on several devices)."""
        return self.compiled and compiles_blocks(self.jit_compile, self.block_order, self.block_devices)

    @property
    def dropped_links(self):
        """Under `"mixed_float16"` (the blocks' dtype policy), for a method with backward links: the
        metric (`dropped_links` in the logs) that counts the steps in which a block's error at its input
        overflowed float16 and its link was dropped (the tail learned from its own loss alone, as in
        gll), instead of making the receiving block's optimizer skip its update. None otherwise."""
        return getattr(self, "_dropped_links", None)

    def _make_function(self, step_function):
        """Keras' step function; not compiled as one program when the blocks are compiled one by one."""
        if not self.compiles_blocks:
            return super()._make_function(step_function)
        jit_compile, self._jit_compile = self._jit_compile, False
        try:
            return super()._make_function(step_function)
        finally:
            self._jit_compile = jit_compile

    def _in_block_program(self, key, index, function, *args):
        """`function(*args)` on block `index`'s device: as an XLA program of its own when the model
        compiles block by block (its results are then tensors only; one program per `key`, kept until
        the next `compile`, so the pipeline's warm-up steps share them), else traced into the step."""
        with self.on_device(index):
            if not self.compiles_blocks:
                return function(*args)
            programs = self.__dict__.setdefault("_block_programs", {})
            if key not in programs:
                programs[key] = block_program(function)
            return programs[key](*args)

    def _train_block(self, index, inputs, target, weight, linked_units=0, input_gradient=False):
        """Block `index`'s forward and gradients (`Block.compute_local_gradients`) and, unless its last
        `linked_units` units wait for the next block's error (`_finish_link`), its update."""
        block, compiled = self.blocks[index], self.compiles_blocks
        # Only "together" keeps a waiting tail's activations; the other orders keep its input and run it again.
        keep_tail_tape = self.block_order == "together" and not compiled

        def train(inputs, target, weight):
            step = block.compute_local_gradients(
                inputs,
                target,
                loss_weight=weight,
                linked_units=linked_units,
                input_gradient=input_gradient,
                keep_tail_tape=keep_tail_tape,
            )
            if linked_units == 0:
                block.optimizer.apply(step.gradients, block.trainable_variables)
                if compiled:
                    step.gradients = None  # applied inside the program: not one of its outputs
            return step.as_outputs() if compiled else step

        key = ("train", index, linked_units, input_gradient)
        step = self._in_block_program(key, index, train, inputs, target, ops.convert_to_tensor(weight, "float32"))
        return LocalStep(**step) if compiled else step

    def _mixed_error(self, own_error, next_error):
        """The error a linked tail learns from: the method's mix of its own (`own_error`) and the next
        block's (`next_error`), on the device the caller is on."""
        next_error = ops.cast(next_error, "float32")
        error = self.method.link(own_error, next_error)
        if self.dropped_links is not None:  # float16 overflowed in the next block: its error is dropped
            finite = ops.all(ops.isfinite(next_error))
            error = ops.where(finite, error, own_error)
            self.dropped_links.update_state(1.0 - ops.cast(finite, "float32"))
        return error

    def _finish_link(self, pending, next_error):
        """The waiting tail of block `pending.index` learns from the method's mix of its own error and
        the next block's (`next_error`); the block applies its update. Returns what a later block waits for."""
        index, step, linked_units = pending
        block, compiled = self.blocks[index], self.compiles_blocks
        with self.on_device(index):
            error = self._mixed_error(step.features_gradient, next_error)

        def finish(step, error):
            if compiled:
                step = LocalStep(**step)
            gradients = block.finish_link(step, error, linked_units)
            block.optimizer.apply(gradients, block.trainable_variables)
            return [block.optimizer.iterations] if compiled else gradients

        done = self._in_block_program(
            ("link", index, linked_units), index, finish, step.as_outputs() if compiled else step, error
        )
        self.method.after_block_update(self, index)
        return done

    def _link_through_copy(self, pending, held_link, next_error):
        """Pipelined: the gradients of block `pending.index`'s tail from the error the next block
        (`next_error`) sent back for the batch of the previous step, taken on the next block's device
        through its copy of the tail (`held_link`: the tail's input, own error, state and weights then)."""
        index, _, linked_units = pending
        block = self.blocks[index]
        with self.on_device(index + 1):
            error = self._mixed_error(held_link.features_gradient, next_error)
            scale = ops.cast(_loss_scale(block.optimizer), "float32")

        def link(tail_inputs, error, tail_state, tail_weights, scale):
            return block.tail_gradients(tail_inputs, error, linked_units, tail_state, tail_weights, scale)

        link_inputs = (held_link.tail_inputs, error, held_link.tail_state, held_link.tail_weights, scale)
        return self._in_block_program(("copy", index, linked_units), index + 1, link, *link_inputs)

    def _apply_block(self, pending, tail_gradients=None):
        """Pipelined: block `pending.index` applies its step's gradients and its tail's (`tail_gradients`,
        from the previous step's batch; none during the warm-up, when nothing has come back yet)."""
        index, step, linked_units = pending
        block = self.blocks[index]
        if not block.optimizer.built:  # with every variable, not just those of a warm-up step
            with tf.init_scope():
                block.optimizer.build(block.trainable_variables)

        def apply(gradients, tail_gradients):
            if tail_gradients is not None:
                gradients = block.with_tail_gradients(gradients, tail_gradients, linked_units)
            pairs = [(g, v) for g, v in zip(gradients, block.trainable_variables) if g is not None]
            block.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
            return [block.optimizer.iterations]

        key = ("apply", index, linked_units, tail_gradients is None)
        # The update waits for everything the block's step computed: the tail's gradients come from the
        # previous batch, so nothing else orders them after this step's forward through the same weights
        # (without this, on CPU the forward read weights the update was writing, seen as steps that
        # differed from run to run under load).
        waits = [t for t in tf.nest.flatten(step.as_outputs()) if t is not None]
        gradients = [None if g is None else after(waits, g) for g in step.gradients]
        if tail_gradients is not None:
            tail_gradients = [None if g is None else after(waits, g) for g in tail_gradients]
        done = self._in_block_program(key, index, apply, gradients, tail_gradients)
        self.method.after_block_update(self, index)
        return done

    def _infer_block(self, index, inputs, target=None):
        """Block `index`'s features in inference mode and, with a `target`, its head's logits and loss."""
        block = self.blocks[index]

        def infer(inputs, target):
            features = block(inputs, training=False)
            if target is None:
                return features, None, None
            outputs = block.head(features, training=False)
            return features, logits_of(outputs), block.local_loss(target, outputs, training=False)

        return self._in_block_program(("infer", index, target is None), index, infer, inputs, target)

    def _local_step(self, x, y, targets):
        """Each block learns from its own loss (against `targets[k]`) on the stopped output of the
        previous one; a block with a backward-link tail applies its update
        once the next block has sent back the error at its input. With the
        `"sequential"` block order a block's forward waits for the previous
        block's gradients."""
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        # waiting: the PendingLink of a block whose tail waits for the next block's error. With the
        # "sequential" block order block k+1's forward waits for `done`: block k's local
        # gradients (or its program's results) and block k−1's link update, so that no block's activations
        # outlive the step after its own.
        features, waiting, done = x, None, []
        logits = loss = None
        for index in range(num_blocks):
            state = self.block_states[index]
            if state == "idle":
                break
            if state == "frozen":  # the output still scores the batch
                target = targets[index] if index == num_blocks - 1 else None
                features, logits, loss = self._infer_block(index, ops.stop_gradient(features), target)
                done = []
                continue
            linked_units = self._linked_units(index)
            inputs = ops.stop_gradient(features)
            if self.block_order == "sequential":
                inputs = after(done, inputs)
            step = self._train_block(
                index, inputs, targets[index], weights[index], linked_units, input_gradient=waiting is not None
            )
            link_done = []
            if waiting is not None:
                link_done = self._finish_link(waiting, step.input_gradient)
                waiting = None
            if linked_units > 0:
                waiting = PendingLink(index, step, linked_units)
            else:
                self.method.after_block_update(self, index)
            self._update_block_metrics(index, y, step.logits, step.loss)
            features, logits, loss = step.features, step.logits, step.loss
            done = ([step.loss] if self.compiles_blocks else list(step.gradients)) + list(link_done)
        return logits, loss

    def reset_pipeline(self):
        """Empties the pipeline: the next step starts a new warm-up."""
        self._pipeline_steps = 0
        self._restored_pipeline = None

    def pipeline_state(self):
        """The pipelined block order's state, as numpy arrays: the warm-up counter (`"steps"`, the steps
        trained since the pipeline was last emptied, at most K) and every replica's buffers (the
        batches in flight); what `RunCheckpoint` saves beside the weights. None for another block order."""
        if self.block_order != "pipelined":
            return None
        state = {"steps": np.array(self._pipeline_steps)}
        if self._pipeline is not None:
            for index, variable in enumerate(self._pipeline.variables):
                replicas = self.distribute_strategy.experimental_local_results(variable)
                for replica, value in enumerate(replicas):
                    state[f"buffer{index}_replica{replica}"] = np.asarray(value.numpy())
        return state

    def set_pipeline_state(self, state):
        """Puts back a `pipeline_state()`: the next step goes on with the batches in flight then (the
        buffers are filled when the step function is made, if they do not exist yet)."""
        self._pipeline_steps = int(state["steps"])
        self._restored_pipeline = dict(state)
        if self._pipeline is not None:
            self._load_pipeline()

    def _load_pipeline(self):
        state, self._restored_pipeline = self._restored_pipeline, None
        for index, variable in enumerate(self._pipeline.variables):
            replicas = self.distribute_strategy.experimental_local_results(variable)
            for replica, component in enumerate(replicas):
                key = f"buffer{index}_replica{replica}"
                if key not in state:
                    raise ValueError(
                        f"The saved pipeline state has no {key!r}: it was saved by a different model or "
                        f"number of replicas."
                    )
                component.assign(state[key])

    def make_train_function(self, force=False):
        """For the pipelined block order: one step function per warm-up stage
        (step t < K−1 trains blocks 0..t), then the steady one (all blocks)."""
        if self.block_order != "pipelined":
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        num_blocks = len(self.blocks)
        if self._pipeline is None:  # per-replica buffers under the model's strategy
            with self.distribute_strategy.scope():
                self._pipeline = PipelineBuffers(
                    self.blocks,
                    self.block_devices,
                    linked_units=[self.method.linked_units(k, num_blocks) for k in range(num_blocks)],
                    images_shape=self.blocks[0].input_shape_without_batch if self.method.needs_images else None,
                )
        if getattr(self, "_restored_pipeline", None):
            self._load_pipeline()
        functions = {}

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
        shape = self.blocks[-1].features_shape
        for layer in self.inference_head:
            shape = layer.compute_output_shape(shape)
        return shape[-1]

    def _pipelined_step(self, data, active):
        """Blocks 0..active−1 each train on their input: block 0 on the batch,
        block k on what block k−1 wrote to its buffer on the previous step
        (with those examples' labels, and images where the method reads them),
        then write their output for block k+1. A linked tail (BackLink, HPFF)
        learns one step late: block k+1 takes the error of its loss at its
        input, pushes it through its copy of block k's tail as it was on that
        batch, and block k applies those tail gradients with its own step's."""
        x, y = unpack_batch(data)
        if self._pipeline is None:
            raise ValueError(
                "The pipeline is not set up: train with fit / train_on_batch, which call make_train_function first."
            )
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        # Every op of block k runs on block k's device: only the cut activations (their labels, images and
        # a link's tail input, error and weights) cross from one device to the next, once per step.
        held = [HeldBatch(x, y, x)]
        for cut in range(active - 1):  # read before any write
            with self.on_device(cut + 1):
                held.append(self._pipeline.read(cut, y, x))
        if "idle" in self.block_states:
            active = min(active, self.block_states.index("idle"))
        waiting = None  # the PendingLink of the previous block: its update waits for this block's error
        for index in range(active):
            batch = held[index]
            if self.block_states[index] == "frozen":
                features, _, _ = self._infer_block(index, ops.stop_gradient(batch.features))
                self._write_for_next_block(index, ops.stop_gradient(features), batch)
                continue
            # The targets of the examples this block's input came with (extra blocks train at block 0 only).
            targets = self.method.targets(
                self, batch.images, batch.labels, training=index == 0, update_metrics=index == 0
            )
            linked_units = self._linked_units(index)
            link = batch.link if waiting is not None else None
            step = self._train_block(
                index, ops.stop_gradient(batch.features), targets[index], weights[index], linked_units, link is not None
            )
            if waiting is not None:
                tail_gradients = None if link is None else self._link_through_copy(waiting, link, step.input_gradient)
                self._apply_block(waiting, tail_gradients)
                waiting = None
            self._update_block_metrics(index, batch.labels, step.logits, step.loss)
            self._write_for_next_block(index, ops.stop_gradient(step.features), batch, step, linked_units)
            if linked_units > 0:
                waiting = PendingLink(index, step, linked_units)
            else:
                self.method.after_block_update(self, index)
        if waiting is not None:  # warm-up: the next block starts next step, the tail's first link with it
            self._apply_block(waiting)
        if active < num_blocks or self.block_states[-1] != "train":  # warm-up, or no output trained
            return self._no_output_metrics(x, y)
        return self._update_output_metrics(batch.features, batch.labels, self.decode(step.logits), step.loss)

    def _linked_units(self, index):
        """How many units at the end of block `index` learn from the next block's error this step (0: none)."""
        num_blocks = len(self.blocks)
        if index + 1 >= num_blocks or self.block_states[index + 1] != "train":
            return 0
        return min(self.method.linked_units(index, num_blocks), len(self.blocks[index].units))

    def _write_for_next_block(self, index, features, batch, step=None, linked_units=0):
        """Block `index`'s output (with its examples' labels and images, and a linked tail's `step` and
        weights) into the buffer block `index`+1 reads next step."""
        if index + 1 < len(self.blocks):
            tail_weights = [v.value for v in self.blocks[index].tail_variables(linked_units)]
            with self.on_device(index + 1):
                self._pipeline.write(index, features, batch, step if linked_units else None, tail_weights)

    def _end_to_end_step(self, x, y):
        """One tape over the whole network; each block's optimizer applies its
        share of the gradient of the weighted sum of the losses of all heads."""
        weights = self.method.loss_weights(len(self.blocks))
        scales = [_loss_scale(block.optimizer) for block in self.blocks]
        mixed_precision = any(not isinstance(scale, float) for scale in scales)
        common_scale = tf.reduce_min(tf.stack([tf.convert_to_tensor(s) for s in scales])) if mixed_precision else 1.0
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

    def _update_block_metrics(self, index, y, logits, loss):
        position = self._logged_position.get(index)
        if position is not None:
            self.block_losses[position].update_state(unscale_for_replicas(loss))
            if index in self._accuracy_position:
                scores = self.method.head_prediction(self, index, logits)
                self.block_accuracies[self._accuracy_position[index]].update_state(y, scores)

    def _update_output_metrics(self, x, y, logits, loss):
        # The batch size from the labels: x may be a large tensor on another device.
        self._loss_tracker.update_state(unscale_for_replicas(loss), sample_weight=ops.shape(y)[0])
        return self._step_logs(self.compute_metrics(x, y, logits))

    def test_step(self, data):
        x, y = unpack_batch(data)
        targets = self.method.targets(self, x, y, training=False)
        features = x
        for index, block in enumerate(self.blocks):
            target = None if block.head is None else targets[index]
            features, block_logits, block_loss = self._infer_block(index, features, target)
            if block.head is not None:
                logits, loss = block_logits, block_loss
                self._update_block_metrics(index, y, logits, loss)
        return self._update_output_metrics(x, y, self.decode(logits), loss)

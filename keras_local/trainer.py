"""`LocalTrainer`: how a LocalModel trains and evaluates, one step at a time.

`LocalModel` (keras_local.model) is what the network is: its blocks, their
states, devices, optimizers and config. This mixin is how a step runs over
those blocks, the way Keras separates its `Trainer` from `Model`:

- `train_step` picks the step of the method and block order: `_local_step`
  (every block on its stopped input and its own loss; a tail linked to the
  next block waits for its error, mixed by `method.link`), `_end_to_end_step`
  (one tape over the network: `bp`, BWBPF's deep supervision) or
  `_pipelined_step` (block k on block k−1's output of the previous step);
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

import tensorflow as tf
from keras import ops

from keras_local.block import unpack_batch
from keras_local.block_order import PipelineBuffers, after
from keras_local.cluster import is_multi_worker
from keras_local.heads import logits_of
from keras_local.losses import unscale_for_replicas


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

    def _local_step(self, x, y, targets):
        """Each block learns from its own loss (against `targets[k]`) on the stopped output of the
        previous one; a block with a backward-link tail applies its update
        once the next block has sent back the error at its input. With the
        `"sequential"` block order a block's forward waits for the previous
        block's gradients."""
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        # waiting: (block, its LocalStep, its linked units). With the "sequential" block order block k+1's
        # forward waits for block k's local gradients and for block k−1's link update, so that no
        # block's activations outlive the step after its own.
        features, waiting, previous_gradients, link_gradients = x, None, [], []
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
                        logits, loss = logits_of(outputs), block.local_loss(targets[index], outputs, training=False)
                previous_gradients = []
                continue
            linked = index + 1 < num_blocks and self.block_states[index + 1] == "train"
            linked_units = self.method.linked_units(index, num_blocks) if linked else 0
            inputs = ops.stop_gradient(features)
            if self.block_order == "sequential":
                inputs = after(previous_gradients, inputs)
            with self.on_device(index):
                step = block.compute_local_gradients(
                    inputs,
                    targets[index],
                    loss_weight=weights[index],
                    linked_units=linked_units,
                    input_gradient=waiting is not None,
                )
            if waiting is not None:
                previous, previous_step, previous_length = waiting
                with self.on_device(index - 1):
                    error = self.method.link(previous_step.features_gradient, ops.cast(step.input_gradient, "float32"))
                    gradients = previous.finish_link(previous_step, error, previous_length)
                    previous.optimizer.apply(gradients, previous.trainable_variables)
                self.method.after_block_update(self, index - 1)
                link_gradients = gradients  # the next block's forward also waits for this update
                waiting = None
            if linked_units > 0:
                waiting = (block, step, linked_units)
            else:
                with self.on_device(index):
                    block.optimizer.apply(step.gradients, block.trainable_variables)
                self.method.after_block_update(self, index)
            self._update_block_metrics(index, y, step.logits, step.loss)
            features, previous_gradients = step.features, step.gradients + link_gradients
            link_gradients = []
            logits, loss = step.logits, step.loss
        return logits, loss

    def reset_pipeline(self):
        """Empties the pipeline: the next step starts a new warm-up."""
        self._pipeline_steps = 0

    def make_train_function(self, force=False):
        """For the pipelined block order: one step function per warm-up stage
        (step t < K−1 trains blocks 0..t), then the steady one (all blocks)."""
        if self.block_order != "pipelined":
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
        shape = self.blocks[-1].features_shape
        for layer in self.inference_head:
            shape = layer.compute_output_shape(shape)
        return shape[-1]

    def _pipelined_step(self, data, active):
        """Blocks 0..active−1 each train on their input: block 0 on the batch,
        block k on what block k−1 wrote to its buffer on the previous step
        (with those examples' labels), then write their output for block k+1."""
        x, y = unpack_batch(data)
        if self._pipeline is None:
            raise ValueError(
                "The pipeline is not set up: train with fit / train_on_batch, which call make_train_function first."
            )
        num_blocks = len(self.blocks)
        weights = self.method.loss_weights(num_blocks)
        # Every op of block k runs on block k's device: only the cut activations (and their labels) cross
        # from one device to the next, once per step.
        held = [(x, y)]
        for cut in range(active - 1):  # read before any write
            with self.on_device(cut + 1):
                held.append(self._pipeline.read(cut, y))
        if "idle" in self.block_states:
            active = min(active, self.block_states.index("idle"))
        for index in range(active):
            block, (inputs, labels) = self.blocks[index], held[index]
            if self.block_states[index] == "frozen":
                with self.on_device(index):
                    features = ops.stop_gradient(block(ops.stop_gradient(inputs), training=False))
                self._write_for_next_block(index, features, labels)
                continue
            # The targets of the labels this block's input came with (extra blocks train at block 0 only).
            targets = self.method.targets(self, None, labels, training=index == 0, update_metrics=index == 0)
            with self.on_device(index):
                step = block.compute_local_gradients(
                    ops.stop_gradient(inputs),
                    targets[index],
                    loss_weight=weights[index],
                )
                block.optimizer.apply(step.gradients, block.trainable_variables)
                features = ops.stop_gradient(step.features)
            self.method.after_block_update(self, index)
            self._update_block_metrics(index, labels, step.logits, step.loss)
            self._write_for_next_block(index, features, labels)
        if active < num_blocks or self.block_states[-1] != "train":  # warm-up, or no output trained
            return self._no_output_metrics(x, y)
        return self._update_output_metrics(inputs, labels, self.decode(step.logits), step.loss)

    def _write_for_next_block(self, index, features, labels):
        """Block `index`'s output (and its labels) into the buffer block `index`+1 reads next step."""
        if index + 1 < len(self.blocks):
            with self.on_device(index + 1):
                self._pipeline.write(index, features, labels)

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
            with self.on_device(index):
                features = block(features, training=False)
                if block.head is not None:
                    outputs = block.head(features, training=False)
                    logits, loss = logits_of(outputs), block.local_loss(targets[index], outputs, training=False)
            if block.head is not None:
                self._update_block_metrics(index, y, logits, loss)
        return self._update_output_metrics(x, y, self.decode(logits), loss)

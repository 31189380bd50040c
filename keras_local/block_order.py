"""How the blocks of one training step are ordered: together, sequential, pipelined.

- `"together"` (default): every block trains on the current batch; the graph
  leaves the executor free to order the blocks (it may run every forward
  first, holding all activations at once).
- `"sequential"`: block k+1's forward starts only after block k's gradients
  exist (control dependencies), so one block's activations are alive at a
  time: the memory saving of local training. Same updates as `"together"`.
- `"pipelined"`: block k trains on what block k−1 produced on the previous
  step (a one-step buffer per cut, with the labels, and the images where the
  method's loss reads them, carried along), so the K updates of a step have
  no data dependency and run concurrently on K devices. During the first K−1
  steps (the warm-up) block k only starts training at step k, once its
  buffer holds real data. A backward link (BackLink, HPFF) arrives one step
  late: the buffer also carries block k's tail input, own error, tail weights
  and state, block k+1's device runs that copy of the tail with its own
  error, and block k applies the tail's gradients with its next update.

Example:

```python
model = kl.build_model("resnet20", "gll", num_blocks=4, block_order="sequential")
```
"""

from typing import NamedTuple

import tensorflow as tf

BLOCK_ORDERS = ("together", "sequential", "pipelined")


def check_block_order(block_order, method):
    """Validates `block_order` for `method` (a `Method`); returns it."""
    if block_order not in BLOCK_ORDERS:
        raise ValueError(f"Unknown block_order {block_order!r}. Allowed: {', '.join(BLOCK_ORDERS)}.")
    if block_order != "together" and not method.cut_gradients:
        raise ValueError(
            f"block_order={block_order!r} needs blocks cut from each other, but method {method.name!r} "
            f"backpropagates one loss end to end through all blocks; use block_order='together'."
        )
    method.check_block_order(block_order)
    return block_order


def after(dependencies, tensor):
    """`tensor`, usable only once every tensor in `dependencies` exists."""
    dependencies = [d for d in dependencies if d is not None]
    if not dependencies or tf.executing_eagerly():
        return tensor
    with tf.control_dependencies(dependencies):
        return tf.identity(tensor, name="after_previous_block")


def _buffer(shape, dtype, batch=True):
    """A per-replica variable: with `batch`, of `shape` after a free batch
    dimension (any shape if `shape` is None); else of `shape` exactly."""
    if not batch:
        initial, free = tf.zeros(shape, dtype=dtype), tf.TensorShape(shape)
    elif shape is None:
        initial, free = tf.zeros([0], dtype=dtype), tf.TensorShape(None)
    else:
        initial, free = tf.zeros([0, *shape], dtype=dtype), tf.TensorShape([None, *shape])
    return tf.Variable(
        initial,
        shape=free,
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.NONE,
    )


class HeldLink(NamedTuple):
    """What block k sent the next block for its tail's backward link: the tail's input, the error of
    block k's own loss at its output, and the tail's non-trainable state and weights when it ran."""

    tail_inputs: object
    features_gradient: object
    tail_state: list
    tail_weights: list


class HeldBatch(NamedTuple):
    """What a block trains on in a pipelined step: its input, the labels and (for methods whose losses
    read them) the images of its examples, and the previous block's `HeldLink` if it has one."""

    features: object
    labels: object
    images: object = None
    link: HeldLink = None


class _LinkBuffers:
    """The buffers of one cut's backward link (a `HeldLink`), on the device of the block after the cut."""

    def __init__(self, block, linked_units):
        self.tail_inputs = _buffer(block.tail_input_shape(linked_units)[1:], block.compute_dtype)
        self.features_gradient = _buffer(block.features_shape[1:], "float32")
        self.tail_state = [_buffer(v.shape, v.dtype, batch=False) for v in block.tail_state(linked_units)]
        self.tail_weights = [_buffer(v.shape, v.dtype, batch=False) for v in block.tail_variables(linked_units)]

    @property
    def variables(self):
        return [self.tail_inputs, self.features_gradient, *self.tail_state, *self.tail_weights]

    def read(self):
        return HeldLink(*(self._read(field) for field in HeldLink._fields))

    def _read(self, field):
        value = getattr(self, field)
        if isinstance(value, list):
            return [variable.read_value() for variable in value]
        return value.read_value()

    def write(self, step, tail_weights):
        # A whole-block tail of block 0 reads the float32 images: held in the compute dtype its first
        # layer casts them to anyway.
        self.tail_inputs.assign(tf.cast(step.tail_inputs, self.tail_inputs.dtype))
        self.features_gradient.assign(step.features_gradient)
        for variable, value in zip(self.tail_state, step.tail_state):
            variable.assign(value)
        for variable, value in zip(self.tail_weights, tail_weights):
            variable.assign(value)


class PipelineBuffers:
    """The one-step buffers of a pipelined model, for each cut on the device
    of the block after it: the features the block before it produced on the
    previous step, their labels (as float32, of any shape; cast back when
    read), their images where the method's losses read them
    (`images_shape`), and where block k's tail learns from block k+1's error
    (`linked_units[k]` > 0) what that backward link needs (`HeldLink`).

    Transient training state: not saved with the model (`.keras` files).
    `RunCheckpoint` saves it with `variables` and the warm-up counter, so a
    resumed run goes on with the batches in flight. After a reload, a new
    `compile` or `LocalModel.reset_pipeline()`, the pipeline refills with a
    new warm-up.
    """

    def __init__(self, blocks, devices=None, linked_units=None, images_shape=None):
        self.features, self.labels, self.images, self.links = [], [], [], []
        for index, block in enumerate(blocks[:-1]):
            device = devices[index + 1] if devices else None
            linked = linked_units[index] if linked_units else 0
            with tf.device(device):
                self.features.append(_buffer(block.features_shape[1:], block.compute_dtype))
                self.labels.append(_buffer(None, "float32"))
                self.images.append(None if images_shape is None else _buffer(images_shape, "float32"))
                self.links.append(_LinkBuffers(block, linked) if linked else None)

    @property
    def variables(self):
        """Every buffer variable, in a fixed order (what a checkpoint saves)."""
        variables = []
        for features, labels, images, link in zip(self.features, self.labels, self.images, self.links):
            variables += [features, labels] + ([] if images is None else [images])
            variables += [] if link is None else link.variables
        return variables

    def read(self, cut, labels_like, images_like):
        """The `HeldBatch` held for the block after cut `cut` (0-based)."""
        labels = tf.cast(self.labels[cut].read_value(), labels_like.dtype)
        labels = tf.ensure_shape(labels, [None, *labels_like.shape[1:]])
        images = None
        if self.images[cut] is not None:
            images = tf.ensure_shape(
                tf.cast(self.images[cut].read_value(), images_like.dtype), [None, *images_like.shape[1:]]
            )
        link = None if self.links[cut] is None else self.links[cut].read()
        return HeldBatch(self.features[cut].read_value(), labels, images, link)

    def write(self, cut, features, batch, step=None, tail_weights=()):
        """Block `cut`'s output on the examples of `batch` (its `HeldBatch`) and, where its tail is
        linked, its `LocalStep` and the values of its tail's weights."""
        # (A user's layers built outside the model's dtype policy output float32 into a compute-dtype buffer.)
        self.features[cut].assign(tf.cast(features, self.features[cut].dtype))
        self.labels[cut].assign(tf.cast(batch.labels, "float32"))
        if self.images[cut] is not None:
            self.images[cut].assign(tf.cast(batch.images, "float32"))
        if self.links[cut] is not None and step is not None:
            self.links[cut].write(step, tail_weights)

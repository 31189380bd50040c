"""How the blocks of one training step are ordered: together, sequential, pipelined.

- `"together"` (default): every block trains on the current batch; the graph
  leaves the executor free to order the blocks (it may run every forward
  first, holding all activations at once).
- `"sequential"`: block k+1's forward starts only after block k's gradients
  exist (control dependencies), so one block's activations are alive at a
  time: the memory saving of local training. Same updates as `"together"`.
- `"pipelined"`: block k trains on what block k−1 produced on the previous
  step (a one-step buffer per cut, with the labels carried along), so the K
  updates of a step have no data dependency and run concurrently on K
  devices. During the first K−1 steps (the warm-up) block k only starts
  training at step k, once its buffer holds real data.

Example:

```python
model = kl.build_model("resnet20", "gll", num_blocks=4, block_order="sequential")
```
"""

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


def _buffer(shape, dtype):
    """A per-replica variable with a free batch dimension (or free shape)."""
    initial = tf.zeros([0] if shape is None else [0, *shape], dtype=dtype)
    return tf.Variable(
        initial,
        shape=tf.TensorShape(None if shape is None else [None, *shape]),
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_READ,
        aggregation=tf.VariableAggregation.NONE,
    )


class PipelineBuffers:
    """The one-step buffers of a pipelined model: for each cut, the features
    the block before it produced on the previous step and their labels (as
    float32, of any shape; cast back when read).

    Transient training state: not saved with the model. After a reload, a
    new `compile` or `LocalModel.reset_pipeline()`, the pipeline refills
    with a new warm-up.
    """

    def __init__(self, blocks, devices=None):
        self.features, self.labels = [], []
        for index, block in enumerate(blocks[:-1]):
            device = devices[index + 1] if devices else None
            with tf.device(device):
                self.features.append(_buffer(block.features_shape[1:], block.compute_dtype))
                self.labels.append(_buffer(None, "float32"))

    def read(self, cut, label_like):
        """(features, labels) held for the block after cut `cut` (0-based)."""
        labels = tf.cast(self.labels[cut].read_value(), label_like.dtype)
        labels = tf.ensure_shape(labels, [None, *label_like.shape[1:]])
        return self.features[cut].read_value(), labels

    def write(self, cut, features, labels):
        self.features[cut].assign(features)
        self.labels[cut].assign(tf.cast(labels, "float32"))

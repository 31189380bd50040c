"""Associated Learning's label path and bridges.

The model's extra blocks are the label blocks: block i is the encoder g_i
(its unit) with the decoder h_i (its head); g_1 reads the one-hot labels and
h_1 reconstructs them. Block i of the network gets the bridge b_i as its head.

- `targets`: t_0 = one-hot y, t_i = g_i(sg(t_{i−1})); trains each label block
  on ‖h_i(t_i) − sg(t_{i−1})‖² and returns the stopped codes sg(t_i), the
  blocks' targets;
- `decoders`: h_L … h_1, which turn the last bridge's output into the prediction.
"""

import keras
from keras import ops

from keras_local.block import Block
from keras_local.losses import unscale_for_replicas
from keras_local.methods.associated.bridge import Bridge


def bridge(method, width, index):
    """b_i: Flatten (or pooling) → Dense(expansion·n) → Dense(n), the target activation."""
    return Bridge(
        width,
        expansion=method.bridge_expansion,
        activation=method.target_activation,
        pooled=method.bridge == "pooled",
        name=f"bridge_{index}",
    )


def label_blocks(method, width, num_classes, count):
    """The encoders g_i with their decoders h_i as heads, built."""
    blocks = []
    for index in range(count):
        encoder = keras.layers.Dense(
            width, activation=method.target_activation, kernel_initializer="he_normal", name=f"encoder_{index}"
        )
        decoder = keras.layers.Dense(
            num_classes if index == 0 else width,
            activation=method.target_activation,
            kernel_initializer="he_normal",
            name=f"decoder_{index}",
        )
        block = Block([encoder], head=decoder, name=f"label_block_{index}")
        block.build((None, num_classes if index == 0 else width))
        blocks.append(block)
    return blocks


def targets(model, y, training=True, update_metrics=True):
    """The codes sg(t_i) the blocks regress onto; trains the label blocks when `training`."""
    num_classes = model.extra_blocks[0].head.units  # h_1, a Dense, reconstructs the one-hot labels
    code = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), num_classes)
    codes = []
    for index, block in enumerate(model.extra_blocks):
        code = ops.stop_gradient(code)
        with model.on_device(index):
            if training:
                step = block.compute_local_gradients(code, code)
                block.optimizer.apply(step.gradients, block.trainable_variables)
                next_code, loss = step.features, step.loss
            else:
                next_code = block(code, training=False)
                loss = block.compute_loss(y=code, y_pred=block.head(next_code, training=False), training=False)
        if update_metrics:
            model.extra_losses[index].update_state(unscale_for_replicas(loss))
        code = next_code
        codes.append(ops.stop_gradient(code))
    return codes


def decoders(model):
    """h_L … h_1: applied after the last bridge, they give the network's output."""
    return [block.head for block in reversed(model.extra_blocks)]

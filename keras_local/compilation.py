"""How a LocalModel's training step is compiled with XLA: as one program, or one program per block.

Keras compiles a model's whole training step into one XLA program when
`compile(jit_compile=...)` is on, and `jit_compile="auto"` turns it on by
itself on a machine with a GPU. One program over every block lets XLA, not
the block order, decide what runs when and what stays alive, so it cannot
keep three promises of local training:

- `block_order="sequential"`: one block's activations alive at a time (one
  program holds them all: measured on CPU XLA, the peak of `"together"`);
- `block_order="pipelined"`: the one-step buffers between blocks change
  shape on the first step, which an XLA program cannot do;
- blocks on several devices: an XLA program runs on one device.

There, each block's forward, gradients and update are its own XLA program
(`block_program`), placed on the block's device and called by a step
function that XLA does not compile: the block order's control edges, the
pipeline's buffers, the backward links' errors and the copies between
devices stay outside XLA, and everything inside one block is compiled. A
backward link's tail is then run again when the next block's error arrives
(`Block.finish_link`): a tape cannot leave a program.

With `block_order="together"` on one device, the step is one program, as
Keras makes it. `jit_compile` keeps the meaning it has in Keras:
`model.jit_compile` is True whenever XLA compiles the step, one way or the
other, and `"auto"` turns it on where a GPU is and no distribution strategy.

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2, block_order="sequential")
model.compile(optimizer="sgd", jit_compile=True)
model.compiles_blocks    # True: each block is its own XLA program
```
"""

import tensorflow as tf


def compiles_blocks(jit_compile, block_order, block_devices):
    """Whether a model with this XLA setting, block order and block placement
    compiles each block as its own program (see the module doc)."""
    several_devices = block_devices is not None and len(set(block_devices)) > 1
    return bool(jit_compile) and (block_order != "together" or several_devices)


def block_program(function):
    """`function` as an XLA program of its own (traced once, where it is first called)."""
    return tf.function(function, jit_compile=True, autograph=False)

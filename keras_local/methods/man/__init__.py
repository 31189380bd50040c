"""MAN, the Momentum Auxiliary Network (Su et al., ECCV 2024; JunhaoSu0/MAN).

An option of the auxiliary-head methods (`man=True` on `gll`, `dgl`,
`infopro`): block k's head reads the sum of a trainable copy of block k+1's
first unit and an exponential moving average of it (`MomentumHead`), and
the average follows block k+1 after each of block k's updates.

The reference's order is kept: within a step, block k's average moves
towards block k+1's first unit as it was before block k+1's update of that
step (the reference updates it after module k's backward, before the
optimizer step). The last block keeps the output head.

Example:

```python
model = kl.build_model("resnet20", "dgl", num_blocks=4, man=True, man_momentum=0.995)
```
"""

from keras_local.methods.man.head import MomentumHead, fresh_copy

DEFAULT_MOMENTUM = 0.995  # the reference's README and paper (its class default is 0.999)


def momentum_head(head, index, groups):
    """Block `index`'s head wrapped by MAN (the next block's first unit is copied)."""
    source = groups[index + 1][0]
    return MomentumHead(
        head,
        local=fresh_copy(source, f"block{index}_man_local"),
        average=fresh_copy(source, f"block{index}_man_average"),
        name=f"block{index}_man",
    )


def update_average(model, index, momentum):
    """After block `index`'s update: its average moves towards block `index`+1's first unit."""
    head = model.blocks[index].head
    if isinstance(head, MomentumHead) and index + 1 < len(model.blocks):
        head.update_average(model.blocks[index + 1].units[0], momentum)


__all__ = ["DEFAULT_MOMENTUM", "MomentumHead", "momentum_head", "update_average"]

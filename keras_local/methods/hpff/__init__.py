"""HPFF: hierarchical local learning with patch feature fusion (Su et al., ECCV 2024; Zeudfish/HPFF).

An option of the auxiliary-head methods (`hpff=True` on `gll`, `dgl`,
`infopro`). Two parts:

- **HiLo.** Block k (0 < k < K−1) has two auxiliary nets on its features
  (`CascadeHead`): its independent module's, weighted `1 − cascade_weight`
  (0.001), and its cascade module's, weighted `cascade_weight` (0.999),
  whose loss trains the pair (k−1, k): its error at block k's input is sent
  back through block k−1 (a backward link over the whole block, added to
  block k−1's own error). The last block's output head serves both of its
  terms (so its loss is the plain one, and `cascade_weight` of it is sent
  back); block 0 has only its independent net (weight `1 − cascade_weight`).
  So θ(B_k) gets ∇[(1−c)·L_own_k + c·L_cascade_k + c·L_cascade_{k+1}].
- **PFF.** Every auxiliary net reads its features cut into `patch_grid` x
  `patch_grid` patches and averages its outputs over them (`PatchFusion`).

Where the CIFAR reference differs (kept as the paper states it): block 0
has no loss of its own there (the pair's cascade loss alone trains it),
and only its reconstruction decoders read patches, one decoder per patch,
their four losses summed (here the patches share the whole auxiliary net,
and the reconstruction loss is their mean).

Example:

```python
model = kl.build_model("resnet20", "dgl", num_blocks=4, hpff=True, hpff_cascade_weight=0.999)
```
"""

from keras_local.methods.hpff.head import CascadeHead, PatchFusion
from keras_local.methods.hpff.loss import HiLoLoss

DEFAULT_CASCADE_WEIGHT = 0.999  # the reference's wy (its wx = 0.001 is 1 − wy)
DEFAULT_PATCH_GRID = 2


def patched(head, grid, image_shape, name):
    """A fresh copy of `head` reading `grid` x `grid` patches (a reconstructing
    head then reconstructs the matching part of the image)."""
    config = {**head.get_config(), "name": f"{name}_net"}
    if "image_shape" in config and grid > 1:
        height, width, channels = image_shape
        config["image_shape"] = [height // grid, width // grid, channels]
    return PatchFusion(type(head).from_config(config), grid=grid, name=name)


def hilo_head(head, index, grid, image_shape):
    """Block `index`'s auxiliary head under HPFF (not the last block's)."""
    prefix = f"block{index}"
    own = patched(head, grid, image_shape, f"{prefix}_own")
    if index == 0:
        return own
    return CascadeHead(own, patched(head, grid, image_shape, f"{prefix}_cascade"), name=f"{prefix}_hilo")


def hilo_loss(index, loss, own_loss, cascade_weight, part="all"):
    """Block `index`'s loss (`part="cascade"`: the term sent back to block `index` − 1)."""
    if index == 0:
        return None if part == "cascade" else own_loss
    return HiLoLoss(loss, own_loss=own_loss, cascade_weight=cascade_weight, part=part)


def loss_weights(num_blocks, cascade_weight):
    """Block 0's only loss is its independent module's."""
    if num_blocks == 1:
        return [1.0]
    return [1.0 - cascade_weight] + [1.0] * (num_blocks - 1)


__all__ = ["CascadeHead", "HiLoLoss", "PatchFusion", "hilo_head", "hilo_loss", "loss_weights"]

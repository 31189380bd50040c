"""MAN and HPFF as options of the auxiliary-head methods (`gll`, `dgl`, `infopro`).

- `man=True`: MAN (`keras_local.methods.man`): block k's head reads
  `LB_k(x) + EMA_k(x)`, LB_k a trainable copy and EMA_k a moving average
  (momentum `man_momentum`) of block k+1's first unit.
- `hpff=True`: HPFF (`keras_local.methods.hpff`): block k also trains with
  block k+1 through a cascade loss of weight `hpff_cascade_weight`, and its
  auxiliary nets read `hpff_patch_grid` x `hpff_patch_grid` patches of its
  features.

One at a time: each replaces the auxiliary heads its own way.

Example:

```python
model = kl.build_model("resnet20", "dgl", num_blocks=4, hpff=True)
```
"""

from keras_local.methods import hpff as hpff_rule
from keras_local.methods import man as man_rule
from keras_local.methods.base import WHOLE_BLOCK, Method, SearchSpace, check_number
from keras_local.methods.protocols import infopro_protocol
from keras_local.recipes import Recipe


class ComposedRules(Method):
    """A local method whose auxiliary heads MAN or HPFF may replace (the options above)."""

    options = ("man", "man_momentum", "hpff", "hpff_cascade_weight", "hpff_patch_grid")
    search = SearchSpace(options={"man": [False], "hpff": [False]})
    man = hpff = False
    man_momentum = man_rule.DEFAULT_MOMENTUM
    hpff_cascade_weight = hpff_rule.DEFAULT_CASCADE_WEIGHT
    hpff_patch_grid = hpff_rule.DEFAULT_PATCH_GRID

    def __init__(
        self,
        man=False,
        man_momentum=man_rule.DEFAULT_MOMENTUM,
        hpff=False,
        hpff_cascade_weight=hpff_rule.DEFAULT_CASCADE_WEIGHT,
        hpff_patch_grid=hpff_rule.DEFAULT_PATCH_GRID,
    ):
        for name, value in (("man", man), ("hpff", hpff)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False, got {value!r}.")
        if man and hpff:
            raise ValueError(
                "man=True and hpff=True cannot be combined: each replaces the auxiliary heads its own way. Choose one."
            )
        self.man, self.hpff = man, hpff
        self.man_momentum = check_number("man_momentum", man_momentum, 0.0, 1.0)
        self.hpff_cascade_weight = check_number("hpff_cascade_weight", hpff_cascade_weight, 0.0, 1.0)
        self.hpff_patch_grid = check_number("hpff_patch_grid", hpff_patch_grid, 1, integer=True)

    def auxiliary_head(self, index, head, network):
        if self.man:
            return man_rule.momentum_head(head, index, network.groups)
        if self.hpff:
            return hpff_rule.hilo_head(head, index, self.hpff_patch_grid, network.input_shape)
        return head

    def why_blocks_cannot_train_alone(self, num_blocks):
        if self.man:
            return "MAN's moving average of block k+1 follows that block's updates in the model's step"
        return super().why_blocks_cannot_train_alone(num_blocks)

    def after_block_update(self, model, index):
        if self.man:
            man_rule.update_average(model, index, self.man_momentum)

    def module_loss(self, index, num_blocks, loss):
        """Block `index`'s own objective (InfoPro's weighted terms; the compiled loss here)."""
        return loss

    def independent_loss(self, num_blocks, loss):
        """HPFF's independent module's loss (InfoPro: its auxiliary term alone)."""
        return loss

    def block_loss(self, index, num_blocks, loss):
        base = self.module_loss(index, num_blocks, loss)
        if not self.hpff or index == num_blocks - 1:
            return base
        return hpff_rule.hilo_loss(index, base, self.independent_loss(num_blocks, loss), self.hpff_cascade_weight)

    def sent_loss(self, index, num_blocks, loss):
        if not self.hpff or index == 0:
            return None
        base = self.module_loss(index, num_blocks, loss)
        return hpff_rule.hilo_loss(
            index, base, self.independent_loss(num_blocks, loss), self.hpff_cascade_weight, part="cascade"
        )

    def loss_weights(self, num_blocks):
        if self.hpff:
            return hpff_rule.loss_weights(num_blocks, self.hpff_cascade_weight)
        return super().loss_weights(num_blocks)

    def linked_units(self, block_index, num_blocks):
        return WHOLE_BLOCK if self.hpff and block_index < num_blocks - 1 else 0

    def link(self, own_error, next_error):
        """HPFF: a block learns from its own losses and the next block's cascade loss."""
        return own_error + next_error

    def composable_config(self):
        return {
            "man": self.man,
            "man_momentum": self.man_momentum,
            "hpff": self.hpff,
            "hpff_cascade_weight": self.hpff_cascade_weight,
            "hpff_patch_grid": self.hpff_patch_grid,
        }

    def get_config(self):
        return self.composable_config()


def composed_recipe(method, architecture, method_options=None):
    """MAN's and HPFF's protocol (their CIFAR code is InfoPro's `train.py`): one SGD, Nesterov 0.9, lr 0.8
    at batch 1024, weight decay 1e-4, 400 epochs, cosine with 10 warm-up epochs."""
    rule = "MAN (JunhaoSu0/MAN" if method.man else "HPFF (Zeudfish/HPFF"
    options = {**method.get_config(), **(method_options or {})}
    return Recipe(
        infopro_protocol(architecture, 400, options, head=method.default_head),
        f"{rule} 'Exp on CIFAR' train.py and README, built on InfoPro-Pytorch's): one SGD, Nesterov momentum "
        f"0.9, lr 0.8 at batch 1024, weight decay 1e-4, 400 epochs, --cos_lr (10 epochs of warm-up from "
        f"0.01, then cosine), InfoPro's splits, cross-entropy local losses (--local_loss_mode cross_entropy), "
        f"momentum 0.995 (MAN), wx 0.001 / wy 0.999 (HPFF)",
    )

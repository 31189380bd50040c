"""AugLocal (Ma et al., "Scaling Supervised Local Learning with Augmented Auxiliary Networks", ICLR 2024)."""

from keras_local.methods.auglocal.head import AugmentedHead, augmented_units, pyramid_depth, sampled_layers
from keras_local.methods.base import SearchSpace, check_number, register_method
from keras_local.methods.gll import GreedyLocal
from keras_local.methods.protocols import infopro_protocol
from keras_local.recipes import Recipe


@register_method
class AugLocal(GreedyLocal):
    """Greedy local learning whose auxiliary nets are built from the network itself.

    The gradients are gll's (block k reads stop_gradient(x_{k−1}); θ(B_k) and
    its auxiliary net get ∇L_k only, L_k the cross-entropy). What AugLocal
    adds is block k's auxiliary net (`AugmentedHead`): new units with the
    widths of `d_k` later layers of the network, sampled uniformly among the
    layers after block k (unit indices `round(l + (L − l − 1)/d_k · i)`,
    i = 1..d_k, l the block's last unit), strided where the width doubles,
    then global average pooling and a linear classifier (with BatchNorm
    before it when `depth` ≤ 1). The depth is pyramidal:
    `d_k = max(1, round(d·(1 − kτ/(K−2)) + kτ/(K−2)))`.

    On the CIFAR ResNets and VGG (units that are residual or conv layers).
    The reference's "K = 16, d = 2" on ResNet-32 has K − d = 14 modules:
    `cuts=list(range(1, 14))`, one unit per block and the last 3 with the output
    head (`reference_recipe`).

    Args:
        depth: d, the first block's number of auxiliary units (the
            reference's 2 for ResNet-32, 3 for ResNet-110).
        tau: τ, how fast the depth shrinks with k (0.5 in the reference; 0:
            every block gets d).

    Example:

    ```python
    model = kl.build_model("resnet20", "auglocal", num_blocks=4, depth=2, tau=0.5)
    len(model.blocks[0].head.units)   # 2
    ```
    """

    name = "auglocal"
    options = ("depth", "tau")
    search = SearchSpace(options={"depth": [1, 2, 3]})

    def __init__(self, depth=2, tau=0.5):
        self.depth = check_number("depth", depth, 1, integer=True)
        self.tau = check_number("tau", tau, 0.0, 1.0)

    def auxiliary_head(self, index, head, network):
        units = [unit for group in network.groups for unit in group]
        layer = sum(len(group) for group in network.groups[: index + 1]) - 1
        depth = pyramid_depth(self.depth, self.tau, index, len(network.groups))
        widths = [shape[-1] for shape in network.unit_shapes]
        return AugmentedHead(
            augmented_units(units, widths, layer, depth, f"block{index}"),
            network.num_classes,
            batch_norm=self.depth <= 1,
            name=f"block{index}_auglocal",
        )

    def reference_recipe(self, architecture):
        depth = 3 if architecture == "resnet110" else 2
        return Recipe(
            infopro_protocol(architecture, 400, {"depth": depth, "tau": 0.5}, split="even"),
            "AugLocal reference code (ChenxiangMA/AugLocal train.py, run.sh, README): one SGD, Nesterov "
            "momentum 0.9, lr 0.8 at batch 1024, weight decay 1e-4 (--wd), 400 epochs, --cos_lr (10 epochs of "
            "warm-up from 0.01, then cosine), --pyramid --pyramid_coeff 0.5, --aux_net_depth 2 (ResNet-32) / "
            "3 (ResNet-110); layer-wise modules, K − d of them",
        )

    def get_config(self):
        return {"depth": self.depth, "tau": self.tau}


__all__ = ["AugLocal", "AugmentedHead", "pyramid_depth", "sampled_layers"]

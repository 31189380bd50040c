"""Decoupled Greedy Learning (DGL; Belilovsky, Eickenberg and Oyallon)."""

from keras_local.methods.base import register_method
from keras_local.methods.composed import composed_recipe
from keras_local.methods.dgl.head import DGLHead
from keras_local.methods.gll import GreedyLocal
from keras_local.recipes import Recipe, piecewise


@register_method
class DecoupledGreedy(GreedyLocal):
    """Greedy local learning with DGL's auxiliary networks.

    The gradients are gll's (block k reads stop_gradient(x_{k−1}); θ(B_k) and
    its auxiliary net get ∇L_k only); what DGL adds is the auxiliary net,
    `mlp_sr` by default (`head="mlp"` or `"cnn"` for its study's others, see
    `keras_local.methods.dgl.DGLHead`). DGL's reference trains the modules one
    after the other on each batch, which is the `"sequential"` block order.

    Example:

    ```python
    model = kl.build_model("dgl_cnn6", "dgl", num_blocks=6)   # layer-wise, mlp_sr heads
    ```
    """

    name = "dgl"
    default_head = "mlp_sr"

    def output_head(self, num_classes, features_shape):
        """The reference's last module: pool to 2x2 → two [Dense(4F) + BN +
        ReLU] → Dense (`auxillary_classifier2(n_lin=0, mlp_layers=2)`)."""
        if len(features_shape) != 4:  # a dense network: nothing to pool
            return super().output_head(num_classes, features_shape)
        return DGLHead(num_classes, variant="mlp", mlp_layers=2, name="output_head")

    def reference_recipe(self, architecture):
        if self.man or self.hpff:
            return composed_recipe(self, architecture)

        return Recipe(
            {
                "optimizer": "sgd",
                "learning_rate": 0.1,
                "momentum": 0.9,
                "nesterov": False,
                "weight_decay": 5e-4,
                "weight_decay_scope": "all",
                "batch_size": 128,
                "epochs": 50,
                "warmup_epochs": 0,
                "head": "mlp_sr",
                "split": "even",
                "block_order": "sequential",
                **piecewise([0.3, 0.6, 0.9], 0.2),
            },
            "DGL reference code (eugenium/DGL auxiliary_nets_study/cifar_dgl.py): SGD per block, lr 0.1 × "
            "0.2^(epoch // 15), momentum 0.9, weight decay 5e-4, batch 128, 50 epochs, mlp-sr auxiliary nets; "
            "each module trained in turn on every batch (block order sequential)",
        )

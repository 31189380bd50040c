"""Decoupled Greedy Learning (DGL; Belilovsky, Eickenberg and Oyallon)."""

from keras_local.methods.gll import GreedyLocal


class DecoupledGreedy(GreedyLocal):
    """Greedy local learning with DGL's auxiliary networks.

    The gradients are gll's (block k reads stop_gradient(x_{k−1}); θ(B_k) and
    its auxiliary net get ∇L_k only); what DGL adds is the auxiliary net,
    `mlp_sr` by default (`head="mlp"` or `"cnn"` for its study's others, see
    `keras_local.heads.DGLHead`). DGL's reference trains the modules one
    after the other on each batch, which is the `"sequential"` schedule.

    Example:

    ```python
    model = kl.build_model("dgl_cnn6", "dgl", num_blocks=6)   # layer-wise, mlp_sr heads
    ```
    """

    name = "dgl"
    default_head = "mlp_sr"

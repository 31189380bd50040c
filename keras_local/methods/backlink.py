"""BackLink: local training with backward links (Guo et al., IEEE TAI 2023)."""

from keras_local.methods.base import Method, SearchSpace, check_number, register_method
from keras_local.methods.gll import backlink_paper_recipe


@register_method
class BackLink(Method):
    """Greedy local learning plus a one-hop backward link into each block's tail.

    As `gll`, every block reads `stop_gradient` of the previous block's output
    and learns from its own local loss. In addition the last
    `propagation_length` units of block k−1 (its tail) receive block k's
    error ∂L_k/∂x_k, pushed back through the tail only: the tail's parameters
    get `alpha·∂L_{k−1}/∂θ + (1 − alpha)·∂L_k/∂θ`, the rest of block k−1 and
    its head get ∂L_{k−1}/∂θ, and nothing travels further back. The last
    block gets only its own loss. `propagation_length=0` or `alpha=1` is
    exactly `gll`.

    With `block_order="together"` the tail's tape is kept until block k has
    computed the gradient of its loss w.r.t. its input, which is pushed through
    it with `output_gradients`; `"sequential"` keeps only the tail's input and
    runs the tail again then (its activations do not outlive its block's
    step). With `"pipelined"` the link arrives one step late, the only
    staleness: block k's device runs a copy of block k−1's tail as it was on
    that batch (its input, weights and state travel with the features),
    pushes α·(block k−1's own error) + (1 − α)·(block k's error) through it,
    and block k−1 applies those tail gradients with its next update.

    Args:
        alpha: 0..1, the weight of the tail's own loss (the paper searches
            {0, 0.25, 0.5, 0.75, 1}).
        propagation_length: the paper's l, counted in units (residual blocks
            of a ResNet, conv or dense layers otherwise); at most the length
            of every block that has a next block. It is what `linked_units`
            returns for every block but the last: the length of the tail.

    Example:

    ```python
    model = kl.build_model("resnet32", method="backlink", num_blocks=4,
                           alpha=0.5, propagation_length=1)
    ```
    """

    name = "backlink"
    options = ("alpha", "propagation_length")
    schedulable = ("alpha",)
    search = SearchSpace(
        options={"alpha": [0.0, 0.25, 0.5, 0.75, 1.0], "propagation_length": [1, 2]}, tail_option="propagation_length"
    )

    def __init__(self, alpha=0.5, propagation_length=1):
        self.alpha = check_number("alpha", alpha, 0.0, 1.0)
        self.propagation_length = check_number("propagation_length", propagation_length, 0, integer=True)

    def reference_recipe(self, architecture):

        return backlink_paper_recipe(architecture, head="linear", method_options=self.get_config())

    def linked_units(self, block_index, num_blocks):
        # A scheduled alpha is a variable: the link stays, and alpha = 1 mixes in nothing.
        if block_index >= num_blocks - 1 or (isinstance(self.alpha, float) and self.alpha == 1.0):
            return 0
        return self.propagation_length

    def link(self, own_error, next_error):
        """The paper's rule: the tail learns from α·∂L_{k−1} + (1 − α)·∂L_k."""
        return self.alpha * own_error + (1.0 - self.alpha) * next_error

    def validate(self, block_sizes):
        linked = block_sizes[:-1]
        if linked and self.propagation_length > min(linked):
            raise ValueError(
                f"propagation_length={self.propagation_length} is longer than a block it links "
                f"into: the blocks have {list(block_sizes)} units, so propagation_length must be "
                f"at most {min(linked)} (the shortest block but the last)."
            )

    def get_config(self):
        return {"alpha": self.alpha, "propagation_length": self.propagation_length}

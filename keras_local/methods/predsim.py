"""PredSim (Nøkland and Eidnes, "Training neural networks with local error signals")."""

from keras_local.losses import PredSimLoss
from keras_local.methods.base import check_number
from keras_local.methods.gll import GreedyLocal


class PredSim(GreedyLocal):
    """Greedy local learning with PredSim's loss.

    Each block's head (`predsim`: a zero-initialised prediction layer and the
    similarity branch's 3x3 conv) is trained on
    `(1 − β)·CE + β·MSE(S(h'), S(y))` (`keras_local.losses.PredSimLoss`);
    the network's output layer, a block of its own reading stop_gradient of
    the last block (like BWBPF's), on `(1 − β)·CE`. β = 0.99 by default.
    Block k reads stop_gradient(x_{k−1}), as in gll. The logged `loss` is
    therefore (1 − β)·CE of the output.

    Example:

    ```python
    model = kl.build_model("vgg8b", "predsim", num_blocks=7)   # every layer a block
    ```
    """

    name = "predsim"
    options = ("beta",)
    schedulable = ("beta",)
    default_head = "predsim"
    separate_output_block = True

    def __init__(self, beta=0.99):
        self.beta = check_number("beta", beta, 0.0, 1.0)

    @property
    def default_loss(self):
        return PredSimLoss(self.beta)

    def bind_variable(self, name, variable, model):
        super().bind_variable(name, variable, model)
        for loss in {id(block.loss): block.loss for block in model.blocks}.values():
            if isinstance(loss, PredSimLoss):  # the compiled losses read it too
                loss.beta = variable

    def get_config(self):
        return {"beta": self.beta}

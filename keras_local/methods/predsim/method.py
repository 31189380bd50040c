"""PredSim (Nøkland and Eidnes, "Training neural networks with local error signals")."""

import keras

from keras_local.heads import LinearHead
from keras_local.methods.base import SearchSpace, check_number, register_method
from keras_local.methods.gll import GreedyLocal
from keras_local.methods.predsim.loss import PredSimLoss
from keras_local.recipes import Recipe, piecewise


@register_method
class PredSim(GreedyLocal):
    """Greedy local learning with PredSim's loss.

    Each block's head (`predsim`: a zero-initialised prediction layer and the
    similarity branch's 3x3 conv) is trained on
    `(1 − β)·CE + β·MSE(S(h'), S(y))` (`keras_local.methods.predsim.PredSimLoss`);
    the network's output layer, a zero-initialised Dense (as the reference's)
    in a block of its own reading stop_gradient of the last block (like
    BWBPF's), on plain CE (`output_loss="plain"`, what SEDONA, BWBPF's
    baseline source, trains) or on `(1 − β)·CE` (`"scaled"`, the reference
    code's). β = 0.99 by default. Block k reads stop_gradient(x_{k−1}), as
    in gll.

    The scaled output loss only works with the reference's recipe (Adam, no
    weight decay; `reference_recipe`): Adam ignores the gradient's scale,
    but under SGD the output's step is 100× smaller than the blocks' while a
    coupled weight decay is not scaled, and the output stays at chance.

    Example:

    ```python
    model = kl.build_model("vgg8b", "predsim", num_blocks=7)   # every layer a block
    ```
    """

    name = "predsim"
    options = ("beta", "output_loss")
    search = SearchSpace()  # not gll's MAN / HPFF options
    schedulable = ("beta",)
    default_head = "predsim"
    separate_output_block = True

    OUTPUT_LOSSES = ("plain", "scaled")

    def __init__(self, beta=0.99, output_loss="plain"):
        self.beta = check_number("beta", beta, 0.0, 1.0)
        if output_loss not in self.OUTPUT_LOSSES:
            raise ValueError(
                f"Unknown output_loss {output_loss!r}. Allowed: {', '.join(self.OUTPUT_LOSSES)} "
                f"(plain: CE; scaled: (1 - beta)·CE, the reference code's)."
            )
        self.output_loss = output_loss

    def block_loss(self, index, num_blocks, loss):
        if index == num_blocks - 1 and self.output_loss == "plain" and isinstance(loss, PredSimLoss):
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return loss

    def output_head(self, num_classes, features_shape):

        return LinearHead(num_classes, kernel_initializer="zeros", name="output_head")

    def reference_recipe(self, architecture):
        return Recipe(
            {
                "optimizer": "adam",
                "learning_rate": 5e-4,
                "weight_decay": 0.0,
                "weight_decay_scope": "all",
                "batch_size": 128,
                "epochs": 400,
                "warmup_epochs": 0,
                "head": "predsim",
                "split": "even",
                "method_options": {"beta": self.beta, "output_loss": "scaled"},
                **piecewise([0.5, 0.75, 0.875, 0.9375], 0.25),
            },
            "PredSim reference code (anokland/local-loss train.py and README): Adam per layer, lr 5e-4, "
            "weight decay 0, batch 128, 400 epochs, lr × 0.25 at epochs 200/300/350/375, output layer on "
            "(1 − β)·CE, zero-initialised",
        )

    @property
    def default_loss(self):
        return PredSimLoss(self.beta)

    def bind_variable(self, name, variable, model):
        super().bind_variable(name, variable, model)
        for loss in {id(block.loss): block.loss for block in model.blocks}.values():
            if isinstance(loss, PredSimLoss):  # the compiled losses read it too
                loss.beta = variable

    def get_config(self):
        return {"beta": self.beta, "output_loss": self.output_loss}

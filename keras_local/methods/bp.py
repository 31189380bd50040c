"""End-to-end backpropagation: the baseline every table compares with."""

from keras_local.methods.base import Method, SearchSpace, register_method
from keras_local.recipes import Recipe, piecewise


@register_method
class Backprop(Method):
    """One loss, CE(o(h_K)), differentiated through every block; no aux heads.

    The network still has K blocks (each with its own optimizer), so it can be
    compared with local methods block by block.
    """

    name = "bp"
    cut_gradients = False
    aux_heads = False

    search = SearchSpace(cut=False)  # one network: a search gives bp no cuts

    def reference_recipe(self, architecture):
        return Recipe(
            {
                "optimizer": "sgd",
                "learning_rate": 0.1,
                "momentum": 0.9,
                "nesterov": False,
                "weight_decay": 1e-4,
                "weight_decay_scope": "all",
                "batch_size": 128,
                "epochs": 164,
                "warmup_epochs": 0,
                **piecewise([0.5, 0.75], 0.1),
            },
            "He et al. 2016 (Deep Residual Learning) §4.2, CIFAR-10: SGD 0.1, momentum 0.9, weight decay "
            "1e-4, batch 128, 64k iterations (164 epochs), lr ÷10 at 32k and 48k",
        )

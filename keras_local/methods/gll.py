"""Greedy local learning (GLL, "Greedy SL", BackLink's l = 0), with MAN and HPFF as options."""

from keras_local.methods.base import register_method
from keras_local.methods.composed import ComposedRules, composed_recipe
from keras_local.recipes import Recipe

# BackLink §4 (its GLL is the baseline of its Table 1): lr per network.
BACKLINK_LEARNING_RATES = {"alexnet": 0.01, "vgg16": 0.01, "resnet32": 0.5, "resnet110": 0.3}


def backlink_paper_recipe(architecture, head, method_options=None):
    """BackLink §4's recipe, which its GLL baseline shares."""
    vgg_like = architecture.startswith(("vgg", "alexnet"))
    return Recipe(
        {
            "optimizer": "sgd",
            "learning_rate": BACKLINK_LEARNING_RATES.get(architecture, 0.5),
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 1e-4 if architecture.startswith("vgg") else 5e-4,
            "weight_decay_scope": "all",
            "batch_size": 512,
            "epochs": {"alexnet": 100}.get(architecture, 150 if vgg_like else 200),
            "lr_schedule": "cosine",
            "warmup_epochs": 0,
            "head": head,
            "split": "even",
            "method_options": dict(method_options or {}),
        },
        "BackLink (Guo et al., IEEE TAI 2023) §4: SGD momentum 0.9, weight decay 5e-4 (ResNets) / 1e-4 "
        "(VGG16; AlexNet's is not stated: 5e-4 here), batch 512, 200 epochs (ResNets), 150 (VGG16), "
        "100 (AlexNet); lr 0.5 ResNet32, 0.3 ResNet110, 0.01 AlexNet/VGG16 (other ResNets here: 0.5); "
        "even split. The paper 'optimizes' the schedule without naming it: cosine here",
    )


@register_method
class GreedyLocal(ComposedRules):
    """Block k reads stop_gradient(x_{k-1}); θ(B_k) and θ(a_k) get ∇L_k only,
    with L_k = CE(a_k(h_k), y). The last block uses the output head.

    MAN (`man=True`) and HPFF (`hpff=True`) compose with it, as with `dgl`
    and `infopro` (`keras_local.methods.composed`).

    Example:

    ```python
    model = kl.build_model("resnet20", "gll", num_blocks=4, man=True)
    ```
    """

    name = "gll"

    def reference_recipe(self, architecture):
        if self.man or self.hpff:
            return composed_recipe(self, architecture)
        return backlink_paper_recipe(architecture, head="linear")

"""Associated Learning's reference recipe, and the one its paper's backprop
baselines were trained with (the same `main.py`).

Example:

```python
from keras_local.methods.associated.recipes import backprop_baseline_recipe
backprop_baseline_recipe("resnet20").settings["learning_rate"]   # 0.001
```
"""

from keras_local.architectures import CIFAR_RESNET_DEPTHS
from keras_local.recipes import Recipe

SCHEDULE = {
    "lr_schedule": "piecewise",
    "lr_boundaries": [0.4, 0.6, 0.8, 0.9],
    "lr_multipliers": [1.0, 0.1, 0.01, 0.001, 0.0005],
}
SOURCE = (
    "Associated Learning reference code (SamYWK/Associated_Learning CIFAR10/main.py, models.py): Adam "
    "per component, lr 1e-4 (autoencoders 2e-4), batch 32, 200 epochs (~312k steps), lr × 0.1 at "
    "40/60/80 % of the steps and × 0.5 at 90 %; L2 1e-4 on the ResNets' kernels (5e-4 on CIFAR-100; "
    "VGG 1e-5, MLP/CNN none), none on bridges; bridges on the full feature map; the reference's "
    "components"
)


def _weight_decay(architecture, vgg_decay):
    """(CIFAR-10 weight decay, dataset overrides): ResNets 1e-4 (5e-4 on CIFAR-100), VGG `vgg_decay`, else 0."""
    if architecture in CIFAR_RESNET_DEPTHS:
        return 1e-4, {"cifar100": {"weight_decay": 5e-4}}
    return (vgg_decay if architecture == "vgg" else 0.0), {}


def associated_recipe(architecture, method_options):
    """The reference code's recipe for AL on `architecture`, with `method_options`."""
    weight_decay, dataset_settings = _weight_decay(architecture, vgg_decay=1e-5)
    return Recipe(
        {
            "optimizer": "adam",
            "learning_rate": 1e-4,
            "batch_size": 32,
            "epochs": 200,
            "warmup_epochs": 0,
            "weight_decay": weight_decay,
            "weight_decay_scope": "backbone_kernels",
            **SCHEDULE,
            "num_blocks": "auto",
            "method_options": dict(method_options),
        },
        SOURCE,
        dataset_settings=dataset_settings,
    )


def backprop_baseline_recipe(architecture):
    """The recipe of the paper's BP column: AL's, with lr 1e-3 for the ResNets
    (commit ecd05d8) and L2 5e-4 on the VGG."""
    weight_decay, dataset_settings = _weight_decay(architecture, vgg_decay=5e-4)
    return Recipe(
        {
            "optimizer": "adam",
            "learning_rate": 1e-3 if architecture in CIFAR_RESNET_DEPTHS else 1e-4,
            "batch_size": 32,
            "epochs": 200,
            "warmup_epochs": 0,
            "weight_decay": weight_decay,
            "weight_decay_scope": "all",
            **SCHEDULE,
        },
        "Associated Learning reference code's backprop networks (CIFAR10/main.py, models.py): Adam, lr 1e-4 "
        "(1e-3 for the ResNets, commit ecd05d8 'initial learning rate 1e-3 only for ResNet_XX'), batch 32, "
        "200 epochs, lr × 0.1 at 40/60/80 % and × 0.5 at 90 %; L2 1e-4 on the ResNets (5e-4 on CIFAR-100), "
        "5e-4 on the VGG, none on the MLP/CNN",
        dataset_settings=dataset_settings,
    )

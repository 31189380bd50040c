"""InfoPro's reference recipe, and the one MAN and HPFF give it as their base.

Example:

```python
import keras_local as kl
from keras_local.methods.infopro.recipes import infopro_recipe
infopro_recipe(kl.get_method("infopro"), "resnet32").settings["epochs"]   # 160
```
"""

from keras_local.methods.composed import composed_recipe
from keras_local.methods.protocols import infopro_protocol
from keras_local.recipes import Recipe


def infopro_recipe(method, architecture):
    """InfoPro-Pytorch's recipe for `architecture`; MAN's or HPFF's where `method` composes one."""
    if method.man or method.hpff:
        # their READMEs' ResNet-32 K = 16 command: --ixx_1 5 --ixy_1 0.5 --ixx_2 0 --ixy_2 0
        options = {"aux_loss": "cross_entropy", "reconstruction_weights": [5.0, 0.0], "aux_weights": [0.5, 0.0]}
        return composed_recipe(method, architecture, options)
    return Recipe(
        infopro_protocol(architecture, 160, {"aux_loss": "contrast", "temperature": 0.07}, head="infopro"),
        "InfoPro reference code (blackfeather-wang/InfoPro-Pytorch, Experiments on CIFAR-SVHN-STL10/"
        "train.py, comand.sh): one SGD, Nesterov momentum 0.9, lr 0.8 at batch 1024, weight decay 1e-4, "
        "160 epochs, --cos_lr (10 epochs of linear warm-up from 0.01, then cosine), "
        "contrastive loss (τ = 0.07), per-K λ from comand.sh, InfoPro's splits",
    )

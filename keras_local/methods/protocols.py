"""The CIFAR training protocol of InfoPro-Pytorch's `train.py`, which MAN,
HPFF and AugLocal reuse in their own code: one SGD with Nesterov momentum 0.9,
lr 0.8 at batch 1024, weight decay 1e-4 on every weight, 10 epochs of linear
warm-up from 0.01, then a cosine decay (`--cos_lr`).

Example:

```python
from keras_local.methods.protocols import infopro_protocol
infopro_protocol("resnet32", epochs=400, method_options={})["split"]   # 'infopro'
```
"""

INFOPRO_SPLIT_NETWORKS = ("resnet32", "resnet110")


def infopro_protocol(architecture, epochs, method_options, head=None, split=None):
    """A recipe's settings under the protocol: `epochs` (InfoPro 160, the 2024
    methods 400), the `head` if one is named, and `split` (None: InfoPro's own
    split where it has one for `architecture`, else even)."""
    settings = {
        "optimizer": "sgd",
        "learning_rate": 0.8,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
        "weight_decay_scope": "all",
        "batch_size": 1024,
        "epochs": epochs,
        "lr_schedule": "cosine",
        "warmup_epochs": 10,
        "warmup_learning_rate": 0.01,
    }
    if head is not None:
        settings["head"] = head
    if split is None:
        split = "infopro" if architecture in INFOPRO_SPLIT_NETWORKS else "even"
    return {**settings, "split": split, "method_options": dict(method_options)}

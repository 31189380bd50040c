"""BWBPF: block-wise BP-free training (Cheng et al., ICASSP 2024)."""

from keras_local.methods.base import Method, check_number, register_method
from keras_local.recipes import Recipe


@register_method
class BlockwiseBPFree(Method):
    """Every block has a local classifier; the output layer learns the global loss.

    Paper semantics (the default): every block, the last included, has a
    local head (GAP → Dense) with cross-entropy L_k and reads
    `stop_gradient` of the previous block's output; the network's output
    layer is a block of its own after the K blocks (`model.blocks[-1]`, no
    units) that reads `stop_gradient(h_K)` and is trained only by the global
    loss L_g. The objective is `lambda_global·L_g + lambda_local·Σ_k L_k`, so
    block k receives `lambda_local·∇L_k` and the output layer
    `lambda_global·∇L_g`.

    `deep_supervision=True` is what the reference code
    (github.com/Belis0811/BWBPF) actually trains, and where the paper's
    headline numbers come from: no cuts at all, the last block's head is the
    output layer, and the sum `lambda_global·L_g + lambda_local·Σ_{k<K} L_k`
    is backpropagated end to end, so block k also receives the gradients of
    every later block's loss.

    Example:

    ```python
    model = kl.build_model("resnet50", method="bwbpf", num_blocks=4,
                           input_shape=(32, 32, 3), num_classes=10)
    len(model.blocks)   # 5: four blocks, then the output layer
    ```
    """

    name = "bwbpf"
    options = ("lambda_global", "lambda_local", "deep_supervision")
    schedulable = ("lambda_global", "lambda_local")

    def __init__(self, lambda_global=1.0, lambda_local=1.0, deep_supervision=False):
        self.lambda_global = check_number("lambda_global", lambda_global, 0.0)
        self.lambda_local = check_number("lambda_local", lambda_local, 0.0)
        if not isinstance(deep_supervision, bool):
            raise ValueError(f"deep_supervision must be true or false, got {deep_supervision!r}.")
        self.deep_supervision = deep_supervision
        self.cut_gradients = not deep_supervision
        self.separate_output_block = not deep_supervision

    def reference_recipe(self, architecture):
        return Recipe(
            {
                "optimizer": "sgd",
                "learning_rate": 0.1,
                "momentum": 0.9,
                "nesterov": False,
                "weight_decay": 5e-4,
                "weight_decay_scope": "all",
                "batch_size": 128,
                "epochs": 400,
                "lr_schedule": "cosine",
                "warmup_epochs": 0,
                "head": "linear",
                "split": "even",
                "method_options": self.get_config(),
            },
            "BWBPF reference code (Belis0811/BWBPF distributed/main_cifar10.py): one SGD per block, lr 0.1, "
            "momentum 0.9, weight decay 5e-4, batch 128, 400 epochs, CosineAnnealing T_max=400 "
            "(main_vgg.py and Main_8out/12out/16out.py, Tiny-ImageNet: batch 32, 200 epochs). The paper "
            "states batch 32, weight decay 1e-4, 200 epochs; its Table 1 comes from this code",
            dataset_settings={"tiny_imagenet": {"batch_size": 32, "epochs": 200}},
        )

    def loss_weights(self, num_blocks):
        return [self.lambda_local] * (num_blocks - 1) + [self.lambda_global]

    def get_config(self):
        return {
            "lambda_global": self.lambda_global,
            "lambda_local": self.lambda_local,
            "deep_supervision": self.deep_supervision,
        }

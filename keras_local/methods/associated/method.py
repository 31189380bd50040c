"""Associated Learning (Kao & Chen, Neural Computation 2021): the rule; the
label path and bridges are in `label_path.py`."""

import keras

from keras_local.architectures import CIFAR_RESNET_DEPTHS
from keras_local.methods.associated import label_path
from keras_local.methods.associated.recipes import associated_recipe
from keras_local.methods.base import Method, check_number, register_method

BRIDGES = ("dense", "pooled")
# The reference code's bridge width n per network (CIFAR-10; CIFAR-100 uses 500).
DEFAULT_WIDTHS = {"mlp": 1024, "cnn": 256, "vgg": 300}


@register_method
class AssociatedLearning(Method):
    """Components with a bridge, an encoder and a decoder; no end-to-end backprop.

    Block i is the associated function f_i; its head is the bridge b_i. The
    label blocks carry the target path: `model.extra_blocks[i]` is the
    encoder g_i (its unit) with the decoder h_i (its head), t_0 = one-hot y,
    t_i = g_i(sg(t_{i−1})). Each step:

    - the autoencoder loss ‖h_i(t_i) − sg(t_{i−1})‖² trains g_i and h_i;
    - the associated loss ‖b_i(s_i) − sg(t_i)‖² trains f_i and b_i, with
      s_i = f_i(sg(s_{i−1}));
    - nothing crosses components; each block and label block has its own
      optimizer, the label blocks' with `autoencoder_learning_rate_factor`×
      the learning rate (2, as in the reference code).

    Inference (`model(x)`) is h_1∘…∘h_L∘b_L∘f_L∘…∘f_1(x), sigmoid outputs.
    Without `num_blocks` / `cuts`, the split is the reference's components:
    stem + one per stage for the CIFAR ResNets, two layers per component for
    `cnn` and `vgg`, one layer per component otherwise.

    Args:
        width: n, the size of every t_i and bridge output (default: the
            reference's 1024 for `mlp`, 256 for `cnn`, 300 otherwise).
        bridge: "dense" (the reference: Flatten → Dense(5n, σ) → Dense(n, σ),
            on the full feature map; ~68 M parameters for ResNet-20) or
            "pooled" (global average pooling instead of Flatten).
        bridge_expansion: the 5 in Dense(5n).
        target_activation: activation of the label path and the bridges.
        feature_activation: activation of the feature path f_i, passed to
            the architecture as `activation` when it has that option.
        autoencoder_learning_rate_factor: label-path learning rate ÷ the
            blocks' learning rate.

    Example:

    ```python
    model = kl.build_model("cnn", method="associated", input_shape=(32, 32, 3), num_classes=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-4))
    ```
    """

    name = "associated"
    options = (
        "width",
        "bridge",
        "bridge_expansion",
        "target_activation",
        "feature_activation",
        "autoencoder_learning_rate_factor",
    )
    default_loss = "mean_squared_error"
    extra_block_loss = "mean_squared_error"
    extra_loss_name = "autoencoder_loss"

    def __init__(
        self,
        width=None,
        bridge="dense",
        bridge_expansion=5,
        target_activation="sigmoid",
        feature_activation="elu",
        autoencoder_learning_rate_factor=2.0,
    ):
        self.width = None if width is None else check_number("width", width, 1, integer=True)
        if bridge not in BRIDGES:
            raise ValueError(f"Unknown bridge {bridge!r}. Allowed: {', '.join(BRIDGES)}.")
        self.bridge = bridge
        self.bridge_expansion = check_number("bridge_expansion", bridge_expansion, 1, integer=True)
        for key, value in (("target_activation", target_activation), ("feature_activation", feature_activation)):
            if not isinstance(value, str):
                raise ValueError(f"{key} must be the name of a Keras activation, got {value!r}.")
        self.target_activation = target_activation
        self.feature_activation = feature_activation
        self.autoencoder_learning_rate_factor = check_number(
            "autoencoder_learning_rate_factor", autoencoder_learning_rate_factor, 0.0
        )

    def reference_recipe(self, architecture):
        return associated_recipe(architecture, {"bridge": "dense", "autoencoder_learning_rate_factor": 2.0})

    def width_for(self, architecture):
        return self.width or DEFAULT_WIDTHS.get(architecture, 300)

    def default_cuts(self, architecture, num_units):
        if architecture in CIFAR_RESNET_DEPTHS:
            per_stage = (CIFAR_RESNET_DEPTHS[architecture] - 2) // 6
            return [1, 1 + per_stage, 1 + 2 * per_stage]
        step = 2 if architecture in ("cnn", "vgg") else 1
        return list(range(step, num_units, step))

    def block_head(self, index, architecture, num_classes):
        return label_path.bridge(self, self.width_for(architecture), index)

    def extra_blocks(self, architecture, num_classes, num_blocks):
        return label_path.label_blocks(self, self.width_for(architecture), num_classes, num_blocks)

    def why_blocks_cannot_train_alone(self, num_blocks):
        return "its label path (the extra blocks) trains with the network's blocks in the model's step"

    def extra_learning_rate_factor(self):
        return self.autoencoder_learning_rate_factor

    def targets(self, model, x, y, training=True, update_metrics=True):
        return label_path.targets(model, y, training=training, update_metrics=update_metrics)

    def decoders(self, model):
        return label_path.decoders(model)

    def head_scores(self, index, num_blocks):
        return "decoded"  # a bridge regresses a code; `head_prediction` decodes it

    def head_prediction(self, model, index, outputs):
        """Level k's prediction: its bridge's code b_k(s_k) decoded by h_k … h_1 (the last level's is
        the network's output), logged as `acc_k`."""
        for decoder in label_path.decoders(model)[len(model.blocks) - 1 - index :]:
            outputs = decoder(outputs, training=False)
        return outputs

    def prediction_loss(self, loss):
        return keras.losses.SparseCategoricalCrossentropy()  # the decoders' sigmoid scores, not logits

    def architecture_defaults(self):
        return {"activation": self.feature_activation}

    def get_config(self):
        return {
            "width": self.width,
            "bridge": self.bridge,
            "bridge_expansion": self.bridge_expansion,
            "target_activation": self.target_activation,
            "feature_activation": self.feature_activation,
            "autoencoder_learning_rate_factor": self.autoencoder_learning_rate_factor,
        }

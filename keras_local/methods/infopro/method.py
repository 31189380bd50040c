"""InfoPro (Wang et al., "Revisiting Locally Supervised Learning", ICLR 2021)."""

from keras_local.data import NORMALIZATION
from keras_local.methods.base import check_number, register_method
from keras_local.methods.gll import GreedyLocal
from keras_local.methods.infopro.loss import AUX_LOSSES, InfoProLoss
from keras_local.methods.infopro.recipes import infopro_recipe
from keras_local.methods.infopro.tables import interpolated_weights, reference_weights


@register_method
class InfoPro(GreedyLocal):
    """Greedy local learning with InfoPro's loss: block k's head (`infopro`:
    the `1c2f` net and an image decoder) is trained on
    `λ1_k·BCE(decoder, image) + λ2_k·(CE or supervised contrastive)`; the
    last block on the network's cross-entropy.

    λ is interpolated across the K − 1 local blocks as in the reference:
    ratio = k / (K − 2) (0 when K = 2), λ1 = r1·(1 − ratio) + r2·ratio with
    `reconstruction_weights = (r1, r2)`, and λ2 likewise from `aux_weights`.
    Left at None, both pairs are the reference's for the network and K
    (`tables.REFERENCE_WEIGHTS`, from InfoPro-Pytorch's `comand.sh`; networks
    without an entry take resnet32's, K without one the nearest K's).
    The reconstruction target is the un-normalised image, with the mean and
    std of `image_normalization` (a dataset name of `keras_local.data`; None:
    the dataset `build_model` is given, else CIFAR-10's).
    InfoPro's own splits of resnet32 / resnet110: `split="infopro"` or
    `"infopro_balanced"` in `build_model`. The published setting is
    `aux_loss="contrast"` (`reference_recipe`).

    Example:

    ```python
    model = kl.build_model("resnet32", "infopro", num_blocks=4, split="infopro", aux_loss="contrast")
    model.method.get_config()["aux_weights"]   # [0.0, 2.0]: the reference's for resnet32, K = 4
    ```
    """

    name = "infopro"
    options = (
        "aux_loss",
        "reconstruction_weights",
        "aux_weights",
        "temperature",
        "image_normalization",
        *GreedyLocal.options,
    )
    default_head = "infopro"
    needs_images = True

    def __init__(
        self,
        aux_loss="cross_entropy",
        reconstruction_weights=None,
        aux_weights=None,
        temperature=0.07,
        image_normalization=None,
        **composed,
    ):

        super().__init__(**composed)  # MAN / HPFF

        if aux_loss not in AUX_LOSSES:
            raise ValueError(f"Unknown aux_loss {aux_loss!r}. Allowed: {', '.join(AUX_LOSSES)}.")
        self.aux_loss = aux_loss
        self.reconstruction_weights = (
            None if reconstruction_weights is None else _pair("reconstruction_weights", reconstruction_weights)
        )
        self.aux_weights = None if aux_weights is None else _pair("aux_weights", aux_weights)
        if (reconstruction_weights is None) != (aux_weights is None):
            raise ValueError(
                "Give both reconstruction_weights and aux_weights, or neither (the reference's "
                f"for the network and K); got {reconstruction_weights!r} and {aux_weights!r}."
            )
        self.temperature = check_number("temperature", temperature, 1e-6)
        if image_normalization is not None and image_normalization not in NORMALIZATION:
            raise ValueError(
                f"Unknown image_normalization {image_normalization!r}. "
                f"Allowed: {', '.join(sorted(NORMALIZATION))}, or None (the dataset's)."
            )
        self.image_normalization = image_normalization

    def configure(self, architecture=None, num_blocks=None, dataset=None):

        if self.reconstruction_weights is None and num_blocks is not None:
            self.reconstruction_weights, self.aux_weights = reference_weights(architecture, num_blocks)
        if self.image_normalization is None and dataset in NORMALIZATION:
            self.image_normalization = dataset

    def interpolated_weights(self, num_blocks):
        """(λ1, λ2) of each of the `num_blocks` − 1 local blocks."""
        if self.reconstruction_weights is None:  # not configured by build_model: resnet32's reference values
            return interpolated_weights(*reference_weights("resnet32", num_blocks), num_blocks)
        return interpolated_weights(self.reconstruction_weights, self.aux_weights, num_blocks)

    def reference_recipe(self, architecture):
        return infopro_recipe(self, architecture)

    def _loss(self, reconstruction, aux):

        mean, std = NORMALIZATION[self.image_normalization or "cifar10"]
        return InfoProLoss(
            reconstruction, aux, aux_loss=self.aux_loss, temperature=self.temperature, image_mean=mean, image_std=std
        )

    def module_loss(self, index, num_blocks, loss):
        if index == num_blocks - 1:  # the network's own head: cross-entropy on the labels
            return self._loss(0.0, 1.0)
        return self._loss(*self.interpolated_weights(num_blocks)[index])

    def independent_loss(self, num_blocks, loss):
        """HPFF's independent module: the auxiliary term alone (the reference's `net_classifier`)."""
        return self._loss(0.0, 1.0)

    def head_options(self):
        return {"aux_loss": self.aux_loss}

    def head_scores(self, index, num_blocks):
        """A contrast head gives a 128-d embedding, not class scores: no `acc_k` for it."""
        return "logits" if self.aux_loss != "contrast" or index == num_blocks - 1 else None

    def get_config(self):
        return {
            **self.composable_config(),
            "aux_loss": self.aux_loss,
            "reconstruction_weights": None
            if self.reconstruction_weights is None
            else list(self.reconstruction_weights),
            "aux_weights": None if self.aux_weights is None else list(self.aux_weights),
            "temperature": self.temperature,
            "image_normalization": self.image_normalization,
        }


def _pair(name, value):
    try:
        first, last = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (first local block, last local block), got {value!r}.") from None
    return check_number(name, first, 0.0), check_number(name, last, 0.0)

"""InfoPro (Wang et al., "Revisiting Locally Supervised Learning", ICLR 2021)."""

from keras_local.losses import AUX_LOSSES, InfoProLoss
from keras_local.methods.base import check_number
from keras_local.methods.gll import GreedyLocal


class InfoPro(GreedyLocal):
    """Greedy local learning with InfoPro's loss: block k's head (`infopro`:
    the `1c2f` net and an image decoder) is trained on
    `λ1_k·BCE(decoder, image) + λ2_k·(CE or supervised contrastive)`; the
    last block on the network's cross-entropy.

    λ is interpolated across the K − 1 local blocks as in the reference:
    ratio = k / (K − 2) (0 when K = 2), λ1 = r1·(1 − ratio) + r2·ratio with
    `reconstruction_weights = (r1, r2)`, and λ2 likewise from `aux_weights`.
    The reconstruction target is the un-normalised image, with the mean and
    std of `image_normalization` (a dataset name of `keras_local.data`).
    InfoPro's own splits of resnet32 / resnet110: `split="infopro"` or
    `"infopro_balanced"` in `build_model`.

    Example:

    ```python
    model = kl.build_model("resnet32", "infopro", num_blocks=4, split="infopro",
                           reconstruction_weights=(1.0, 0.0), aux_weights=(0.0, 1.0))
    ```
    """

    name = "infopro"
    options = ("aux_loss", "reconstruction_weights", "aux_weights", "temperature", "image_normalization")
    default_head = "infopro"
    needs_images = True

    def __init__(self, aux_loss="cross_entropy", reconstruction_weights=(1.0, 0.0), aux_weights=(0.0, 1.0),
                 temperature=0.07, image_normalization="cifar10"):
        from keras_local.data import NORMALIZATION

        if aux_loss not in AUX_LOSSES:
            raise ValueError(f"Unknown aux_loss {aux_loss!r}. Allowed: {', '.join(AUX_LOSSES)}.")
        self.aux_loss = aux_loss
        self.reconstruction_weights = _pair("reconstruction_weights", reconstruction_weights)
        self.aux_weights = _pair("aux_weights", aux_weights)
        self.temperature = check_number("temperature", temperature, 1e-6)
        if image_normalization not in NORMALIZATION:
            raise ValueError(f"Unknown image_normalization {image_normalization!r}. "
                             f"Allowed: {', '.join(sorted(NORMALIZATION))}.")
        self.image_normalization = image_normalization
        self._mean, self._std = NORMALIZATION[image_normalization]

    def interpolated_weights(self, num_blocks):
        """(λ1, λ2) of each of the `num_blocks` − 1 local blocks."""
        local = num_blocks - 1
        weights = []
        for index in range(local):
            ratio = index / (local - 1) if local > 1 else 0.0
            weights.append(tuple(first * (1 - ratio) + last * ratio for first, last in
                                 (self.reconstruction_weights, self.aux_weights)))
        return weights

    def block_loss(self, index, num_blocks, loss):
        common = dict(aux_loss=self.aux_loss, temperature=self.temperature, image_mean=self._mean,
                      image_std=self._std)
        if index == num_blocks - 1:  # the network's own head: cross-entropy on the labels
            return InfoProLoss(0.0, 1.0, **common)
        reconstruction, aux = self.interpolated_weights(num_blocks)[index]
        return InfoProLoss(reconstruction, aux, **common)

    def head_options(self):
        return {"aux_loss": self.aux_loss}

    def get_config(self):
        return {"aux_loss": self.aux_loss, "reconstruction_weights": list(self.reconstruction_weights),
                "aux_weights": list(self.aux_weights), "temperature": self.temperature,
                "image_normalization": self.image_normalization}


def _pair(name, value):
    try:
        first, last = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (first local block, last local block), got {value!r}.") from None
    return check_number(name, first, 0.0), check_number(name, last, 0.0)

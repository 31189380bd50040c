"""InfoPro's tables: its splits of ResNet-32 / ResNet-110 (registered as
`split="infopro"` and `"infopro_balanced"`) and its per-K loss weights.

Pure Python, as `keras_local.splitting`.

Example:

```python
infopro_cuts("resnet32", 4)   # [4, 8, 12]
```
"""

import functools
import math

from keras_local.splitting import register_split

# InfoPro's split points (its networks/configs.py): [stage, index] of the
# residual block after which a module ends (stage 0 is the stem).
# fmt: off
INFOPRO_SPLITS = {
    "resnet32": {
        2: [[2, 1]],
        4: [[1, 2], [2, 1], [3, 0]],
        8: [[1, 0], [1, 2], [1, 4], [2, 1], [2, 3], [3, 0], [3, 2]],
        16: [[0, 0], [1, 0], [1, 1], [1, 2], [1, 3], [1, 4], [2, 0], [2, 1], [2, 2], [2, 3], [2, 4],
             [3, 0], [3, 1], [3, 2], [3, 3]],
    },
    "resnet110": {
        2: [[2, 8]],
        4: [[1, 11], [2, 7], [3, 3]],
        8: [[1, 4], [1, 11], [2, 0], [2, 7], [2, 14], [3, 3], [3, 10]],
        16: [[1, 1], [1, 4], [1, 7], [1, 10], [1, 13], [1, 16], [2, 1], [2, 4], [2, 7], [2, 11], [2, 15],
             [3, 1], [3, 5], [3, 9], [3, 13]],
    },
}
# fmt: on
# InfoPro*'s memory-balanced splits of ResNet-110 (front-light).
INFOPRO_BALANCED_SPLITS = {"resnet110": {2: [[1, 14]], 3: [[1, 9], [2, 2]], 4: [[1, 6], [1, 14], [2, 8]]}}
UNITS_PER_STAGE = {"resnet32": 5, "resnet110": 18}


def infopro_cuts(architecture, num_blocks, balanced=False):
    """InfoPro's cuts for `architecture` at K = `num_blocks`, as unit indices
    (unit 0 is the stem; [stage, index] ends a module after residual block
    `index` of `stage`)."""
    table = (INFOPRO_BALANCED_SPLITS if balanced else INFOPRO_SPLITS).get(architecture)
    name = "infopro_balanced" if balanced else "infopro"
    if table is None or num_blocks not in table:
        known = ", ".join(
            f"{arch} K={sorted(ks)}" for arch, ks in (INFOPRO_BALANCED_SPLITS if balanced else INFOPRO_SPLITS).items()
        )
        raise ValueError(
            f"split={name!r} has no table for {architecture} with num_blocks={num_blocks}; it has: {known}."
        )
    per_stage = UNITS_PER_STAGE[architecture]
    return [1 if stage == 0 else 1 + (stage - 1) * per_stage + index + 1 for stage, index in table[num_blocks]]


# (λ1 of the first local block, its λ2, λ1 of the last, its λ2) per network and K: InfoPro-Pytorch's
# `comand.sh` (--ixx_1 --ixy_1 --ixx_2 --ixy_2), CIFAR-10, contrast mode. "resnet110_balanced" is InfoPro*.
REFERENCE_WEIGHTS = {
    "resnet32": {2: (5.0, 1.0, 0.0, 0.0), 4: (6.0, 0.0, 1.0, 2.0), 8: (5.0, 0.0, 0.0, 2.0), 16: (5.0, 0.05, 0.2, 0.5)},
    "resnet110": {2: (5.0, 0.5, 0.0, 0.0), 4: (1.0, 0.0, 0.0, 1.0), 8: (5.0, 0.0, 0.0, 1.0), 16: (5.0, 0.0, 0.5, 1.0)},
    "resnet110_balanced": {2: (5.0, 0.1, 0.0, 0.0), 3: (5.0, 0.0, 5.0, 0.1), 4: (5.0, 0.0, 5.0, 0.1)},
}


def reference_weights(architecture, num_blocks):
    """The reference's `(reconstruction_weights, aux_weights)` pairs (first, last local block) for
    `architecture` at K = `num_blocks` (resnet32's for other networks; the nearest K's, on a log
    scale, for other K)."""
    table = REFERENCE_WEIGHTS.get(architecture, REFERENCE_WEIGHTS["resnet32"])
    nearest = min(table, key=lambda k: (abs(math.log(k) - math.log(max(num_blocks, 2))), k))
    first_x, first_y, last_x, last_y = table[nearest]
    return (first_x, last_x), (first_y, last_y)


register_split("infopro")(infopro_cuts)
register_split("infopro_balanced")(functools.partial(infopro_cuts, balanced=True))


def interpolated_weights(reconstruction_weights, aux_weights, num_blocks):
    """(λ1, λ2) of each of the `num_blocks` − 1 local blocks: each pair (first
    local block, last local block) interpolated linearly, as the reference's
    ratio = k / (K − 2) (0 when K = 2)."""
    local = num_blocks - 1
    weights = []
    for index in range(local):
        ratio = index / (local - 1) if local > 1 else 0.0
        weights.append(
            tuple(first * (1 - ratio) + last * ratio for first, last in (reconstruction_weights, aux_weights))
        )
    return weights

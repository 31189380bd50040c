"""Where a network of N units is cut into K blocks.

Cuts are the indices of the units that start blocks 2..K; block k owns units
`[boundaries[k], boundaries[k + 1])`. Pure Python: no TensorFlow needed.

Example:

```python
even_cuts(16, 4)                 # [4, 8, 12]
even_cuts(55, 16)[:2]            # [4, 8]: 7 blocks of 4, then 9 of 3
balanced_cuts([4, 4, 1, 1, 1, 1], 2)   # [2]: blocks of cost 8 and 4 beat 9 and 3
parse_cuts("3,7,11")             # [3, 7, 11]
block_sizes(16, [4, 8, 12])      # [4, 4, 4, 4]
```
"""

from keras_local.deprecation import moved_names
from keras_local.validation import check_number


def even_cuts(num_units, num_blocks):
    """Splits evenly; when `num_units` is not divisible, lower blocks get one
    more unit (BackLink's rule: ResNet-110's 55 units at K = 16 → 4×7 + 3×9)."""
    check_number("num_blocks", num_blocks, 1, integer=True)
    if num_blocks > num_units:
        raise ValueError(
            f"num_blocks={num_blocks} is larger than the number of units ({num_units}); allowed: 1..{num_units}."
        )
    base, extra = divmod(num_units, num_blocks)
    cuts, position = [], 0
    for index in range(num_blocks - 1):
        position += base + (1 if index < extra else 0)
        cuts.append(position)
    return cuts


# Split names: the two computed here, then the tables that methods register (`register_split`).
SPLITS = ["even", "balanced"]
SPLIT_TABLES = {}


def register_split(name):
    """Registers `function(architecture, num_blocks) -> cuts` as `split=name`
    (a paper's table of cuts, e.g. InfoPro's: `keras_local.methods.infopro.tables`)."""

    def register(function):
        if name in SPLITS:
            raise ValueError(f"split {name!r} is already registered.")
        SPLITS.append(name)
        SPLIT_TABLES[name] = function
        return function

    return register


def balanced_cuts(costs, num_blocks):
    """Cuts that minimise the largest block cost (sum of its units' `costs`).

    With `costs` the activation size of each unit this balances memory: the
    early units of a CIFAR ResNet hold 4x the activations of the late ones,
    so balanced blocks are short at the front and long at the back. Exact
    (dynamic programming over the N units); among equal maxima the cuts come
    as late as possible.
    """
    costs = list(costs)
    even_cuts(len(costs), num_blocks)  # validates num_blocks against the number of units
    prefix = [0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    num_units = len(costs)
    # best[k][n]: the smallest largest-block cost of the first n units in k blocks.
    best = [[float("inf")] * (num_units + 1) for _ in range(num_blocks + 1)]
    choice = [[0] * (num_units + 1) for _ in range(num_blocks + 1)]
    best[0][0] = 0
    for blocks in range(1, num_blocks + 1):
        for end in range(blocks, num_units + 1):
            for start in range(blocks - 1, end):
                value = max(best[blocks - 1][start], prefix[end] - prefix[start])
                if value <= best[blocks][end]:
                    best[blocks][end], choice[blocks][end] = value, start
    cuts, end = [], num_units
    for blocks in range(num_blocks, 1, -1):
        end = choice[blocks][end]
        cuts.append(end)
    return cuts[::-1]


def cut_items(cuts):
    """The entries of `cuts`: a list as it is, or a comma-separated string's stripped parts."""
    if isinstance(cuts, str):
        return [part.strip() for part in cuts.split(",") if part.strip()]
    return list(cuts)


def parse_cuts(cuts):
    """Accepts a list of ints or a comma-separated string (for keras-tuner)."""
    if isinstance(cuts, str):
        text = cuts.strip()
        if not text:
            return []
        try:
            return [int(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(f"cuts={cuts!r} is not a comma-separated list of unit indices like '3,7,11'.") from None
    try:
        values = list(cuts)
    except TypeError:
        raise ValueError(f"cuts={cuts!r} must be a list of unit indices or a string like '3,7'.") from None
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        raise ValueError(f"cuts={cuts!r} must contain integers only.")
    return values


def validate_cuts(cuts, num_units):
    """Checks that cuts are strictly increasing and inside 1..num_units.

    A last cut equal to `num_units` leaves the last block without units: it is
    the output layer alone, reading the previous block's output (how BackLink
    counts AlexNet's K = 8 and VGG16's K = 16, the classifier being a layer).
    """
    cuts = parse_cuts(cuts)
    for value in cuts:
        if not 1 <= value <= num_units:
            raise ValueError(
                f"cuts={cuts} has {value}, out of range: each cut must be in "
                f"1..{num_units} for a network of {num_units} units."
            )
    if any(b <= a for a, b in zip(cuts, cuts[1:])):
        raise ValueError(f"cuts={cuts} must be strictly increasing.")
    return cuts


def resolve_cuts(num_units, num_blocks=None, cuts=None, split="even", costs=None, architecture=None):
    """The cuts from either `num_blocks` (an `"even"` split, `"balanced"` by
    the units' `costs`, or a registered table for `architecture`, such as
    InfoPro's) or explicit `cuts`."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Allowed: {', '.join(SPLITS)}.")
    if cuts is not None:
        cuts = validate_cuts(cuts, num_units)
        if num_blocks is not None and num_blocks != len(cuts) + 1:
            raise ValueError(
                f"num_blocks={num_blocks} disagrees with cuts={cuts} "
                f"({len(cuts) + 1} blocks); give one or make them agree."
            )
        return cuts
    num_blocks = 1 if num_blocks is None else num_blocks
    if split in SPLIT_TABLES:
        return SPLIT_TABLES[split](architecture, num_blocks)
    if split == "balanced":
        if costs is None or len(costs) != num_units:
            raise ValueError("split='balanced' needs one cost per unit.")
        return balanced_cuts(costs, num_blocks)
    return even_cuts(num_units, num_blocks)


def split_units(units, cuts):
    """Splits a list of units at `cuts` into a list of blocks (lists of units)."""
    bounds = [0, *cuts, len(units)]
    return [list(units[start:stop]) for start, stop in zip(bounds, bounds[1:])]


def block_sizes(num_units, cuts):
    """Number of units in each block."""
    bounds = [0, *cuts, num_units]
    return [stop - start for start, stop in zip(bounds, bounds[1:])]


# Moved to the method that owns them (keras_local 0.4); the old names warn for a version.
__getattr__ = moved_names(
    "keras_local.splitting",
    {
        "INFOPRO_SPLITS": "keras_local.methods.infopro.tables",
        "INFOPRO_BALANCED_SPLITS": "keras_local.methods.infopro.tables",
        "UNITS_PER_STAGE": "keras_local.methods.infopro.tables",
        "infopro_cuts": "keras_local.methods.infopro.tables",
    },
)

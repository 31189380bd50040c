"""The README's pictures of where each gradient goes, one per family of methods (`kl.plot_blocks`), on the
README's own functional model (tests/own_models.py's residual model):

    python tools/make_block_pictures.py        # writes docs/images/blocks_*.png
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from own_models import residual_model  # noqa: E402

import keras_local as kl  # noqa: E402

FAMILIES = {
    "bp": ("bp", {}),  # one loss, nothing cut
    "gll": ("gll", {}),  # a local loss per block, the gradient cut between blocks (DGL, InfoPro, PredSim, BWBPF)
    "backlink": ("backlink", {"propagation_length": 1, "alpha": 0.5}),  # the next loss into the last l units
    "hpff": ("gll", {"hpff": True}),  # the next block's cascade loss into the whole block
    "man": ("gll", {"man": True}),  # the next block's first unit, averaged, into each head
    "associated": ("associated", {}),  # the label path
}

if __name__ == "__main__":
    folder = os.path.join(HERE, "..", "docs", "images")
    os.makedirs(folder, exist_ok=True)
    for name, (method, options) in FAMILIES.items():
        model = kl.build_model(residual_model(), method, cuts=["stem_relu", "res2_add"], name=name, **options)
        print(kl.plot_blocks(model, to_file=os.path.join(folder, f"blocks_{name}.png")) and f"blocks_{name}.png")

"""InfoPro: the rule (`method.py`), its head (`head.py`), its loss (`loss.py`), its tables of splits
and loss weights (`tables.py`) and its reference recipe (`recipes.py`)."""

from keras_local.methods.infopro.head import InfoProHead
from keras_local.methods.infopro.loss import AUX_LOSSES, InfoProLoss, supervised_contrastive
from keras_local.methods.infopro.method import InfoPro
from keras_local.methods.infopro.tables import infopro_cuts, reference_weights

__all__ = [
    "AUX_LOSSES",
    "InfoPro",
    "InfoProHead",
    "InfoProLoss",
    "infopro_cuts",
    "reference_weights",
    "supervised_contrastive",
]

"""PredSim: the rule (`method.py`), its head (`head.py`), its loss (`loss.py`) and its VGG-8b (`networks.py`)."""

from keras_local.methods.predsim import networks  # noqa: F401  (registers vgg8b)
from keras_local.methods.predsim.head import PredSimHead, pooled_size
from keras_local.methods.predsim.loss import PredSimLoss, similarity_matrix
from keras_local.methods.predsim.method import PredSim

__all__ = ["PredSim", "PredSimHead", "PredSimLoss", "pooled_size", "similarity_matrix"]

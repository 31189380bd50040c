"""DGL: the rule (`method.py`), its auxiliary networks (`head.py`) and its CIFAR CNNs (`networks.py`)."""

from keras_local.methods.dgl import networks  # noqa: F401  (registers dgl_cnn4, dgl_cnn6)
from keras_local.methods.dgl.head import DGLHead
from keras_local.methods.dgl.method import DecoupledGreedy

__all__ = ["DGLHead", "DecoupledGreedy"]

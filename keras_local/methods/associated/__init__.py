"""Associated Learning: the rule (`method.py`), its label path (`label_path.py`), its bridges
(`bridge.py`) and its VGG (`networks.py`)."""

from keras_local.methods.associated import networks  # noqa: F401  (registers vgg)
from keras_local.methods.associated.bridge import Bridge
from keras_local.methods.associated.method import AssociatedLearning

__all__ = ["AssociatedLearning", "Bridge"]

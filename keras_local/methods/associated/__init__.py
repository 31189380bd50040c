"""Associated Learning: the rule (`method.py`) and its label path and bridges (`label_path.py`)."""

from keras_local.methods.associated.method import AssociatedLearning

__all__ = ["AssociatedLearning"]

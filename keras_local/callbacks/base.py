"""What the block callbacks share: the logged keys of the blocks, a state that
survives an interrupted `fit` (`backup_dir`), plateaus of a monitored loss."""

import os

import keras

from keras_local.files import read_json, write_json


def block_keys(model):
    """`(block index, loss key, accuracy key)` of every block whose head is logged."""
    return [(index, f"loss_{index}", f"acc_{index}") for index in model.logged_blocks]


class StatefulCallback(keras.callbacks.Callback):
    """A callback whose state survives an interrupted `fit` (see the module doc)."""

    def __init__(self, backup_dir=None):
        super().__init__()
        self.backup_dir = None if backup_dir is None else os.fspath(backup_dir)

    @property
    def _state_path(self):
        return os.path.join(self.backup_dir, f"{type(self).__name__}.json")

    def get_state(self):
        raise NotImplementedError

    def set_state(self, state):
        raise NotImplementedError

    def _restore(self):
        if self.backup_dir is not None and os.path.exists(self._state_path):
            self.set_state(read_json(self._state_path))
            return True
        return False

    def _save(self):
        if self.backup_dir is not None:
            os.makedirs(self.backup_dir, exist_ok=True)
            write_json(self._state_path, self.get_state())

    def _delete(self):
        if self.backup_dir is not None and os.path.exists(self._state_path):
            os.remove(self._state_path)


def check_local_model(callback, model):
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(callback).__name__} needs a keras_local LocalModel, got {type(model).__name__}.")


class Plateau:
    """Best value and epochs without an improvement of `min_delta` (lower is better)."""

    @staticmethod
    def update(best, wait, value, min_delta):
        if best is None or value < best - min_delta:
            return value, 0
        return best, wait + 1


def monitored(logs, key):
    if key not in logs:
        raise ValueError(f"Monitored key {key!r} is not in the epoch logs; they have: {', '.join(sorted(logs))}.")
    return float(logs[key])

"""`RunCheckpoint`: the state a killed run resumes from, at a batch inside an epoch.

Keras' `BackupAndRestore` saves mid-epoch but resumes at the start of the
epoch, so the batches after its last save are trained twice. This callback
saves, every `every` batches and at every epoch end:

- `step-<N>.weights.h5`: the weights and every block's optimizer state
  (`model.save_weights`);
- `step-<N>.metrics.npz`: the running training metrics of the epoch, so that
  the resumed epoch logs what an uninterrupted one would;
- `step-<N>.pipeline.npz`, for the pipelined block order: the batches in
  flight in the pipeline's buffers (every replica's) and its warm-up counter
  (`LocalModel.pipeline_state`), so that no block skips an update or loses a
  batch after a resume. Under `MultiWorkerMirroredStrategy` each worker's
  batches differ: a worker other than the chief writes its own,
  `step-<N>.pipeline-<type><index>.npz`, into the chief's folder
  (`restore_from`) and reads it back from there;
- `checkpoint.json`: `{"epoch", "batch", "step", "files"}`, written last and
  atomically. It names a complete set of files, which is only then made
  current; the previous set is deleted afterwards. A kill at any moment leaves
  a readable checkpoint.

A state whose weights are not all finite is never saved, so the checkpoint
of a diverged run is its last good state.

`train_and_evaluate` pairs it with `data.TrainingEpochs`, whose epoch `e`
is a function of `(seed, e)` alone and can start after a number of batches:
the resumed run trains on the batches an uninterrupted one saw, from the
same state, and ends with the same weights, bit for bit on CPU.

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2)
model.compile(optimizer="sgd")
train = kl.data.load_dataset("cifar10_sample", "train", batch_size=128, training=True, num_examples=512)
checkpoint = RunCheckpoint("runs/x/backup", every=2)
epoch, batch = checkpoint.restore(model)   # (0, 0): nothing to resume yet
model.fit(train, epochs=1, callbacks=[checkpoint])
checkpoint.restore(model)                  # (1, 0): the next epoch starts from the saved state
```
"""

import os

import keras
import numpy as np

from keras_local.cluster import cluster_config, is_chief
from keras_local.files import atomic_path, read_json, write_json
from keras_local.validation import check_number


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be read."""


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the training state every `every` batches (0: only at epoch ends)
    and at every epoch end, under `directory`."""

    def __init__(self, directory, every=100, restore_from=None):
        super().__init__()
        check_number("every", every, 0, integer=True, note=" (0: only at epoch ends)")
        self.directory, self.every = os.fspath(directory), every
        # Where `restore` reads (a multi-worker run's workers read the chief's checkpoint, write their own).
        self.restore_from = self.directory if restore_from is None else os.fspath(restore_from)
        self._epoch, self._batch, self._step = 0, 0, 0  # where training is: epoch, batches done in it, steps
        self._resume_metrics = None  # metric values to put back when the resumed epoch begins

    @property
    def _index_path(self):
        return os.path.join(self.directory, "checkpoint.json")

    def exists(self):
        return os.path.exists(self._index_path)

    def state(self, directory=None):
        """`{"epoch", "batch", "step", "files"}` of the checkpoint saved in
        `directory` (default: this one's), or None."""
        path = os.path.join(directory or self.directory, "checkpoint.json")
        if not os.path.exists(path):
            return None
        try:
            return read_json(path)
        except (OSError, ValueError) as error:
            raise CheckpointError(f"The checkpoint {path!r} is unreadable ({error}).") from None

    def restore(self, model):
        """Loads the saved state into `model` (built, compiled); returns `(epoch,
        batch)`: the epoch to resume and how many of its batches are done."""
        state = self.state(self.restore_from)
        if state is None:
            return 0, 0
        weights, metrics, *pipeline = (os.path.join(self.restore_from, name) for name in state["files"])
        try:
            model.load_weights(weights)
            with np.load(metrics) as saved:
                self._resume_metrics = [saved[f"v{index}"] for index in range(len(saved.files))]
            if pipeline and hasattr(model, "set_pipeline_state"):
                with np.load(self._pipeline_path(self.restore_from, state["step"], pipeline[0])) as saved:
                    model.set_pipeline_state({key: saved[key] for key in saved.files})
        except Exception as error:  # h5py and zip errors have no common base class
            raise CheckpointError(
                f"The checkpoint {weights!r} could not be loaded ({type(error).__name__}: {error})."
            ) from None
        if state["batch"] == 0:  # an epoch end: the next epoch starts with fresh metrics
            self._resume_metrics = None
        self._epoch, self._batch, self._step = state["epoch"], state["batch"], state["step"]
        return state["epoch"], state["batch"]

    @staticmethod
    def _pipeline_path(folder, step, chiefs=None):
        """This process's pipeline file of `step` in `folder`: the chief's (`chiefs`, as its index
        names it), or a worker's own."""
        config = cluster_config()
        if is_chief():
            return chiefs or os.path.join(folder, f"step-{step}.pipeline.npz")
        task = config["task"]
        return os.path.join(folder, f"step-{step}.pipeline-{task['type']}{task['index']}.npz")

    def on_epoch_begin(self, epoch, logs=None):
        if epoch != self._epoch:
            self._epoch, self._batch = epoch, 0
        self._first_batch = self._batch  # Keras counts the batches of a resumed epoch from 0
        if self._resume_metrics is not None:  # after fit has built and reset the metrics
            if len(self._resume_metrics) != len(self.model.metrics_variables):
                raise CheckpointError(f"The checkpoint in {self.directory!r} was saved by a different model.")
            for variable, value in zip(self.model.metrics_variables, self._resume_metrics):
                variable.assign(value)
            self._resume_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        done = self._first_batch + batch + 1
        self._step += done - self._batch
        self._batch = done
        if self.every and self._step % self.every == 0:
            self.save(self._epoch, self._batch, self._step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0, self._step)
        self._epoch, self._batch = epoch + 1, 0

    def save(self, epoch, batch, step):
        """Writes the state after `batch` batches of `epoch` (global step `step`)."""
        previous = self.state()
        if previous is not None and previous["step"] == step and previous["epoch"] == epoch:
            return
        if not all(np.isfinite(variable.numpy()).all() for variable in self.model.weights):
            return  # a diverged state is never a checkpoint; the next batch's loss stops the run
        os.makedirs(self.directory, exist_ok=True)
        files = [f"step-{step}.weights.h5", f"step-{step}.metrics.npz"]
        pipeline = self.model.pipeline_state() if hasattr(self.model, "pipeline_state") else None
        if pipeline is not None:
            files.append(f"step-{step}.pipeline.npz")
        weights, metrics = (os.path.join(self.directory, name) for name in files[:2])
        with atomic_path(weights) as partial:
            self.model.save_weights(partial)
        with atomic_path(metrics) as partial, open(partial, "wb") as file:
            np.savez(file, **{f"v{index}": v.numpy() for index, v in enumerate(self.model.metrics_variables)})
        if pipeline is not None:  # a worker's own batches go beside the chief's files
            folder = self.directory if is_chief() else self.restore_from
            path = self._pipeline_path(folder, step)
            os.makedirs(folder, exist_ok=True)
            with atomic_path(path) as partial, open(partial, "wb") as file:
                np.savez(file, **pipeline)
            if not is_chief() and previous is not None:
                _remove(self._pipeline_path(folder, previous["step"]))
        write_json(self._index_path, {"epoch": epoch, "batch": batch, "step": step, "files": files})
        for name in (previous or {}).get("files", ()):
            if name not in files:
                _remove(os.path.join(self.directory, name))


def _remove(path):
    if os.path.exists(path):
        os.remove(path)

"""TFDS input pipelines for CIFAR-10/100, MNIST and prepared TFDS datasets.

`load_dataset` reads a dataset with TFDS, caches the decoded uint8 images,
then (for training) shuffles with a seed and applies pad-4 random crop +
horizontal flip (stateless, drawn from the same seed: a seeded pipeline gives
the same batches in every run), normalises per channel and batches with `AUTOTUNE` prefetch.
`TrainingEpochs` gives the training epochs one at a time, epoch `e` a function
of `(seed, e)` alone (what a resumed run needs), and `check_files` checks a
prepared split's files before a run reads them.

Where datasets come from:

- `cifar10`, `cifar100`, `mnist`: the TFDS catalog (downloaded by TFDS to its
  data dir, `~/tensorflow_datasets` unless `data_dir` is given).
- `tiny_imagenet`: this package's TFDS builder (`keras_local.datasets.tiny_imagenet`),
  built from the official archive, or read from a prepared copy under `data_dir`
  (e.g. `load_dataset("tiny_imagenet", split="validation", data_dir="../shared/data/tfds")`).
- any dataset prepared under a TFDS data root: `data_dir` means what it means
  for `tfds.load`, a folder holding `<name>/<version>/`, e.g.
  `load_dataset("cifar10_jpeg", data_dir="../shared/data/tfds")`.
- `cifar10_sample`: 2,000 train / 1,000 test CIFAR-10 images shipped inside
  the package (no download), the demo's data.

Example:

```python
train = load_dataset("cifar10_sample", split="train", batch_size=128, training=True)
images, labels = next(iter(train))     # (128, 32, 32, 3) float32, (128,) int64
```
"""

import os
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_local.datasets.tiny_imagenet  # noqa: F401  (registers the TFDS builder)
from keras_local.validation import check_number

EMBEDDED_DATA_DIR = pathlib.Path(__file__).parent / "datasets"
CATALOG_DATASETS = ("cifar10", "cifar100", "mnist", "tiny_imagenet")

_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
# Per-channel mean and std of the training images, on the [0, 1] scale.
NORMALIZATION = {
    "cifar10": _CIFAR10_STATS,
    "cifar10_jpeg": _CIFAR10_STATS,
    "cifar10_sample": _CIFAR10_STATS,
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}
DEFAULT_NORMALIZATION = ((0.5,), (0.25,))
# Datasets whose labels do not survive a horizontal flip or a shifted crop.
NO_AUGMENTATION = ("mnist",)


def _prepared_names(root):
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    return sorted(
        path.name
        for path in root.iterdir()
        if path.is_dir() and any((version / "dataset_info.json").exists() for version in path.iterdir())
    )


def available_datasets(data_dir=None):
    """Names `load_dataset` accepts with this `data_dir`."""
    names = set(CATALOG_DATASETS) | set(_prepared_names(EMBEDDED_DATA_DIR))
    if data_dir is not None:
        names |= set(_prepared_names(data_dir))
    return sorted(names)


def get_builder(name, data_dir=None):
    """The TFDS builder for `name`; a clear `ValueError` when it cannot exist."""
    if data_dir is not None:
        data_dir = os.fspath(data_dir)
        if not os.path.isdir(data_dir):
            raise ValueError(
                f"data_dir={data_dir!r} does not exist; it must be a TFDS data root "
                "holding <name>/<version>/ folders (e.g. '../shared/data/tfds')."
            )
        if name in _prepared_names(data_dir) or name in CATALOG_DATASETS:
            return tfds.builder(name, data_dir=data_dir)
    if name in _prepared_names(EMBEDDED_DATA_DIR):  # the embedded sample, whatever data_dir says
        return tfds.builder(name, data_dir=os.fspath(EMBEDDED_DATA_DIR))
    if name in CATALOG_DATASETS:
        return tfds.builder(name)
    if data_dir is None:
        raise ValueError(
            f"Unknown dataset {name!r}: it is neither in the catalog nor embedded "
            f"({', '.join(available_datasets())}); a prepared dataset needs data_dir, the TFDS data root "
            f'holding {name}/<version>/ (e.g. data_dir="../shared/data/tfds").'
        )
    raise ValueError(
        f"Unknown dataset {name!r} under data_dir={data_dir!r}. Allowed: {', '.join(available_datasets(data_dir))}."
    )


def check_files(name, split, data_dir=None):
    """Checks that the prepared files of `split` exist, are readable and have
    the size the dataset's metadata records (a truncated shard fails here,
    not mid-epoch). A catalog dataset that is not prepared yet is left to
    TFDS' download."""
    builder = get_builder(name, data_dir)
    base_split = split.split("[", 1)[0]
    if not builder.data_path.exists() or base_split not in builder.info.splits:
        return
    info = builder.info.splits[base_split]
    paths = [os.fspath(path) for path in info.filepaths]
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"Dataset {name!r} split {base_split!r}: the file {path!r} is missing.")
        if not os.access(path, os.R_OK):
            raise ValueError(f"Dataset {name!r} split {base_split!r}: the file {path!r} is not readable.")
    if info.num_bytes and builder.info.file_format.value == "tfrecord":
        # TFDS records the examples' bytes; a TFRecord adds 16 bytes of framing (length, two CRCs)
        # to each. Hand-prepared copies may record the files' size instead.
        recorded = int(info.num_bytes)
        actual = sum(os.path.getsize(path) for path in paths)
        if actual not in (recorded, recorded + 16 * info.num_examples):
            raise ValueError(
                f"Dataset {name!r} split {base_split!r}: its files hold {actual} bytes where its metadata "
                f"records {recorded + 16 * info.num_examples} (a truncated or damaged copy?); prepare it again."
            )


def dataset_info(name, data_dir=None):
    """`(input_shape, num_classes)` of a dataset, from its TFDS metadata."""
    features = get_builder(name, data_dir).info.features
    return tuple(features["image"].shape), features["label"].num_classes


def augment(image, label, seed, padding=4):
    """Zero-pad by `padding`, random crop back to size, random horizontal flip.

    Stateless: the draw is a function of `seed` (a shape-[2] integer tensor)
    alone, so a parallel `map` gives the same images whatever order its
    threads run in.
    """
    height, width, channels = image.shape
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    image = tf.image.resize_with_crop_or_pad(image, height + 2 * padding, width + 2 * padding)
    image = tf.image.stateless_random_crop(image, (height, width, channels), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed), label


def normalization(name):
    """`(mean, std)` per channel, on the [0, 1] scale, that the pipeline standardises `name`'s images with."""
    return NORMALIZATION.get(name, DEFAULT_NORMALIZATION)


def normalizer(name):
    """A map function: uint8 image → float32, scaled to [0, 1], per-channel standardised."""
    mean, std = normalization(name)
    mean, std = tf.constant(mean, tf.float32), tf.constant(std, tf.float32)

    def normalize(image, label):
        image = tf.cast(image, tf.float32) / 255.0
        return (image - mean) / std, label

    return normalize


def load_dataset(
    name,
    split="train",
    batch_size=128,
    training=False,
    data_dir=None,
    num_examples=None,
    seed=0,
    download=True,
    epoch=None,
    initial_batch=0,
):
    """A batched `tf.data.Dataset` of `(image, label)`.

    Args:
        name: a name from `available_datasets(data_dir)`.
        split: a TFDS split ("train", "test", "validation", ...), or a
            slice of one in TFDS syntax ("train[:45000]", "train[-10%:]").
        batch_size: examples per batch.
        training: shuffle (seeded), augment and drop the last partial batch.
        data_dir: a TFDS data root; see the module docstring.
        num_examples: take only the first N examples of the split (quick runs).
        seed: seed of the shuffle, the augmentation and the file order.
        download: let TFDS download a catalog dataset that is not prepared.
        epoch: with `training`, only this epoch's batches, in an order and
            with an augmentation that are a function of `(seed, epoch)` alone:
            a resumed run sees the batches an uninterrupted one saw. None:
            every iteration of the dataset is a new epoch.
        initial_batch: with `epoch`, start after this many of its batches
            (a run resumed inside an epoch).
    """
    _check_batch_size(batch_size)
    if epoch is not None and not training:
        raise ValueError(f"epoch={epoch!r} needs training=True.")
    examples = _read(name, split, data_dir, num_examples, seed, training, download)
    if not training:
        return (
            examples.map(normalizer(name), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    if epoch is None:  # a new order at every iteration, drawn from the seed's stream
        examples = examples.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        return _augmented_batches(name, examples, seeds, batch_size)
    return TrainingEpochs(name, split, batch_size, data_dir, num_examples, seed, download, examples)(
        epoch, initial_batch
    )


class TrainingEpochs:
    """The training epochs of a split: `epochs(e)` is epoch `e`'s batches,
    shuffled and augmented by a function of `(seed, e)` alone, all epochs
    sharing one cache of the decoded images.

    Example:

    ```python
    epochs = TrainingEpochs("cifar10_sample", batch_size=128, seed=0)
    epochs.steps                       # 15 full batches per epoch
    rest = epochs(3, initial_batch=5)  # epoch 3 from its 6th batch: where a killed run resumes
    ```
    """

    def __init__(
        self,
        name,
        split="train",
        batch_size=128,
        data_dir=None,
        num_examples=None,
        seed=0,
        download=True,
        examples=None,
    ):
        _check_batch_size(batch_size)
        self.name, self.batch_size, self.seed = name, batch_size, seed
        self.steps = steps_per_epoch(name, split, batch_size, data_dir, num_examples)
        self._examples = (
            examples if examples is not None else _read(name, split, data_dir, num_examples, seed, True, download)
        )

    def __call__(self, epoch, initial_batch=0):
        check_number("epoch", epoch, 0, integer=True)
        if not 0 <= initial_batch < max(self.steps, 1):
            raise ValueError(f"initial_batch must be in 0..{self.steps - 1}, got {initial_batch!r}.")
        epoch_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        examples = self._examples.shuffle(10_000, seed=epoch_seed, reshuffle_each_iteration=False)
        seeds = tf.data.Dataset.random(seed=epoch_seed).batch(2)
        return _augmented_batches(self.name, examples, seeds, self.batch_size, skip=initial_batch * self.batch_size)


def _check_batch_size(batch_size):
    check_number("batch_size", batch_size, 1, integer=True)


def _read(name, split, data_dir, num_examples, seed, training, download):
    """The split's `(image, label)` examples, decoded once and cached."""
    check_number("num_examples", num_examples, 1, integer=True, optional=True)
    builder = get_builder(name, data_dir)
    base_split = split.split("[", 1)[0]
    if builder.info.splits and base_split not in builder.info.splits:
        raise ValueError(f"Unknown split {split!r} of dataset {name!r}. Allowed: {', '.join(builder.info.splits)}.")
    if num_examples is not None and base_split != split:
        raise ValueError(f"num_examples={num_examples} needs a whole split, got the slice {split!r}.")
    if download:
        builder.download_and_prepare()
    dataset = builder.as_dataset(
        split=split if num_examples is None else f"{split}[:{num_examples}]",
        as_supervised=True,
        shuffle_files=training and not builder.info.disable_shuffling,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    return dataset.cache()


def _augmented_batches(name, examples, seeds, batch_size, skip=0):
    """Augments (one seed pair per example, drawn even where unused so that a
    skip skips both), normalises and batches, dropping the last partial batch."""
    dataset = tf.data.Dataset.zip(examples, seeds).skip(skip)
    if name in NO_AUGMENTATION:
        dataset = dataset.map(lambda example, pair: example)
    else:
        dataset = dataset.map(lambda example, pair: augment(*example, seed=pair), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(normalizer(name), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(name, split, batch_size, data_dir=None, num_examples=None):
    """Full batches in one training epoch of `load_dataset(name, split, batch_size, ...)`."""
    tfds_split = split if num_examples is None else f"{split}[:{num_examples}]"
    return get_builder(name, data_dir).info.splits[tfds_split].num_examples // batch_size

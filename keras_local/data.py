"""TFDS input pipelines for CIFAR-10/100, MNIST and prepared TFDS datasets.

`load_dataset` reads a dataset with TFDS, caches the decoded uint8 images,
then (for training) shuffles with a seed and applies pad-4 random crop +
horizontal flip (stateless, drawn from the same seed: a seeded pipeline gives
the same batches in every run), normalises per channel and batches with `AUTOTUNE` prefetch.

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

import tensorflow as tf
import tensorflow_datasets as tfds

import keras_local.datasets.tiny_imagenet  # noqa: F401  (registers the TFDS builder)

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
        path.name for path in root.iterdir()
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
    where = f" under data_dir={data_dir!r}" if data_dir is not None else ""
    raise ValueError(
        f"Unknown dataset {name!r}{where}. Allowed: {', '.join(available_datasets(data_dir))}."
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


def normalizer(name):
    """A map function: uint8 image → float32, scaled to [0, 1], per-channel standardised."""
    mean, std = NORMALIZATION.get(name, DEFAULT_NORMALIZATION)
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
        seed: seed of the shuffle and the file order.
        download: let TFDS download a catalog dataset that is not prepared.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if num_examples is not None and (not isinstance(num_examples, int) or num_examples < 1):
        raise ValueError(f"num_examples must be a positive integer or None, got {num_examples!r}.")
    builder = get_builder(name, data_dir)
    base_split = split.split("[", 1)[0]
    if builder.info.splits and base_split not in builder.info.splits:
        raise ValueError(
            f"Unknown split {split!r} of dataset {name!r}. Allowed: {', '.join(builder.info.splits)}."
        )
    if num_examples is not None and base_split != split:
        raise ValueError(f"num_examples={num_examples} needs a whole split, got the slice {split!r}.")
    if download:
        builder.download_and_prepare()
    tfds_split = split if num_examples is None else f"{split}[:{num_examples}]"
    dataset = builder.as_dataset(
        split=tfds_split,
        as_supervised=True,
        shuffle_files=training and not builder.info.disable_shuffling,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if name not in NO_AUGMENTATION:
            # One seed pair per example from a seeded stream that draws anew each epoch.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            dataset = tf.data.Dataset.zip(dataset, seeds).map(
                lambda example, pair: augment(*example, seed=pair), num_parallel_calls=tf.data.AUTOTUNE
            )
    dataset = dataset.map(normalizer(name), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)

"""Datasets shipped with the package: the embedded `cifar10_sample` (prepared
TFDS data) and TFDS builders, registered with TFDS on import."""

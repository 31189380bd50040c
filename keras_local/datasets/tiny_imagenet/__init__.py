"""The `tiny_imagenet` TFDS builder (registered with TFDS on import)."""

from keras_local.datasets.tiny_imagenet.tiny_imagenet_dataset_builder import Builder

__all__ = ["Builder"]

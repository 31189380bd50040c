"""The tiny_imagenet TFDS builder, on fake JPEGs laid out like the real archive."""

import pathlib

import pytest
import tensorflow_datasets as tfds

import keras_local as kl
from keras_local.datasets.tiny_imagenet import Builder

pytestmark = pytest.mark.large  # the real Tiny-ImageNet copy

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "tfds"


class TinyImagenetTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's builder test: generates both splits from `dummy_data/`."""

    DATASET_CLASS = Builder
    # 3 of the 200 wnids with 2 train images each (one grayscale); the archive's
    # extra class n99999999 is left out. 4 val images of standard classes.
    SPLITS = {"train": 6, "validation": 4}
    DL_EXTRACT_RESULT = ""
    SKIP_CHECKSUMS = True


def test_builder_features_labels_and_grayscale(tmp_path):
    builder = Builder(data_dir=str(tmp_path))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(pathlib.Path(kl.datasets.tiny_imagenet.__file__).parent / "dummy_data")
        )
    )
    assert builder.info.features["label"].num_classes == 200
    assert builder.info.version == "1.0.0"
    examples = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    labels = {example["id"].decode(): int(example["label"]) for example in examples}
    assert labels == {"val_0.JPEG": 0, "val_1.JPEG": 199, "val_2.JPEG": 1, "val_4.JPEG": 0}
    assert all(example["image"].shape == (64, 64, 3) for example in examples)  # val_2 was grayscale


@pytest.mark.skipif(not (SHARED / "tiny_imagenet").is_dir(), reason="no shared Tiny-ImageNet copy")
def test_the_prepared_shared_copy_loads_through_the_builder():
    assert tfds.builder("tiny_imagenet", data_dir=str(SHARED)).__class__ is Builder
    dataset = kl.data.load_dataset(
        "tiny_imagenet", split="validation", batch_size=50, data_dir=SHARED, num_examples=100
    )
    images, labels = next(iter(dataset))
    assert images.shape == (50, 64, 64, 3) and labels.shape == (50,)
    assert kl.data.dataset_info("tiny_imagenet", SHARED) == ((64, 64, 3), 200)

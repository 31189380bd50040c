"""Tiny-ImageNet-200 as a TFDS dataset: 200 classes, 64x64 JPEG.

Built from the official `tiny-imagenet-200.zip` archive (downloaded, or
placed by hand in TFDS's manual dir). `train` holds the 100,000 train images
(500 per class) and `validation` the 10,000 val images (50 per class), which
the papers report as the test set (the archive's test images have no
labels). `label` indexes the 200 wnids in sorted order (`wnids.txt`); `id` is
the original filename. Grayscale JPEGs of the archive are re-encoded as RGB
(quality 95) so that every image is 64x64x3; every other image is stored
byte for byte.

Importing `keras_local` registers the builder, so both of these work:

```python
kl.data.load_dataset("tiny_imagenet", split="validation", data_dir="../shared/data/tfds")
tfds.load("tiny_imagenet", split="validation", data_dir="../shared/data/tfds")
```
"""

import io
import pathlib

import tensorflow_datasets as tfds
from etils import epath

_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_WNIDS = (pathlib.Path(__file__).parent / "wnids.txt").read_text().split()


def _image(path):
    """The file itself for an RGB JPEG, an RGB re-encode (q95) otherwise."""
    from PIL import Image  # noqa: PLC0415 (Pillow: only where TFDS prepares the images)

    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.mode == "RGB":
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


class Builder(tfds.core.GeneratorBasedBuilder):
    """Tiny-ImageNet-200 (64x64x3, 200 classes)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Official train and val images of tiny-imagenet-200.zip."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Without network access, place `tiny-imagenet-200.zip` (from {_URL}) or its "
        "extracted `tiny-imagenet-200/` folder in the manual dir."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            description="Tiny-ImageNet-200: 200 ImageNet classes at 64x64, 500 train and 50 val images each.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(names=_WNIDS),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://cs231n.stanford.edu/",
            citation="@article{le2015tiny, title={Tiny ImageNet Visual Recognition Challenge}, "
            "author={Le, Ya and Yang, Xuan}, journal={CS 231N}, year={2015}}",
        )

    def _split_generators(self, dl_manager):
        root = self._archive_root(dl_manager)
        return {
            "train": self._generate_examples(root, "train"),
            "validation": self._generate_examples(root, "validation"),
        }

    def _archive_root(self, dl_manager):
        manual = epath.Path(dl_manager.manual_dir) if dl_manager.manual_dir else None
        if manual is not None and (manual / "tiny-imagenet-200").is_dir():
            return manual / "tiny-imagenet-200"
        if manual is not None and (manual / "tiny-imagenet-200.zip").exists():
            return epath.Path(dl_manager.extract(manual / "tiny-imagenet-200.zip")) / "tiny-imagenet-200"
        return epath.Path(dl_manager.download_and_extract(_URL)) / "tiny-imagenet-200"

    def _generate_examples(self, root, split):
        root = epath.Path(root)
        wnids = set(_WNIDS)
        if split == "train":
            for wnid in sorted(path.name for path in (root / "train").iterdir()):
                if wnid not in wnids:
                    continue  # not one of the 200 standard classes
                for path in sorted((root / "train" / wnid / "images").glob("*.JPEG")):
                    yield path.name, {"id": path.name, "image": _image(path), "label": wnid}
        else:
            annotations = (root / "val" / "val_annotations.txt").read_text().splitlines()
            for line in annotations:
                filename, wnid = line.split("\t")[:2]
                if wnid in wnids:
                    path = root / "val" / "images" / filename
                    yield filename, {"id": filename, "image": _image(path), "label": wnid}

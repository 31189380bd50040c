"""Builds the CIFAR-10 sample shipped inside the package (the demo's data).

Copies the first 2,000 training and first 1,000 test examples (official
order), byte for byte, from the prepared TFDS copy of CIFAR-10 (JPEG q75) into
`keras_local/datasets/cifar10_sample/1.0.0/`, a prepared TFDS dataset that
`tfds.builder_from_directory` reads.

    python tools/make_sample.py --source ../shared/data/tfds/cifar10_jpeg/1.0.0
"""

import argparse
import json
import pathlib
import shutil

import tensorflow as tf

NAME = "cifar10_sample"
SIZES = {"train": 2000, "test": 1000}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="../shared/data/tfds/cifar10_jpeg/1.0.0")
    parser.add_argument("--output", default=f"keras_local/datasets/{NAME}/1.0.0")
    args = parser.parse_args()
    source, output = pathlib.Path(args.source), pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    info = json.loads((source / "dataset_info.json").read_text())
    for split in info["splits"]:
        shards = sorted(source.glob(f"{info['name']}-{split['name']}.tfrecord-*"))
        records = tf.data.TFRecordDataset([str(path) for path in shards]).take(SIZES[split["name"]])
        path = output / f"{NAME}-{split['name']}.tfrecord-00000-of-00001"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in records:
                writer.write(record.numpy())
        split["shardLengths"] = [str(SIZES[split["name"]])]
        split["numBytes"] = str(path.stat().st_size)
    info["name"] = NAME
    info["description"] = (
        f"The first {SIZES['train']} training and first {SIZES['test']} test images of "
        "CIFAR-10 (JPEG q75 re-encoded), official order, shipped with keras_local as the "
        "demo's data. " + info["description"]
    )
    (output / "dataset_info.json").write_text(json.dumps(info, indent=2))
    for name in ("features.json", "label.labels.txt"):
        shutil.copy(source / name, output / name)


if __name__ == "__main__":
    main()

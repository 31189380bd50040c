import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_local import data


def test_pipeline_on_mock_cifar10():
    with tfds.testing.mock_data(num_examples=40):
        train = data.load_dataset("cifar10", "train", batch_size=16, training=True, seed=1)
        test = data.load_dataset("cifar10", "test", batch_size=16)
        batches = list(train)
        assert len(batches) == 2  # drop_remainder for training
        images, labels = batches[0]
        assert images.shape == (16, 32, 32, 3) and images.dtype.name == "float32"
        assert labels.dtype.name == "int64" and 0 <= labels.numpy().min() and labels.numpy().max() < 10
        assert sum(int(x.shape[0]) for x, _ in test) == 40  # evaluation keeps the last batch


def test_embedded_sample_is_real_cifar10():
    assert data.dataset_info("cifar10_sample") == ((32, 32, 3), 10)
    test = data.load_dataset("cifar10_sample", "test", batch_size=500)
    labels = np.concatenate([y.numpy() for _, y in test])
    assert labels.shape == (1000,)
    assert labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # official test order
    images = np.concatenate([x.numpy() for x, _ in test])
    # Per-channel normalisation with the CIFAR-10 statistics gives ~zero mean, ~unit std.
    assert np.abs(images.mean(axis=(0, 1, 2))).max() < 0.15
    assert np.abs(images.std(axis=(0, 1, 2)) - 1).max() < 0.15


def test_num_examples_and_seeded_shuffle():
    first = data.load_dataset("cifar10_sample", "train", batch_size=50, training=True, num_examples=200, seed=3)
    again = data.load_dataset("cifar10_sample", "train", batch_size=50, training=True, num_examples=200, seed=3)
    labels = [y.numpy() for _, y in first]
    assert len(labels) == 4
    np.testing.assert_array_equal(np.concatenate(labels), np.concatenate([y.numpy() for _, y in again]))
    assert sorted(np.concatenate(labels).tolist()) != np.concatenate(labels).tolist()


def test_augmentation_pads_crops_and_flips():
    image = np.arange(8 * 8 * 3, dtype="uint8").reshape(8, 8, 3)
    outputs = {data.augment(image, 0, seed=tf.constant([0, s]))[0].numpy().tobytes() for s in range(20)}
    assert len(outputs) > 1
    again = data.augment(image, 0, seed=tf.constant([0, 7]))[0].numpy()
    np.testing.assert_array_equal(again, data.augment(image, 0, seed=tf.constant([0, 7]))[0].numpy())
    assert again.shape == (8, 8, 3)


def test_a_seeded_training_pipeline_gives_the_same_batches_in_every_run_and_new_draws_each_epoch():
    def epochs(seed):
        train = data.load_dataset("cifar10_sample", "train", batch_size=100, training=True, num_examples=300, seed=seed)
        return [np.concatenate([x.numpy() for x, _ in train]) for _ in range(2)]  # the same dataset, twice

    first, again, other = epochs(3), epochs(3), epochs(4)
    for epoch in range(2):  # no global seed is set: the draws come from `seed` alone
        np.testing.assert_array_equal(first[epoch], again[epoch])
        assert not np.array_equal(first[epoch], other[epoch])
    assert not np.array_equal(first[0], first[1])  # the second epoch reshuffles and re-augments


def test_prepared_dataset_under_a_data_dir(tmp_path):
    root = data.EMBEDDED_DATA_DIR
    assert "cifar10_sample" in data.available_datasets(root)
    batches = data.load_dataset("cifar10_sample", "test", batch_size=1000, data_dir=root)
    assert next(iter(batches))[0].shape == (1000, 32, 32, 3)
    # A data_dir that holds other datasets still leaves the embedded sample reachable.
    (tmp_path / "other").mkdir()
    assert "cifar10_sample" in data.available_datasets(tmp_path / "other")
    labels = next(iter(data.load_dataset("cifar10_sample", "test", batch_size=10, data_dir=tmp_path / "other")))[1]
    assert labels.numpy().tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(name="cifar11"),
            "Unknown dataset 'cifar11': it is neither in the catalog nor embedded "
            "\\(cifar10, cifar100, cifar10_sample, mnist",
        ),
        (dict(name="cifar10", data_dir="/no/such/dir"), "data_dir='/no/such/dir' does not exist"),
        (dict(name="cifar10_sample", split="validation"), "Unknown split 'validation'"),
        (dict(name="cifar10_sample", batch_size=0), "batch_size must be a positive integer, got 0"),
    ],
)
def test_bad_dataset_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_dataset(**kwargs)

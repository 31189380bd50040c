"""InfoPro's logs: a contrast head's embedding is not scored as a class prediction."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import LEARNING_RATE, applied_gradients, assert_close, ce, tiny_batch

import keras_local as kl

SHAPE, CLASSES = (8, 8, 3), 5


@pytest.mark.parametrize("aux_loss, scored", [("contrast", ["acc_2"]), ("cross_entropy", ["acc_0", "acc_1", "acc_2"])])
def test_only_heads_that_score_the_classes_log_an_accuracy(aux_loss, scored):
    model = kl.build_model(
        "resnet8", "infopro", num_blocks=3, input_shape=SHAPE, num_classes=CLASSES, aux_loss=aux_loss
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert sorted(key for key in logs if key.startswith("acc_")) == scored
    assert sorted(key for key in logs if key.startswith("loss_")) == ["loss_0", "loss_1", "loss_2"]
    evaluation = model.evaluate(x, y, return_dict=True, verbose=0)
    assert sorted(key for key in evaluation if key.startswith("acc_")) == scored


@pytest.mark.parametrize(
    "num_blocks, expected",
    [
        (2, [(5.0, 0.5)]),
        (4, [(5.0, 0.5), (2.6, 0.75), (0.2, 1.0)]),
        (16, [(5.0 * (1 - k / 14) + 0.2 * k / 14, 0.5 * (1 - k / 14) + 1.0 * k / 14) for k in range(15)]),
    ],
)
def test_infopro_lambda_interpolation(num_blocks, expected):
    method = kl.get_method("infopro", reconstruction_weights=(5.0, 0.2), aux_weights=(0.5, 1.0))
    np.testing.assert_allclose(method.interpolated_weights(num_blocks), expected)
    losses = [method.block_loss(k, num_blocks, None) for k in range(num_blocks)]
    np.testing.assert_allclose([(loss.reconstruction_weight, loss.aux_weight) for loss in losses[:-1]], expected)
    assert (losses[-1].reconstruction_weight, losses[-1].aux_weight) == (0.0, 1.0)


def test_infopro_split_tables():
    from keras_local.methods.infopro import infopro_cuts
    from keras_local.splitting import block_sizes

    # Residual blocks per module from InfoPro's configs, plus the stem in the first.
    assert block_sizes(16, infopro_cuts("resnet32", 2)) == [8, 8]
    assert block_sizes(16, infopro_cuts("resnet32", 16)) == [1] * 16
    assert block_sizes(55, infopro_cuts("resnet110", 4)) == [13, 14, 14, 14]
    assert block_sizes(55, infopro_cuts("resnet110", 16)) == [3] * 9 + [4] * 7
    assert block_sizes(55, infopro_cuts("resnet110", 4, balanced=True)) == [8, 8, 12, 27]
    model = kl.build_model("resnet110", "infopro", num_blocks=2, split="infopro_balanced", build=False)
    assert [len(b.units) for b in model.blocks] == [16, 39]
    with pytest.raises(ValueError, match="split='infopro' has no table for resnet20 with num_blocks=4"):
        kl.build_model("resnet20", "infopro", num_blocks=4, split="infopro", build=False)


def test_supervised_contrastive_loss_matches_its_formula():
    from keras_local.methods.infopro import supervised_contrastive

    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    labels = np.array([0, 1, 0, 1, 2, 0])
    loss = supervised_contrastive(z.astype("float32"), labels, temperature=0.5, base_temperature=0.5).numpy()
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    logits = unit @ unit.T / 0.5
    expected = []
    for i in range(6):
        others = [a for a in range(6) if a != i]
        denominator = np.log(np.exp(logits[i, others]).sum())
        positives = [p for p in others if labels[p] == labels[i]]
        expected.append(-np.mean([logits[i, p] - denominator for p in positives]) if positives else 0.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_infopro_blocks_get_their_interpolated_loss():
    from keras_local.data import NORMALIZATION

    model = kl.build_model(
        "resnet20",
        "infopro",
        cuts=[2, 6],
        input_shape=(8, 8, 3),
        num_classes=5,
        reconstruction_weights=(2.0, 0.5),
        aux_weights=(0.3, 1.0),
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 4])
    mean, std = (np.array(v, "float32") for v in NORMALIZATION["cifar10"])
    image = x * std + mean  # the un-normalised image
    weights = [(2.0, 0.3), (0.5, 1.0)]
    with tf.GradientTape(persistent=True) as tape:
        h, losses = tf.constant(x), []
        for index, block in enumerate(model.blocks):
            h = block(h, training=True)
            outputs = block.head(h, training=True)
            if index == 2:
                losses.append(ce(y, outputs))
                continue
            recon = tf.clip_by_value(outputs["reconstruction"], 1e-7, 1 - 1e-7)
            bce = -tf.reduce_mean(image * tf.math.log(recon) + (1 - image) * tf.math.log(1 - recon))
            losses.append(weights[index][0] * bce + weights[index][1] * ce(y, outputs["logits"]))
    reference = [tape.gradient(loss, block.trainable_variables) for loss, block in zip(losses, model.blocks)]
    applied = applied_gradients(model, x, y)
    for k in range(3):
        assert_close(applied[k], [g.numpy() for g in reference[k]], atol=5e-5)
    leaked = [g for g in tape.gradient(losses[1], model.blocks[0].trainable_variables) if g is not None]
    assert max(float(tf.reduce_max(tf.abs(g))) for g in leaked) > 1e-5
    assert model.blocks[0].head.get_config()["image_shape"] == [8, 8, 3]


def test_infopro_head_and_options():
    from keras_local.methods.infopro import InfoProHead

    head = InfoProHead(10, image_shape=(32, 32, 3), aux_loss="contrast")
    outputs = head(np.ones((2, 8, 8, 64), "float32"))
    assert outputs["logits"].shape == (2, 128)  # the contrastive embedding
    reconstruction = outputs["reconstruction"].numpy()
    assert reconstruction.shape == (2, 32, 32, 3) and reconstruction.min() >= 0 and reconstruction.max() <= 1
    with pytest.raises(ValueError, match="Unknown aux_loss 'mse'"):
        kl.get_method("infopro", aux_loss="mse")
    with pytest.raises(ValueError, match="reconstruction_weights must be a pair"):
        kl.get_method("infopro", reconstruction_weights=1.0)


def test_infopro_default_gives_the_local_block_of_k2_a_supervised_term():
    """The reference's λ for K = 2 (resnet32: ixx 5, ixy 1): the only local block learns from the
    labels too. (1, 0) / (0, 1) gave it λ2 = 0, reconstruction only, and its classifier no gradient.)"""
    model = kl.build_model("resnet8", "infopro", num_blocks=2, input_shape=(8, 8, 3), num_classes=5)
    assert model.method.interpolated_weights(2) == [(5.0, 1.0)]
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    applied = applied_gradients(model, x, np.array([0, 1, 2, 0, 1, 4]))
    classifier = {id(v) for v in model.blocks[0].head.aux.trainable_variables}
    assert (
        max(np.abs(g).max() for g, v in zip(applied[0], model.blocks[0].trainable_variables) if id(v) in classifier)
        > 1e-4
    )
    # The reference's per-K values, and the dataset's normalisation.
    built = kl.build_model("resnet32", "infopro", num_blocks=16, dataset="cifar100", build=False)
    assert built.method.get_config()["reconstruction_weights"] == [5.0, 0.2]
    assert built.method.get_config()["aux_weights"] == [0.05, 0.5]
    assert built.method.get_config()["image_normalization"] == "cifar100"


def test_infopro_contrast_mode_through_a_model():
    from keras_local.data import NORMALIZATION
    from keras_local.methods.infopro import supervised_contrastive

    model = kl.build_model(
        "resnet8",
        "infopro",
        cuts=[2],
        input_shape=(8, 8, 3),
        num_classes=5,
        aux_loss="contrast",
        reconstruction_weights=(1.0, 1.0),
        aux_weights=(0.5, 0.5),
    )
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 4, 2, 2])
    mean, std = (np.array(v, "float32") for v in NORMALIZATION["cifar10"])
    image = x * std + mean
    with tf.GradientTape(persistent=True) as tape:
        h0 = model.blocks[0](tf.constant(x), training=True)
        outputs = model.blocks[0].head(h0, training=True)
        assert outputs["logits"].shape == (8, 128)  # the embedding
        recon = tf.clip_by_value(outputs["reconstruction"], 1e-7, 1 - 1e-7)
        bce = -tf.reduce_mean(image * tf.math.log(recon) + (1 - image) * tf.math.log(1 - recon))
        loss0 = bce + 0.5 * tf.reduce_mean(supervised_contrastive(outputs["logits"], tf.constant(y), 0.07, 0.07))
        h1 = model.blocks[1](tf.stop_gradient(h0), training=True)
        loss1 = ce(y, model.blocks[1].head(h1, training=True))
    reference = [
        [g.numpy() for g in tape.gradient(loss, block.trainable_variables)]
        for loss, block in zip((loss0, loss1), model.blocks)
    ]
    applied = applied_gradients(model, x, y)
    for k in range(2):
        assert_close(applied[k], reference[k], atol=5e-5)
    model.block_order = "sequential"  # and it trains through fit
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and np.isfinite(history.history["loss_0"][-1])

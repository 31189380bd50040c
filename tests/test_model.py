import keras
import numpy as np
import pytest
from conftest import tiny_batch, tiny_resnet

import keras_local as kl


def test_registries_list_what_exists():
    assert {"bp", "gll"} <= set(kl.list_methods())
    assert {"resnet20", "resnet32", "resnet56", "resnet110", "vgg11", "vgg13", "vgg16", "vgg19", "mlp"} <= set(
        kl.list_architectures()
    )
    assert kl.list_heads() == ["cnn", "conv", "infopro", "linear", "mlp", "mlp_sr", "predsim"]


@pytest.mark.parametrize(
    "name, units",
    [
        ("resnet20", 10),
        ("resnet32", 16),
        ("resnet56", 28),
        ("resnet110", 55),
        ("vgg11", 8),
        ("vgg16", 13),
        ("vgg19", 16),
        ("mlp", 3),
    ],
)
def test_architectures_have_the_expected_number_of_units(name, units):
    model = kl.build_model(name, method="gll", num_blocks=1, input_shape=(32, 32, 3), num_classes=10)
    assert len(model.blocks[0].units) == units
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


def test_bp_has_the_same_blocks_as_gll_and_no_aux_heads():
    gll = kl.build_model("resnet32", method="gll", num_blocks=4, head="conv")
    bp = kl.build_model("resnet32", method="bp", num_blocks=4, head="conv")
    assert [len(b.units) for b in gll.blocks] == [len(b.units) for b in bp.blocks] == [4, 4, 4, 4]
    assert [b.head is None for b in bp.blocks] == [True, True, True, False]
    assert gll.count_params() > bp.count_params()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(architecture="resnet33"),
            "Unknown architecture 'resnet33'. Allowed: alexnet, cnn, dgl_cnn4, dgl_cnn6, mlp, resnet101",
        ),
        (
            dict(method="magic"),
            "Unknown method 'magic'. Allowed: associated, auglocal, backlink, bp, bwbpf, dgl, gll, infopro, predsim",
        ),
        (dict(head="mlp3"), "Unknown head 'mlp3'. Allowed: cnn, conv, infopro, linear, mlp, mlp_sr, predsim"),
        (dict(num_blocks=11), "num_blocks=11 is larger than the number of units \\(10\\)"),
        (dict(num_blocks=0), "num_blocks must be a positive integer, got 0"),
        (dict(cuts=[5, 3]), "must be strictly increasing"),
        (dict(cuts=[2, 11]), "out of range"),
        (dict(num_classes=1), "num_classes must be an integer >= 2"),
        (
            dict(method="gll", alpha=0.5),
            "Method 'gll' has no option 'alpha'; its options: man, man_momentum, hpff, hpff_cascade_weight, "
            "hpff_patch_grid",
        ),
    ],
)
def test_bad_input_raises_value_error_quoting_the_value(kwargs, message):
    kwargs = {"architecture": "resnet20", **kwargs}
    with pytest.raises(ValueError, match=message):
        kl.build_model(kwargs.pop("architecture"), **kwargs)


def test_compile_gives_every_block_its_own_optimizer():
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    optimizers = [block.optimizer for block in model.blocks]
    assert len({id(o) for o in optimizers}) == 3
    assert all(isinstance(o, keras.optimizers.SGD) and o.momentum == 0.9 for o in optimizers)
    assert model.optimizer.optimizers == optimizers and model.optimizer.built

    model.compile(optimizer=lambda k: keras.optimizers.Adam(10.0 ** -(k + 1)))
    rates = [float(block.optimizer.learning_rate) for block in model.blocks]
    np.testing.assert_allclose(rates, [0.1, 0.01, 0.001])

    model.compile(optimizer=[keras.optimizers.SGD(0.1), keras.optimizers.Adam(), "rmsprop"])
    assert [type(b.optimizer).__name__ for b in model.blocks] == ["SGD", "Adam", "RMSprop"]
    with pytest.raises(ValueError, match="Got 2 optimizers for 3 blocks"):
        model.compile(optimizer=[keras.optimizers.SGD(), keras.optimizers.SGD()])


def test_fit_logs_final_and_per_block_metrics_and_evaluate_reports_them():
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    x, y = tiny_batch(24)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, validation_data=(x, y))
    for key in ["loss", "accuracy", "loss_0", "acc_0", "acc_1", "acc_2", "val_accuracy", "val_acc_1"]:
        assert key in history.history, key
    assert [int(b.optimizer.iterations) for b in model.blocks] == [6, 6, 6]
    results = model.evaluate(x, y, return_dict=True, verbose=0)
    assert {"accuracy", "acc_0", "acc_1", "acc_2"} <= set(results)
    assert results["acc_2"] == pytest.approx(results["accuracy"])  # the last head is the output


def test_lr_callbacks_change_every_blocks_learning_rate():
    model = tiny_resnet()
    model.compile(optimizer=lambda k: keras.optimizers.SGD(0.1 * (k + 1)))
    x, y = tiny_batch(8)
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr / 2)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[halve])
    np.testing.assert_allclose(
        [float(b.optimizer.learning_rate) for b in model.blocks], [0.025, 0.05, 0.075], rtol=1e-6
    )
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.1, patience=0, min_delta=1e9)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[plateau])
    np.testing.assert_allclose(
        [float(b.optimizer.learning_rate) for b in model.blocks], [0.0025, 0.005, 0.0075], rtol=1e-5
    )  # one plateau in 2 epochs
    model.optimizer.learning_rate = 0.3
    assert all(float(b.optimizer.learning_rate) == pytest.approx(0.3) for b in model.blocks)


def test_block_fit_trains_that_block_alone():
    model = tiny_resnet()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = tiny_batch(16)
    features = model.blocks[0].predict(x, verbose=0)
    before = [block.get_weights() for block in model.blocks]
    block = model.blocks[1]
    history = block.fit(features, y, batch_size=8, epochs=3, verbose=0)
    assert {"loss", "accuracy"} <= set(history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert [int(b.optimizer.iterations) for b in model.blocks] == [0, 6, 0]
    changed = [
        index
        for index, (block, weights) in enumerate(zip(model.blocks, before))
        if any(not np.array_equal(a, b) for a, b in zip(block.get_weights(), weights))
    ]
    assert changed == [1]


def test_weight_decay_scope_backbone_kernels_decays_only_the_units_kernels():
    """Associated Learning's reference: L2 on the network's kernels only, not on biases, batch norm or
    the heads (its bridges). `"all"` is PyTorch's: every trainable variable."""
    from conftest import LEARNING_RATE, applied_gradients

    gradients = {}
    for scope in ("all", "backbone_kernels"):
        keras.utils.set_random_seed(0)
        model = kl.build_model(
            "mlp",
            "gll",
            num_blocks=2,
            input_shape=(6,),
            num_classes=3,
            weight_decay=0.5,
            weight_decay_scope=scope,
            architecture_options={"hidden_units": (4, 4)},
        )
        model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
        x = np.zeros((4, 6), "float32")  # no input: the data gradient of every first-layer kernel is 0
        values = [v.numpy() for v in model.blocks[0].trainable_variables]
        gradients[scope] = (
            applied_gradients(model, x, np.array([0, 1, 2, 0]))[0],
            values,
            [v.path for v in model.blocks[0].trainable_variables],
        )
    applied, values, paths = gradients["backbone_kernels"]
    all_applied = gradients["all"][0]
    for gradient, all_gradient, value, path in zip(applied, all_applied, values, paths):
        if "head" not in path and path.endswith("kernel"):  # the unit's kernel: λ·w on top of a zero data term
            np.testing.assert_allclose(gradient, 0.5 * value, atol=1e-6)
        else:  # the head and the biases: no decay (the "all" scope decays them)
            np.testing.assert_allclose(all_gradient - gradient, 0.5 * value, atol=1e-6)


def test_the_schedule_keyword_removed_in_0_4_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"build_model\(schedule='sequential'\) was removed in keras_local 0.4"):
        kl.build_model("resnet8", "gll", num_blocks=2, schedule="sequential", build=False)

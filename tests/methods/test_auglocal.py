"""AugLocal: gll's gradients with auxiliary nets built from later layers, as the reference builds them."""

import keras
import keras_tuner as kt
import numpy as np
import pytest
from conftest import LEARNING_RATE, applied_gradients, assert_close, local_loss_gradients, tiny_batch

import keras_local as kl
from keras_local.layers import ConvBNReLU, ResidualUnit
from keras_local.methods.auglocal import AugmentedHead, pyramid_depth, sampled_layers
from keras_local.methods.man import MomentumHead

SHAPE, CLASSES = (8, 8, 3), 5


def test_each_block_gets_only_its_own_loss_through_its_augmented_net():
    model = kl.build_model("resnet8", "auglocal", num_blocks=3, input_shape=SHAPE, num_classes=CLASSES, depth=2)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    assert all(isinstance(block.head, AugmentedHead) for block in model.blocks[:-1])
    x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES)
    reference, leaked = local_loss_gradients(model, x, y)
    applied = applied_gradients(model, x, y)
    for k in range(len(model.blocks)):
        assert_close(applied[k], reference[k])
    assert max(float(np.abs(g).max()) for g in leaked[0]) > 1e-4  # the test would see a gradient crossing the cut


def test_the_auxiliary_nets_of_resnet32_follow_the_reference_formulas():
    # The reference (networks/auxiliary_nets.py, unifSamp): layer l of L = 16 copies round(l + (L−l−1)/d·i).
    assert sampled_layers(0, 16, 2) == [8, 15]  # round(7.5) = 8
    assert sampled_layers(3, 16, 3) == [7, 11, 15]
    assert sampled_layers(13, 16, 3) == [14, 15]  # fewer left than d: all of them
    # Pyramidal depth max(1, round(d(1 − kτ/(K−2)) + kτ/(K−2))), here d = 5, τ = 0.5, K = 14.
    assert [pyramid_depth(5, 0.5, k, 14) for k in (0, 6, 12)] == [5, 4, 3]
    assert [pyramid_depth(2, 1.0, k, 14) for k in (0, 6, 12)] == [2, 2, 1]
    model = kl.build_model("resnet32", "auglocal", cuts=list(range(1, 14)), depth=2, build=False)
    head = model.blocks[0].head  # after the stem (16 channels): copies of units 8 (32) and 15 (64)
    assert [(type(u), u.filters, u.strides) for u in head.units] == [(ResidualUnit, 32, 2), (ResidualUnit, 64, 2)]
    assert head.norm is None  # BatchNorm before the classifier only when d <= 1
    head = model.blocks[7].head  # block 7 ends at unit 7 (32 channels): units round(7 + 4·i)
    assert [(u.filters, u.strides) for u in head.units] == [(64, 2), (64, 1)]
    assert model.blocks[12].head.units[-1].filters == 64 and model.blocks[-1].head is model.output_head


def test_vgg_gets_conv_copies_and_other_units_are_refused_in_one_line():
    model = kl.build_model("vgg11", "auglocal", num_blocks=4, depth=1, build=False)
    head = model.blocks[0].head
    assert all(isinstance(unit, ConvBNReLU) for unit in head.units) and head.norm is not None
    with pytest.raises(ValueError, match="residual or conv units"):
        kl.build_model("mlp", "auglocal", num_blocks=2, input_shape=(8,), build=False)
    with pytest.raises(ValueError, match="depth must be a positive integer, got 0"):
        kl.build_model("resnet8", "auglocal", num_blocks=2, depth=0)


def test_a_search_can_choose_auglocal_and_the_composed_rules():
    common = dict(input_shape=SHAPE, num_classes=CLASSES, num_blocks=[2], head=["linear"], learning_rate=[0.1])
    auglocal = kl.tuning.LocalHyperModel("resnet8", method=["auglocal"], depth=[1], **common)
    model = auglocal.build(kt.HyperParameters())
    assert model.method.name == "auglocal" and model.blocks[0].head.norm is not None
    man = kl.tuning.LocalHyperModel("resnet8", method=["dgl"], man=[True], **common)
    hp = kt.HyperParameters()
    model = man.build(hp)
    assert isinstance(model.blocks[0].head, MomentumHead) and hp.values["dgl/man"] is True
    assert man.config_from(hp)["method_options"]["man"] is True

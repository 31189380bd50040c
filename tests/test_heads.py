"""The heads any method may choose (`keras_local.heads`)."""

import pytest

import keras_local as kl


def test_conv_head_follows_infopro_widths_and_strides():
    head = kl.heads.ConvHead(10)
    head.build((None, 32, 32, 16))
    assert head.conv.filters == 32 and head.conv.strides == (2, 2)
    head = kl.heads.ConvHead(10)
    head.build((None, 8, 8, 64))
    assert head.conv.filters == 64 and head.conv.strides == (1, 1)
    with pytest.raises(ValueError, match="image features"):
        kl.heads.ConvHead(10).build((None, 128))

import pytest

from keras_local.splitting import (
    balanced_cuts,
    block_sizes,
    even_cuts,
    parse_cuts,
    resolve_cuts,
    split_units,
)


def test_even_split():
    assert even_cuts(16, 4) == [4, 8, 12]
    assert block_sizes(16, even_cuts(16, 4)) == [4, 4, 4, 4]
    assert even_cuts(5, 1) == []


def test_uneven_split_gives_lower_blocks_one_more_unit():
    # BackLink: ResNet-110's 55 units at K = 16 -> {4} x 7 + {3} x 9.
    assert block_sizes(55, even_cuts(55, 16)) == [4] * 7 + [3] * 9
    assert block_sizes(10, even_cuts(10, 4)) == [3, 3, 2, 2]


def test_explicit_cuts_and_string_form():
    assert resolve_cuts(16, cuts=[3, 7, 11]) == [3, 7, 11]
    assert resolve_cuts(16, cuts="3,7,11") == [3, 7, 11]
    assert parse_cuts(" 2, 5 ") == [2, 5]
    assert split_units(list("abcdef"), [2, 5]) == [["a", "b"], ["c", "d", "e"], ["f"]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_blocks=17), "num_blocks=17 is larger than the number of units (16)"),
        (dict(num_blocks=0), "num_blocks must be a positive integer, got 0"),
        (dict(cuts=[0, 4]), "out of range"),
        (dict(cuts=[4, 17]), "out of range"),
        (dict(cuts=[8, 4]), "strictly increasing"),
        (dict(cuts=[4, 4]), "strictly increasing"),
        (dict(cuts="3,x"), "'3,x' is not a comma-separated list"),
        (dict(cuts=[4, 8], num_blocks=4), "num_blocks=4 disagrees with cuts=[4, 8]"),
    ],
)
def test_invalid_splits_raise_value_error_quoting_the_value(kwargs, message):
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        resolve_cuts(16, **kwargs)


def test_a_cut_at_the_end_leaves_the_output_layer_alone_in_the_last_block():
    assert resolve_cuts(7, cuts=[2, 4, 7]) == [2, 4, 7]
    assert block_sizes(7, [2, 4, 7]) == [2, 2, 3, 0]


def test_balanced_split_minimises_the_largest_block():
    assert balanced_cuts([4, 4, 1, 1, 1, 1], 2) == [2]
    assert balanced_cuts([1, 1, 1, 1], 4) == [1, 2, 3]
    assert balanced_cuts([3, 1, 1, 1, 1, 1, 1, 1], 2) == [3]  # 5 | 5, not 4 | 6
    with pytest.raises(ValueError, match="num_blocks=5 is larger than the number of units"):
        balanced_cuts([1, 1], 5)
    with pytest.raises(ValueError, match="Unknown split 'front'. Allowed: even, balanced, infopro, infopro_balanced"):
        resolve_cuts(16, num_blocks=4, split="front")


def test_balanced_resnet110_blocks_are_front_light():
    import keras_local as kl

    even = kl.build_model("resnet110", "gll", num_blocks=4, build=False)
    balanced = kl.build_model("resnet110", "gll", num_blocks=4, split="balanced", build=False)
    assert [len(b.units) for b in even.blocks] == [14, 14, 14, 13]
    # 19 units at 32x32x16, 18 at 16x16x32, 18 at 8x8x64: activation sizes 4 : 2 : 1.
    assert [len(b.units) for b in balanced.blocks] == [8, 8, 14, 25]

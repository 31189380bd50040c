"""Profiling: per-block times, peak memory per block order, the profile command."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_batch

import keras_local as kl
from keras_local import cli, profiling


def deep_mlp(method, num_blocks=4, depth=4):
    return kl.build_model(
        "mlp",
        method,
        num_blocks=num_blocks,
        input_shape=(64,),
        num_classes=10,
        architecture_options={"hidden_units": (256,) * depth},
    )


def batch(size=2048):
    return tiny_batch(size, num_classes=10, input_shape=(64,))


def test_cpu_memory_statistics_are_available():
    """The measurement relies on get_memory_info working on CPU (BFC allocator);
    fail loudly if a TensorFlow release stops supporting it."""
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    big = tf.ones((1024, 1024)) + 1.0  # 4 MiB
    assert tf.config.experimental.get_memory_info("CPU:0")["peak"] - before >= 4 * 2**20
    del big


def test_backprop_peaks_higher_than_sequential_local_training():
    x, y = batch()
    bp = profiling.peak_memory_mib(deep_mlp("bp", num_blocks=1, depth=16), x, y)
    sequential = profiling.peak_memory_mib(deep_mlp("gll", num_blocks=8, depth=16), x, y, block_order="sequential")
    # bp keeps 16 layers' activations (2 MiB each) for its backward pass; sequential gll
    # keeps one block's 2 layers and their backward temporaries (measured: 0.3 of bp).
    assert sequential < 0.5 * bp, (sequential, bp)


def test_profile_model_reports_every_block_and_leaves_the_model_untouched():
    x, y = batch(64)
    model = deep_mlp("gll")
    model.compile(optimizer="sgd")
    weights = [v.numpy().copy() for v in model.weights]
    report = profiling.profile_model(model, x, y, repeats=2)
    assert [row["block"] for row in report["block_seconds"]] == [0, 1, 2, 3]
    for row in report["block_seconds"]:
        assert all(row[part] >= 0 for part in ("forward", "head", "backward", "update"))
        assert row["total"] > 0
    totals = [row["total"] for row in report["block_seconds"]]
    assert report["projected_speedup"] == pytest.approx(sum(totals) / max(totals))
    assert 1 <= report["projected_speedup"] <= 4
    assert set(report["peak_memory_mib"]) == {"together", "sequential", "pipelined"}
    assert all(np.array_equal(w, v.numpy()) for w, v in zip(weights, model.weights))
    assert int(model.blocks[0].optimizer.iterations.numpy()) == 0
    with pytest.raises(ValueError, match="Unknown block orders \\['fast'\\]"):
        profiling.profile_model(model, x, y, block_orders=["fast"])


@pytest.mark.large  # the profile command over several K
def test_profile_command_writes_json_and_plot(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    code = cli.main(
        [
            "profile",
            "--set",
            "architecture=mlp",
            "--set",
            "architecture_options={hidden_units=[64, 64]}",
            "--num-blocks",
            "1,2",
            "--batch-size",
            "16",
            "--repeats",
            "1",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "profile.json").read_text())
    assert set(result["profiles"]) == {"1", "2"}
    assert result["peak_memory_ratio_to_bp"]["2"]["sequential"] > 0
    assert (tmp_path / "profile.png").stat().st_size > 1000
    assert "projected pipelined speed-up" in capsys.readouterr().out


def test_time_balanced_cuts_are_valid_cuts_of_the_network():
    x, y = batch(64)
    cuts = profiling.time_balanced_cuts(
        "mlp", 3, x, y, repeats=1, num_classes=10, architecture_options={"hidden_units": (32, 256, 256, 32)}
    )
    assert len(cuts) == 2 and 0 < cuts[0] < cuts[1] < 4


def test_step_flops_counts_the_products_each_rule_runs():
    """Hand-counted work of a three-layer MLP (192 → 16 → 12 → 8, 5 classes, batch 4): a product
    of m×n weights on B rows costs 2·B·m·n forward, as much for its weight gradient, and as much
    again for its input gradient only where an earlier trained layer needs it."""
    batch, sizes, classes = 4, [8 * 8 * 3, 16, 12, 8], 5
    layers = list(zip(sizes[:-1], sizes[1:]))
    heads = [(width, classes) for width in sizes[1:]]

    def flops(products):
        return sum(2 * batch * m * n for m, n in products)

    def model(method, num_blocks, **options):
        return kl.build_model(
            "mlp",
            method,
            num_blocks=num_blocks,
            input_shape=(8, 8, 3),
            num_classes=classes,
            head="linear",
            architecture_options={"hidden_units": sizes[1:]},
            **options,
        )

    # bp: forward and weight gradients of every product, input gradients of all but the first layer.
    bp = flops(layers + heads[-1:]) * 2 + flops(layers[1:] + heads[-1:])
    assert profiling.step_flops(model("bp", 1), batch) == bp
    # gll, one layer a block: each block's input gradient is cut, its head's is needed.
    gll = flops(layers + heads) * 2 + flops(heads)
    assert profiling.step_flops(model("gll", 3), batch) == gll
    # backlink l = 1: blocks 1 and 2 send their input's error back (one more input gradient each);
    # the tail (the whole block) learns from the mixed error with its one weight gradient.
    backlink = model("backlink", 3, alpha=0.5, propagation_length=1)
    assert profiling.step_flops(backlink, batch) == gll + flops(layers[1:])

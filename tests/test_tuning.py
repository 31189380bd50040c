"""keras-tuner searches: the declared space, the three tuners, the split probe and `keras-local tune`."""

import json
import tomllib

import keras
import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

import keras_local as kl
from keras_local import cli, tuning
from keras_local.builder import build_model
from keras_local.config import load_config
from keras_local.methods import method_option_names
from keras_local.splitting import block_sizes, validate_cuts

pytestmark = pytest.mark.large  # keras-tuner searches of several trials

TINY = {
    "architecture": "mlp",
    "input_shape": (6,),
    "num_classes": 3,
    "architecture_options": {"hidden_units": (8, 8, 8, 8)},
}


def tiny_data(examples=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(examples, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def sampled_trials(hypermodel, count, oracle_class=kt.oracles.RandomSearchOracle, directory=None):
    """`count` trials' values from a keras-tuner oracle over the hypermodel's space."""
    space = kt.HyperParameters()
    hypermodel.declare(space)
    oracle = oracle_class(objective=kt.Objective("val_accuracy", "max"), max_trials=count, seed=1)
    oracle._set_project_dir(str(directory), "space")
    oracle.update_space(space)
    trials = []
    for index in range(count):
        trial = oracle.create_trial(f"tuner{index}")
        if trial.status != "RUNNING":
            break
        trials.append(trial.hyperparameters)
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.0})
        oracle.end_trial(trial)
    return trials


def test_cut_candidates_are_valid_increasing_and_start_with_the_even_split():
    everything = tuning.cut_candidates(5, 3, limit=100)
    assert everything == ["1,2", "1,3", "1,4", "2,3", "2,4", "3,4"]  # all C(4, 2) splits
    assert tuning.cut_candidates(5, 3, limit=100, minimum_length=2) == ["2,4"]
    sampled = tuning.cut_candidates(56, 4, limit=6, costs=list(range(56, 0, -1)))
    assert len(sampled) == 6 and sampled[0] == "14,28,42" and len(set(sampled)) == 6
    for text in sampled:
        cuts = validate_cuts(text, 56)
        assert len(cuts) == 3 and cuts == sorted(set(cuts))
    assert tuning.cut_candidates(4, 3, limit=10, minimum_length=2) == []  # 2 + 2 + at least 1 > 4


def test_search_space_never_yields_an_invalid_split_or_a_too_long_propagation_length(tmp_path):
    hypermodel = tuning.LocalHyperModel(
        "resnet20",
        method=["gll", "backlink", "bwbpf", "bp"],
        num_blocks=[2, 3, 4, 8],
        propagation_length=[1, 2, 3],
        max_cut_candidates=12,
    )
    seen = set()
    for values in sampled_trials(hypermodel, 80, directory=tmp_path):
        config = hypermodel.config_from(values)
        method, k = config["method"], config["num_blocks"]
        cuts = config.get("cuts")
        if method == "bp":
            assert k == 1 and cuts is None
            continue
        sizes = block_sizes(hypermodel.num_units, validate_cuts(cuts, hypermodel.num_units))
        assert len(sizes) == k
        if method == "backlink":
            length = config["method_options"]["propagation_length"]
            assert 1 <= length <= min(sizes[:-1])
            seen.add((k, length))
        # The builder's own validation accepts it (it raises on an invalid split or l).
        build_model("resnet20", method, cuts=cuts, head=config.get("head"), build=False, **config["method_options"])
    assert any(length == 3 for _, length in seen)  # long links where the split allows them ...
    assert not any(k == 8 and length > 1 for k, length in seen)  # ... and never where it cannot (10 units, K = 8)


def test_hyperparameter_names_keep_their_values_through_keras_tuner(tmp_path):
    # keras-tuner drops a value whose name an inactive hyperparameter shares; the
    # space uses one name per condition, so every active value survives a trial.
    hypermodel = tuning.LocalHyperModel("resnet20", method=["gll", "backlink"], num_blocks=[2, 4])
    for values in sampled_trials(hypermodel, 20, kt.oracles.BayesianOptimizationOracle, tmp_path):
        config = hypermodel.config_from(values)
        assert {"num_blocks", "cuts", "head"} <= set(config)
        if config["method"] == "backlink":
            assert set(config["method_options"]) == {"alpha", "propagation_length"}


@pytest.mark.parametrize(
    "tuner_class",
    [kt.RandomSearch, pytest.param(kt.Hyperband, marks=pytest.mark.slow), kt.BayesianOptimization],  # CI time
)
def test_one_trial_with_each_tuner_on_a_per_block_objective(tuner_class, tmp_path):
    hypermodel = tuning.LocalHyperModel(
        method=["gll", "backlink"], num_blocks=[2, 3], head=["linear"], propagation_length=[1], **TINY
    )
    limits = {"max_epochs": 2, "hyperband_iterations": 1} if tuner_class is kt.Hyperband else {"max_trials": 1}
    tuner = tuner_class(
        hypermodel,
        objective=tuning.objective("val_acc_0"),
        directory=str(tmp_path),
        project_name="search",
        seed=0,
        **limits,
    )
    tuner.search(tiny_data(), validation_data=tiny_data(seed=1), epochs=2, verbose=0)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.status == "COMPLETED" and 0.0 <= best.score <= 1.0
    # The score is the first block head's validation accuracy, as logged by the model.
    model = tuner.get_best_models(1)[0]
    assert model.evaluate(tiny_data(seed=1), return_dict=True, verbose=0)["acc_0"] == pytest.approx(best.score)


def test_objective_direction_and_space_validation():
    assert tuning.objective("val_acc_3").direction == "max"
    assert tuning.objective("val_loss_1").direction == "min"
    with pytest.raises(ValueError, match="direction must be 'max' or 'min', got 'up'"):
        tuning.objective("val_accuracy", "up")
    with pytest.raises(ValueError, match="Unknown method 'magic'"):
        tuning.LocalHyperModel(method=["gll", "magic"], **TINY)
    with pytest.raises(ValueError, match="alpha has an empty list of choices"):
        tuning.LocalHyperModel(alpha=[], **TINY)
    with pytest.raises(ValueError, match="a range needs 'min' <= 'max'"):
        tuning.LocalHyperModel(learning_rate={"min": 0.1, "max": 0.01}, **TINY)
    with pytest.raises(ValueError, match=r"num_blocks=\[2, 9\] has 9: each K must be an integer in 1..4"):
        tuning.LocalHyperModel(num_blocks=[2, 9], **TINY)
    with pytest.raises(ValueError, match="No split of mlp with num_blocks=\\[4\\] admits propagation_length=\\[2\\]"):
        tuning.LocalHyperModel(method="backlink", num_blocks=[4], propagation_length=[2], **TINY)
    with pytest.raises(ValueError, match="cuts candidate '1' does not make 3 blocks"):
        tuning.LocalHyperModel(num_blocks=[3], cuts={3: ["1"]}, **TINY)


def test_build_seeds_and_compiles_the_trial_configuration():
    hypermodel = tuning.LocalHyperModel(
        method="backlink",
        num_blocks=[3],
        alpha=[0.25],
        propagation_length=[1],
        cuts={3: ["1,3"]},
        learning_rate=0.03,
        head="linear",
        **TINY,
    )
    hp = kt.HyperParameters()
    first, second = hypermodel.build(hp), hypermodel.build(hp)
    assert [len(block.units) for block in first.blocks] == [1, 2, 1]
    assert first.method.alpha == 0.25 and first.method.propagation_length == 1
    assert float(first.blocks[0].optimizer.learning_rate) == pytest.approx(0.03)
    for a, b in zip(first.trainable_variables, second.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same initial weights in every trial


def test_with_training_data_every_trial_sees_the_same_batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0)

    def make():
        return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(48, seed=0).batch(16)

    shared = make()

    def trial(hypermodel):
        hp = kt.HyperParameters()
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, shared, epochs=1, verbose=0)
        return model.get_weights()

    space = {"method": "gll", "num_blocks": [2], "head": "linear", "cuts": "even", "learning_rate": 0.1}
    plain = tuning.LocalHyperModel(**space, **TINY)
    first, second = trial(plain), trial(plain)
    assert not all(np.allclose(a, b) for a, b in zip(first, second))  # the shared dataset reshuffled
    fresh = tuning.LocalHyperModel(**space, training_data=make, **TINY)
    first, second = trial(fresh), trial(fresh)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_score_splits_ranks_by_the_probe_it_documents():
    train, validation = tiny_data(), tiny_data(seed=1)
    options = {"input_shape": (6,), "num_classes": 3}
    ranked = tuning.score_splits(
        "mlp", 2, train, validation, candidates=["1", "3"], probe_steps=4, learning_rate=0.1, **options
    )
    assert [row["score"] for row in ranked] == sorted((row["score"] for row in ranked), reverse=True)
    for row in ranked:  # each score is what the same probe, written out, measures
        keras.utils.set_random_seed(0)
        model = build_model("mlp", "gll", cuts=row["cuts"], head="linear", weight_decay=5e-4, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
        model.fit(train.repeat(), steps_per_epoch=4, epochs=1, verbose=0)
        results = model.evaluate(validation, return_dict=True, verbose=0)
        assert row["score"] == pytest.approx(float(results["accuracy"]))
        assert row["mean_block_loss"] == pytest.approx((results["loss_0"] + results["loss_1"]) / 2)
    with pytest.raises(ValueError, match="probe_steps must be a positive integer, got 0"):
        tuning.score_splits("mlp", 2, train, validation, probe_steps=0, **options)


def test_tune_writes_results_and_a_best_recipe_that_trains(tmp_path, capsys):
    recipe = tmp_path / "search.toml"
    recipe.write_text(
        'architecture = "resnet20"\nmethod = "backlink"\nnum_blocks = 2\nepochs = 1\n'
        "train_examples = 64\nbatch_size = 32\neval_batch_size = 64\nverbose = 0\n"
        "\n"
        '[search]\nalpha = [0.0, 1.0]\npropagation_length = [1, 2]\nhead = "linear"\n'
        'learning_rate = {min = 0.01, max = 0.1, sampling = "log"}\nmax_cut_candidates = 2\n'
    )
    output = tmp_path / "tune"
    argv = [
        "tune",
        "--config",
        str(recipe),
        "--max-trials",
        "2",
        "--validation-examples",
        "64",
        "--output-dir",
        str(output),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "best: trial" in printed and "best.toml" in printed
    result = json.loads((output / "trials.json").read_text())
    assert len(result["trials"]) == 2 and result["objective"] == {"name": "val_accuracy", "direction": "max"}
    assert (output / "trials.png").exists() and (output / "tuner" / "oracle.json").exists()
    best = tomllib.loads((output / "best.toml").read_text())
    assert "search" not in best and best["method"] == "backlink" and best["head"] == "linear"
    assert best["method_options"] == result["best"]["config"]["method_options"]
    assert best["method_options"]["alpha"] in (0.0, 1.0) and best["method_options"]["propagation_length"] in (1, 2)
    assert best["learning_rate"] == result["best"]["config"]["learning_rate"]
    # The written recipe is a config `keras-local train` accepts, and it trains.
    config = load_config(output / "best.toml", [], method_option_names())
    assert config["cuts"] == result["best"]["config"]["cuts"]
    assert cli.main(["train", "--config", str(output / "best.toml"), "--run-dir", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["method"] == "backlink"
    # A re-run resumes: keras-tuner finds the finished trials and runs none again.
    assert cli.main(argv) == 0
    assert len(json.loads((output / "trials.json").read_text())["trials"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "--tuner", "grid-ish"], "Unknown tuner 'grid-ish'. Allowed: random, hyperband, bayesian, grid"),
        (["tune", "--max-trials", "0"], "max_trials must be a positive integer, got 0"),
        (["tune", "--set", "search={width = [1]}"], "Unknown [search] key(s) ['width']"),
        (["tune", "--validation-examples", "5000"], "validation_examples must be in 1..1999"),
    ],
)
def test_tune_bad_input_prints_one_line_and_exits_2(argv, message, tmp_path, capsys):
    assert cli.main(argv + ["--output-dir", str(tmp_path / "tune")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "tune").exists()


def test_package_exports_tuning():
    assert kl.tuning.LocalHyperModel is tuning.LocalHyperModel


def test_a_search_of_a_users_functional_model(tmp_path):
    """The method, K, the cuts among the model's cut points, α and l and the head are searched on a user's
    model; each trial trains a fresh copy, so the model given stays as it was."""
    from own_models import residual_model

    user = residual_model()
    before = user.get_weights()
    hypermodel = tuning.LocalHyperModel(
        user, method=["gll", "backlink"], num_blocks=[2, 3], head=["linear", "conv"], propagation_length=[1]
    )
    assert (hypermodel.input_shape, hypermodel.num_classes) == ((8, 8, 3), 5)  # the model's own
    assert hypermodel.num_units == kl.cut_points(user).index("pool")  # units end at the cut points before it
    tuner = kt.RandomSearch(
        hypermodel, objective=tuning.objective("val_accuracy"), max_trials=2, directory=str(tmp_path), seed=0
    )
    data = tf.data.Dataset.from_tensor_slices(
        (np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype("float32"), np.arange(32) % 5)
    ).batch(16)
    tuner.search(data, validation_data=data, epochs=1, verbose=0)
    trials = tuner.oracle.get_best_trials(2)
    assert [trial.status for trial in trials] == ["COMPLETED"] * 2
    assert len({str(sorted(trial.hyperparameters.values.items())) for trial in trials}) == 2
    for trial in trials:
        config = hypermodel.config_from(trial.hyperparameters)
        assert config["architecture"] == "residual" and set(config.get("cuts", [])) <= set(kl.cut_points(user))
    for a, b in zip(before, user.get_weights()):
        np.testing.assert_array_equal(a, b)
    # A function that builds the model: named in the config so that `keras-local train` can build it again.
    assert tuning.LocalHyperModel(residual_model, num_blocks=[2]).source.config_name() == "own_models:residual_model"
    ranked = tuning.score_splits(residual_model, 2, data, data, probe_steps=1, limit=2)
    assert len(ranked) == 2 and all(0.0 <= row["score"] <= 1.0 for row in ranked)

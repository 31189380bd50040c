"""keras-tuner searches of method, K, cut points, head, α, l and learning rate.

`LocalHyperModel` is a `keras_tuner.HyperModel` whose search space is
declared by its arguments, each one either a fixed value, a list of choices,
or a range `{"min": ..., "max": ..., "sampling": "log"}` (the same shapes a
TOML `[search]` table holds). The model is built and compiled inside
`build(hp)`, as Hyperband needs, with the random seed set first so that a
trial is reproducible.

How the space is laid out, so that no trial is invalid:

- `num_blocks` is searched under each method, and for every K the cut points
  are a choice `cuts_k{K}` among strings like `"3,6,8"` (`hp.Choice` takes no
  tuples): all strictly increasing cuts when there are at most
  `max_cut_candidates`, else the even split, the memory-balanced split and
  seeded random ones. Candidates can also be given (e.g. the best of
  `score_splits`).
- a method's own searched options (`Method.search.options`: BackLink's
  `alpha` and `propagation_length`) exist only under that method; a tail
  option (`Method.search.tail_option`, BackLink's `propagation_length`) is
  a choice among the declared values no longer than the shortest block the
  chosen split links into (a trial never sees a split that admits none).
- `head` is searched for methods with auxiliary heads (not `bp`).

`keras_local.search` runs a run configuration's `[search]` table with this
hypermodel (`keras-local tune`).

Example:

```python
import keras_tuner as kt
hypermodel = kl.tuning.LocalHyperModel("resnet8", method=["backlink"], num_blocks=[2],
                                       alpha=[0.0, 0.25, 0.5, 0.75, 1.0], propagation_length=[1, 2])
tuner = kt.RandomSearch(hypermodel, objective=kl.tuning.objective("val_accuracy"), max_trials=2,
                        directory="runs/tune", project_name="backlink")
train = kl.data.load_dataset("cifar10_sample", "train", batch_size=128, training=True, num_examples=512)
validation = kl.data.load_dataset("cifar10_sample", "test", batch_size=500, num_examples=500)
tuner.search(train, validation_data=validation, epochs=1)   # more trials and epochs for a real search
hypermodel.config_from(tuner.get_best_hyperparameters()[0])  # keys for a recipe
```
"""

import itertools
import math
import random

import keras
import keras_tuner as kt

from keras_local.architectures import get_architecture
from keras_local.builder import activation_sizes, build_model
from keras_local.methods import METHODS, get_method
from keras_local.optimizers import named_optimizer
from keras_local.own_model import is_model_spec, load_model_spec, prepare_model
from keras_local.splitting import balanced_cuts, block_sizes, even_cuts, validate_cuts
from keras_local.validation import check_number

DEFAULT_SPACE = {
    "method": ["gll", "backlink"],
    "num_blocks": [2, 4],
    "head": ["linear", "conv"],
    "learning_rate": {"min": 0.01, "max": 0.2, "sampling": "log"},
}


class Architecture:
    """What a search builds a fresh network from, each trial: a keras_local
    network's name; or a user's model (`keras_local.own_model`) given as a
    model (each trial trains a copy, `keras.models.clone_model`, from the
    trial's seed; the model itself is left untouched), a function that
    returns one (called each trial with the `architecture_options`), or a
    `"keras.applications.NAME"` / `"module:function"` string. `units` are
    its units and `input_shape` / `num_classes` the resolved ones."""

    def __init__(self, architecture, input_shape, num_classes, options):
        self.given, self.options = architecture, dict(options or {})
        if isinstance(architecture, str) and not is_model_spec(architecture):
            self.own, self.input_shape = None, tuple(input_shape or (32, 32, 3))
            self.units = get_architecture(architecture, input_shape=self.input_shape, **self.options)
            self.num_classes, self.name = num_classes or 10, architecture
            return
        if not (isinstance(architecture, (str, keras.Model)) or callable(architecture)):
            raise ValueError(
                f"architecture must be a keras_local network's name, a keras.Model, a function that returns "
                f"one, or a model spec string; got {type(architecture).__name__}: {architecture!r}."
            )
        made = self.make()
        self.own = prepare_model(
            made
            if not isinstance(made, str)
            else load_model_spec(made, input_shape or (32, 32, 3), num_classes or 10, self.options),
            None if input_shape is None else tuple(input_shape),
            num_classes,
        )
        self.units, self.input_shape, self.name = self.own.units, tuple(self.own.input_shape), self.own.name
        self.num_classes = num_classes or self.own.num_classes or 10

    def make(self):
        """A fresh network for `build_model`: the name or spec, a new copy of the model, or the function's."""
        if isinstance(self.given, str):
            return self.given
        if isinstance(self.given, keras.Model):
            return keras.models.clone_model(self.given)
        return self.given(**self.options)

    def build_options(self):
        """`architecture_options` for `build_model` (a model is already built with them)."""
        return self.options if isinstance(self.given, str) else None

    def cut_names(self, cuts):
        """`cuts` (unit indices) as the config writes them: layer names for a user's model."""
        if self.own is None:
            return cuts
        return [self.own.unit_ends[index - 1] for index in cuts]

    def config_name(self):
        """How a config names the network: the name or spec, a function as `"module:function"`, else the
        model's name (which a config cannot build)."""
        if isinstance(self.given, str):
            return self.given
        if callable(self.given) and not isinstance(self.given, keras.Model) and "<" not in self.given.__qualname__:
            return f"{self.given.__module__}:{self.given.__qualname__}"
        return self.name


def searched_options():
    """`{option: default choices}` of every method option a search may vary (`Method.search.options`)."""
    return {name: value for method in METHODS.values() for name, value in method.search.options.items()}


RANGE_KEYS = ("min", "max", "sampling", "step")


def objective(name, direction=None):
    """A `kt.Objective` for a LocalModel log name (`val_accuracy`, `val_acc_2`,
    `val_loss_1`, ...): accuracies are maximised, losses minimised unless
    `direction` says otherwise."""
    if direction is None:
        direction = "max" if "acc" in name else "min"
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}.")
    return kt.Objective(name, direction)


def cut_candidates(num_units, num_blocks, limit=8, minimum_length=1, costs=None, seed=0):
    """Up to `limit` valid cut strings for K = `num_blocks` over `num_units`.

    Every candidate is strictly increasing, and every block but the last has
    at least `minimum_length` units (the blocks a backward link reaches
    into). All such splits when there are at most `limit`; otherwise the even
    split, the balanced one (when `costs` are given) and seeded random ones.
    Returns [] when no split of that K meets `minimum_length`.
    """
    if num_blocks == 1:
        return [""]
    positions = range(1, num_units)

    def valid(cuts):
        return min(block_sizes(num_units, cuts)[:-1]) >= minimum_length

    total = math.comb(num_units - 1, num_blocks - 1)
    if total <= limit:
        chosen = [list(cuts) for cuts in itertools.combinations(positions, num_blocks - 1) if valid(cuts)]
    else:
        chosen, rng = [], random.Random(seed)
        preferred = [even_cuts(num_units, num_blocks)]
        if costs is not None:
            preferred.append(balanced_cuts(costs, num_blocks))
        for cuts in preferred:
            if valid(cuts) and cuts not in chosen:
                chosen.append(cuts)
        for _ in range(50 * limit):
            if len(chosen) >= limit:
                break
            cuts = sorted(rng.sample(positions, num_blocks - 1))
            if valid(cuts) and cuts not in chosen:
                chosen.append(cuts)
    return [",".join(str(c) for c in validate_cuts(cuts, num_units)) for cuts in chosen[:limit]]


class LocalHyperModel(kt.HyperModel):
    """A `keras_tuner.HyperModel` over local-training configurations.

    Args:
        architecture: a name from `list_architectures()`, or a user's model
            (`Architecture`: a `keras.Model`, each trial training a fresh
            copy; a function returning one; a model spec string). Cuts are
            then searched among its cut points (`kl.cut_points`).
        input_shape: the shape of one example (default: a user's model's
            own; (32, 32, 3) for keras_local's networks).
        num_classes: the number of classes (default: a user's model's
            classifier's; 10).
        method: the search space's methods. This and the next three, and
            as keywords the options methods let a search vary
            (`searched_options()`, e.g. BackLink's `alpha` and
            `propagation_length`), are each a value (fixed), a list
            (choices) or a range dict `{"min", "max", "sampling"}`
            (`DEFAULT_SPACE` and the methods' `search.options` hold the
            defaults).
        num_blocks: the numbers of blocks K.
        head: the heads; `head="default"`: each method's own head.
        learning_rate: the learning rates.
        cuts: candidate cut strings per K, e.g. `{4: ["3,6,8", "2,5,8"]}`
            (default: generated by `cut_candidates`); `"even"` for the even
            split only.
        max_cut_candidates: candidates per K when they are generated.
        optimizer: `"sgd"` or `"adam"`, at the trial's constant learning
            rate (fixed).
        momentum: SGD's momentum (fixed).
        nesterov: whether SGD uses Nesterov momentum (fixed).
        weight_decay: the weight decay (fixed).
        method_options: fixed options of the methods, e.g. `{"beta": 0.9}`
            for predsim (only the options a method accepts are passed).
        architecture_options: fixed options of the architecture.
        seed: set with `keras.utils.set_random_seed` at the top of every
            `build`, and the seed of the generated cut candidates.
        training_data: a function returning the training dataset, called in
            every trial's `fit` in place of the dataset given to `search`.
            A seeded `tf.data` shuffle (or augmentation) draws a new order
            each time a dataset is iterated again, so without it trial t
            sees other batches than trial 0 and the scores differ by that
            noise too; with it every trial sees the same batches.
    """

    def __init__(
        self,
        architecture="resnet20",
        input_shape=None,
        num_classes=None,
        *,
        method=None,
        num_blocks=None,
        head=None,
        learning_rate=None,
        cuts=None,
        max_cut_candidates=8,
        optimizer="sgd",
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        method_options=None,
        architecture_options=None,
        seed=0,
        training_data=None,
        name=None,
        tunable=True,
        **method_space,
    ):
        super().__init__(name=name, tunable=tunable)
        if training_data is not None and not callable(training_data):
            raise ValueError(f"training_data must be a function returning a dataset, got {training_data!r}.")
        self.training_data = training_data
        defaults = {**DEFAULT_SPACE, **searched_options()}
        unknown = sorted(set(method_space) - set(defaults))
        if unknown:
            raise ValueError(f"Unknown search key(s) {unknown}. Allowed: {', '.join(defaults)}.")
        given = {
            "method": method,
            "num_blocks": num_blocks,
            "head": head,
            "learning_rate": learning_rate,
            **method_space,
        }
        self.space = {key: defaults[key] if given.get(key) is None else given[key] for key in defaults}
        for key, value in self.space.items():
            _check_entry(key, value)
        for method_name in _values(self.space["method"]):
            METHODS.get(method_name)  # unknown names fail here, quoting the allowed ones
        self.source = Architecture(architecture, input_shape, num_classes, architecture_options)
        self.architecture, self.input_shape, self.num_classes = (
            architecture,
            self.source.input_shape,
            self.source.num_classes,
        )
        self.architecture_options = dict(architecture_options or {})
        self.method_options = dict(method_options or {})
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
        self.optimizer, self.momentum, self.nesterov = optimizer, momentum, nesterov
        self.weight_decay, self.seed = weight_decay, seed
        units = self.source.units
        self.num_units = len(units)
        ks = _values(self.space["num_blocks"])
        wrong = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_units]
        if wrong:
            raise ValueError(
                f"num_blocks={self.space['num_blocks']!r} has {wrong[0]!r}: each K must be an integer "
                f"in 1..{self.num_units}, the number of units of {self.source.name}."
            )
        self.candidates = self._cut_candidates(cuts, ks, max_cut_candidates, activation_sizes(units, self.input_shape))
        for method_name in _values(self.space["method"]):
            self._ks(method_name)  # every method has at least one valid K, split and l

    def _cut_candidates(self, cuts, ks, limit, costs):
        if cuts == "even":
            return {k: [",".join(map(str, even_cuts(self.num_units, k)))] for k in ks}
        if cuts is not None:
            candidates = {int(k): list(v) for k, v in cuts.items()}
            for k in ks:
                if not candidates.get(k):
                    raise ValueError(f"cuts has no candidates for num_blocks={k}; it has K = {sorted(candidates)}.")
                for text in candidates[k]:
                    if len(validate_cuts(text, self.num_units)) != k - 1:
                        raise ValueError(f"cuts candidate {text!r} does not make {k} blocks.")
            return candidates
        return {k: cut_candidates(self.num_units, k, limit, costs=costs, seed=self.seed) for k in ks}

    # -- the search space ----------------------------------------------------

    def declare(self, hp):
        """Declares the space on `hp`; returns the trial's values as
        `build_model` keywords (plus `learning_rate`).

        Names: `method`, `learning_rate`, then under each method `m`:
        `m/num_blocks`, `m/head`, `m/k{K}/cuts`; for a method with
        searched options (`Method.search.options`) `m/<option>`, and with a
        tail option (`Method.search.tail_option`, e.g. BackLink's
        `propagation_length`) `m/k{K}/<option>` and `m/k{K}/l{value}/cuts`
        (keras-tuner 1.4.8 needs one name per condition:
        `ensure_active_values` drops a value whose name any inactive
        hyperparameter shares).
        """
        method = _declare(hp, "method", self.space["method"])
        chosen = {"method": method, "learning_rate": _declare(hp, "learning_rate", self.space["learning_rate"])}
        for name in _values(self.space["method"]):
            with hp.conditional_scope("method", [name]):
                values = self._declare_method(hp, name)
            if name == method:
                chosen.update(values)
        return chosen

    def _declare_method(self, hp, method):
        """The hyperparameters under one method (declared for every method,
        so that the oracle knows the whole space)."""
        ks = self._ks(method)
        method_class = METHODS.get(method)
        chosen = {"num_blocks": _declare(hp, f"{method}/num_blocks", ks)}
        if method_class.aux_heads and self.space["head"] != "default":
            chosen["head"] = _declare(hp, f"{method}/head", self.space["head"])
        tail = method_class.search.tail_option
        for option in method_class.search.options:
            if option != tail:
                chosen[option] = _declare(hp, f"{method}/{option}", self.space[option])
        for k in ks:
            with hp.conditional_scope(f"{method}/num_blocks", [k]):
                if tail is None:
                    cuts = _declare(hp, f"{method}/k{k}/cuts", self._candidates(k))
                    if k == chosen["num_blocks"]:
                        chosen["cuts"] = cuts
                    continue
                lengths = self._lengths(k, tail)
                length = _declare(hp, f"{method}/k{k}/{tail}", lengths)
                for each in lengths:
                    with hp.conditional_scope(f"{method}/k{k}/{tail}", [each]):
                        cuts = _declare(hp, f"{method}/k{k}/l{each}/cuts", self._candidates(k, each))
                    if k == chosen["num_blocks"] and each == length:
                        chosen["cuts"], chosen[tail] = cuts, each
        return chosen

    def _ks(self, method):
        method_class = METHODS.get(method)
        ks = method_class.search.num_blocks(_values(self.space["num_blocks"]))
        tail = method_class.search.tail_option
        if tail is not None:
            ks = [k for k in ks if k > 1 and self._lengths(k, tail)]
            if not ks:
                raise ValueError(
                    f"No split of {self.source.name} with num_blocks={self.space['num_blocks']!r} admits "
                    f"{tail}={self.space[tail]!r}: {method} needs K >= 2 and every block but the last at "
                    f"least that many units long."
                )
        return ks

    def _lengths(self, k, tail):
        """The declared tail lengths that at least one candidate split of K admits."""
        return [length for length in _values(self.space[tail]) if self._candidates(k, length)]

    def _candidates(self, k, tail_length=0):
        """Cut strings of K whose blocks but the last are at least `tail_length` units long."""
        return [text for text in self.candidates.get(k, [""]) if tail_length <= self._shortest_linked(text)]

    def _shortest_linked(self, text):
        sizes = block_sizes(self.num_units, validate_cuts(text, self.num_units))
        return min(sizes[:-1]) if len(sizes) > 1 else 0

    # -- keras_tuner.HyperModel ----------------------------------------------

    def build(self, hp):
        keras.utils.set_random_seed(self.seed)
        chosen = self.declare(hp)
        learning_rate = chosen.pop("learning_rate")
        method = chosen["method"]
        options = self._options(method, chosen)
        model = build_model(
            self.source.make(),
            method,
            num_blocks=chosen["num_blocks"],
            cuts=chosen["cuts"] or None,
            head=chosen.get("head"),
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            weight_decay=self.weight_decay,
            architecture_options=self.source.build_options(),
            **options,
        )
        model.compile(optimizer=named_optimizer(self.optimizer, learning_rate, self.momentum, self.nesterov))
        return model

    def fit(self, hp, model, *args, **kwargs):
        if self.training_data is not None:
            keras.utils.set_random_seed(self.seed)  # the same shuffle and augmentation draws in every trial
            if args:
                args = (self.training_data(), *args[1:])
            else:
                kwargs["x"] = self.training_data()
        return model.fit(*args, **kwargs)

    def _options(self, method, chosen):
        accepted = set(METHODS.get(method).options)
        options = {key: value for key, value in self.method_options.items() if key in accepted}
        options.update({key: chosen[key] for key in searched_options() if key in chosen})
        get_method(method, **options)  # validated before any weight exists
        return options

    def config_from(self, hp):
        """The config keys (`keras_local.config`) of a trial's values, for a
        TOML recipe that `keras-local train --config` accepts."""
        chosen = self.declare(hp.copy())
        method = chosen["method"]
        config = {
            "architecture": self.source.config_name(),
            "method": method,
            "num_blocks": chosen["num_blocks"],
            "learning_rate": float(chosen["learning_rate"]),
            "optimizer": self.optimizer,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "method_options": self._options(method, chosen),
            "architecture_options": dict(self.architecture_options),
        }
        if chosen["cuts"]:
            config["cuts"] = self.source.cut_names(validate_cuts(chosen["cuts"], self.num_units))
        if chosen.get("head") is not None:
            config["head"] = chosen["head"]
        return config


def score_splits(
    architecture,
    num_blocks,
    train,
    validation,
    *,
    candidates=None,
    probe_steps=50,
    method="gll",
    head="linear",
    learning_rate=0.05,
    input_shape=None,
    num_classes=None,
    limit=16,
    weight_decay=5e-4,
    seed=0,
):
    """Ranks cut points by a short local-training probe (SEDONA-like).

    The rule: every candidate split (default: `cut_candidates(..., limit)`)
    trains the same network from the same initial weights with `method`
    (greedy local learning by default) for `probe_steps` steps on the same
    batches of `train`, then is scored by the validation accuracy of the
    network's output, ties broken by the lower mean validation loss of the
    block heads. A split that starves the later blocks of capacity, or
    leaves the early blocks too shallow to learn linearly separable features,
    already shows it after a few hundred steps. Cost: candidates ×
    `probe_steps` steps, against trials × epochs × steps of a full search.

    `train` may be a function returning the dataset: it is called for every
    candidate, so that all see the same batches (see `LocalHyperModel`'s
    `training_data`). Returns a list of `{"cuts", "score",
    "mean_block_loss", "block_accuracies"}`, best first.

    Example:

    ```python
    ranked = kl.tuning.score_splits("resnet8", 2, train, validation, probe_steps=2)   # 100 to rank well
    hypermodel = kl.tuning.LocalHyperModel("resnet8", num_blocks=[2],
                                           cuts={2: [row["cuts"] for row in ranked[:3]]})
    ```
    """
    source = Architecture(architecture, input_shape, num_classes, None)
    units, input_shape, num_classes = source.units, source.input_shape, source.num_classes
    if candidates is None:
        candidates = cut_candidates(
            len(units), num_blocks, limit, costs=activation_sizes(units, input_shape), seed=seed
        )
    check_number("probe_steps", probe_steps, 1, integer=True)
    rows = []
    for text in candidates:
        keras.utils.set_random_seed(seed)
        model = build_model(
            source.make(),
            method,
            cuts=text or None,
            head=head,
            input_shape=input_shape,
            num_classes=num_classes,
            weight_decay=weight_decay,
        )
        model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True))
        batches = train() if callable(train) else train
        model.fit(batches.repeat(), steps_per_epoch=probe_steps, epochs=1, verbose=0)
        results = model.evaluate(validation, return_dict=True, verbose=0)
        losses = [float(v) for k, v in results.items() if k.startswith("loss_")]
        rows.append(
            {
                "cuts": text,
                "score": float(results["accuracy"]),
                "mean_block_loss": sum(losses) / len(losses) if losses else float(results["loss"]),
                "block_accuracies": {k: float(v) for k, v in results.items() if k.startswith("acc_")},
            }
        )
    return sorted(rows, key=lambda row: (-row["score"], row["mean_block_loss"]))


# -- declared values -----------------------------------------------------------


def _check_entry(key, value):
    if isinstance(value, dict):
        unknown = set(value) - set(RANGE_KEYS)
        if unknown or "min" not in value or "max" not in value or value["min"] > value["max"]:
            raise ValueError(
                f"{key}={value!r}: a range needs 'min' <= 'max' (and optionally "
                f"'sampling', 'step'), got keys {sorted(value)}."
            )
        if key in ("method", "head"):
            raise ValueError(f"{key} takes a name or a list of names, not a range: {value!r}.")
    elif isinstance(value, (list, tuple)) and not value:
        raise ValueError(f"{key} has an empty list of choices.")


def _values(entry):
    """The values an entry can take (ranges: the integers in them, for K)."""
    if isinstance(entry, dict):
        return list(range(int(entry["min"]), int(entry["max"]) + 1))
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def _declare(hp, name, entry):
    if isinstance(entry, dict):
        kind = hp.Int if all(isinstance(entry[k], int) for k in ("min", "max")) else hp.Float
        sampling = entry.get("sampling", "linear")
        return kind(name, entry["min"], entry["max"], step=entry.get("step"), sampling=sampling)
    if isinstance(entry, (list, tuple)):
        return hp.Choice(name, list(entry)) if len(entry) > 1 else hp.Fixed(name, entry[0])
    return hp.Fixed(name, entry)

"""Each method's reference training recipe, as data: what its authors trained it with.

A `Recipe` holds run-configuration keys (`keras_local.config`): optimizer,
learning rate and its schedule, weight decay and where it applies, batch,
epochs, head, split and method options, with the line of the paper or
reference code each comes from. Every `Method` returns its own from
`reference_recipe(architecture)`; `keras-local train --recipe reference`
applies it (a config file and `--set` still win over it), and
`build_model(..., recipe="reference")` takes its model keys (head, split,
weight decay, method options).

Example:

```python
recipe = kl.get_method("predsim").reference_recipe("vgg8b")
recipe.settings["optimizer"], recipe.settings["learning_rate"]   # ("adam", 0.0005)
print(recipe.source)
recipe.for_dataset("cifar100").settings["weight_decay"]
```
"""

import dataclasses
import warnings

RECIPES = ("shared", "reference")

# The keys of a recipe that shape the model (the rest shape the optimisation).
MODEL_KEYS = ("head", "split", "weight_decay", "weight_decay_scope", "method_options")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A method's training recipe: `settings` (config keys), `source` (where
    each comes from: paper section or reference-code file) and
    `dataset_settings`, the keys that differ on a dataset (`for_dataset`)."""

    settings: dict
    source: str
    dataset_settings: dict = dataclasses.field(default_factory=dict)

    def for_dataset(self, dataset):
        """The recipe on `dataset` (its `dataset_settings` over `settings`)."""
        return dataclasses.replace(
            self, settings={**self.settings, **self.dataset_settings.get(dataset, {})}, dataset_settings={}
        )

    def model_settings(self):
        """The keys `build_model` takes (head, split, weight decay, method options)."""
        return {key: value for key, value in self.settings.items() if key in MODEL_KEYS}


def piecewise(boundaries, factor):
    """`lr_boundaries` / `lr_multipliers` for a learning rate multiplied by
    `factor` at each boundary (fractions of training)."""
    return {
        "lr_schedule": "piecewise",
        "lr_boundaries": list(boundaries),
        "lr_multipliers": [round(factor**index, 12) for index in range(len(boundaries) + 1)],
    }


# The architecture a method's reference recipe is asked for on a user's own model: no network of the papers,
# so each method's settings for networks it does not name (its generic recipe).
OWN_MODEL = "own model"


def recipe_architecture(method, architecture, name):
    """The architecture name to look `method`'s reference recipe up with:
    `architecture` where it is one of keras_local's networks (a string that
    is no model spec); for a user's own model (named `name`), `OWN_MODEL`,
    never its name, with a warning that says so."""
    if isinstance(architecture, str) and not (architecture.startswith("keras.applications.") or ":" in architecture):
        return architecture
    warnings.warn(
        f"recipe='reference' on your own model {name!r}: {method}'s generic recipe applies. Its settings for "
        f"the papers' networks (per-network learning rates, splits, weight decays) are looked up by keras_local's "
        f"network names, never by a model's name, so none of them is matched.",
        UserWarning,
        stacklevel=3,
    )
    return OWN_MODEL


def check_recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(
            f"Unknown recipe {recipe!r}. Allowed: {', '.join(RECIPES)} "
            f'("shared": the config as given; "reference": the method\'s own).'
        )
    return recipe

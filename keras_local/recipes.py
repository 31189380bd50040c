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


def check_recipe(recipe):
    if recipe not in RECIPES:
        raise ValueError(
            f"Unknown recipe {recipe!r}. Allowed: {', '.join(RECIPES)} "
            f'("shared": the config as given; "reference": the method\'s own).'
        )
    return recipe

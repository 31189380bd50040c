"""The user's own Keras model as keras_local units: what `build_model` cuts
when its `architecture` is not one of keras_local's names.

`build_model` accepts a functional `keras.Model` (keras.applications, a
keras-hub backbone, a hand-written one), a `keras.Sequential`, a list of
layers, or a string naming a factory: `"keras.applications.NAME"` (built with
`weights=None`, the run's input shape and classes, and logits out) or
`"module:function"` (called with `input_shape` and `num_classes` where it takes
them). The units are the pieces between consecutive cut points
(`keras_local.graph`), each ending in the tensor the rest of the model reads;
a classifier at the end (`_classifier_start`: from the first pooling of the
run of classifier layers the model ends in, or else after the last feature
map, when it holds weights and the output is a vector) is the output head,
and a backbone without one gets the method's output head. An input given as a
one-entry dict is traced as that dict.

Example:

```python
model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), classes=10,
                                       classifier_activation=None)
own = prepare_model(model)
len(own.units), own.classifier.name   # (73, 'mobilenetv2_1.00_32_classifier'): then GAP → Dense
```
"""

import difflib
import importlib
import inspect

import keras

from keras_local import graph
from keras_local.repairs import repair_layers
from keras_local.splitting import cut_items

APPLICATIONS_PREFIX = "keras.applications."


def is_model_spec(architecture):
    """Whether `architecture` is a string naming a model factory rather than a keras_local network."""
    return isinstance(architecture, str) and (architecture.startswith(APPLICATIONS_PREFIX) or ":" in architecture)


def load_model_spec(spec, input_shape, num_classes, options=None):
    """The model that `spec` names (`"keras.applications.NAME"` or
    `"module:function"`), called with the run's shape and classes where the
    factory takes them, then `options` (the config's `architecture_options`)."""
    if spec.startswith(APPLICATIONS_PREFIX):
        name = spec[len(APPLICATIONS_PREFIX) :]
        factory = getattr(keras.applications, name, None)
        where = "keras.applications"
        defaults = {
            "weights": None,
            "input_shape": tuple(input_shape),
            "classes": num_classes,
            "classifier_activation": None,
        }
    else:
        module_name, _, name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ValueError(f"architecture {spec!r}: cannot import module {module_name!r} ({error}).") from None
        factory, where = getattr(module, name, None), f"module {module_name!r}"
        defaults = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    if not callable(factory):
        raise ValueError(
            f"architecture {spec!r}: {where} has no model factory {name!r}; give "
            f'"keras.applications.NAME" or "module:function" (a function that returns a keras.Model).'
        )
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    kwargs = {key: value for key, value in defaults.items() if takes_any or key in parameters}
    model = factory(**{**kwargs, **(options or {})})
    if not isinstance(model, (keras.Model, list, tuple)):
        raise ValueError(
            f"architecture {spec!r} returned {type(model).__name__}, not a keras.Model or a list of layers."
        )
    return model


class OwnModel:
    """A user's model prepared for `build_model`.

    Attributes:
        units: functional models, the pieces between consecutive cut points
            (sharing the user's layers).
        unit_ends: the name of the layer that ends each unit.
        classifier: the model's own classifier as a functional model, or None.
        input_shape: the shape of one example.
        name: the model's name.
        token_pooling: how heads pool a token sequence: `"class"` where the
            model has a class token, else `"mean"`.
        num_classes: the classifier's width, or None.
    """

    def __init__(self, units, unit_ends, classifier, input_shape, name, token_pooling, layer_order, cut_names):
        self.units = units
        self.unit_ends = unit_ends
        self.classifier = classifier
        self.input_shape = input_shape
        self.name = name
        self.token_pooling = token_pooling
        self.num_classes = None if classifier is None else classifier.outputs[0].shape[-1]
        self._layer_order = layer_order
        self._cut_names = cut_names

    def unit_cuts(self, cuts):
        """`cuts` given as layer names (cut after that layer) or unit
        indices, a list or a comma-separated string, as unit indices."""
        if cuts is None:
            return None
        return [self._unit_boundary(item) for item in cut_items(cuts)]

    def _unit_boundary(self, item):
        if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            return int(item)
        if item in self.unit_ends:
            return self.unit_ends.index(item) + 1
        if item not in self._layer_order:
            close = difflib.get_close_matches(item, self._cut_names, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"Model {self.name!r} has no cut point {item!r}.{hint} kl.cut_points(model) lists them.")
        if item in self._cut_names:  # a cut point inside the classifier
            raise ValueError(
                f"Layer {item!r} of model {self.name!r} is in its classifier, which stays whole as the "
                f"output head; the last cut point before it is {self.unit_ends[-1]!r}."
            )
        position = self._layer_order.index(item)
        before = [name for name in self._cut_names if self._layer_order.index(name) < position]
        after = [name for name in self._cut_names if self._layer_order.index(name) > position]
        nearest = " and ".join(repr(names[index]) for names, index in ((before, -1), (after, 0)) if names)
        raise ValueError(
            f"Layer {item!r} of model {self.name!r} is not a cut point (it is inside a block that "
            f"other tensors bypass, or in the classifier); the nearest cut points are {nearest}."
        )


def prepare_model(model, input_shape=None, num_classes=None):
    """Cuts `model` (a functional model, a `Sequential` or a list of layers)
    into units at its cut points; returns an `OwnModel`.

    `input_shape` is the shape of one example: the model's own by default
    (required where it has undefined dimensions or is not built; (32, 32, 3)
    for a list of layers). `num_classes`, if given, must agree with the
    model's classifier.
    """
    name, input_name, shape, dtype = _input_of(model, input_shape)
    for layer in model if isinstance(model, (list, tuple)) else [model]:
        repair_layers(layer)  # layers whose saving keras_local knows to be broken (keras_local.repairs)
    inputs = keras.Input(shape, name=input_name, dtype=dtype)
    traced = graph.trace(model, inputs)
    calls, output = traced.calls, traced.output
    cuts = graph.cut_tensors(calls, inputs, output)
    start = _classifier_start(calls, cuts, output)
    end = start if start is not None else len(calls) - 1
    bounds = [-1, *[index for index in cuts if index < end], end]

    def piece(first, last, piece_name, source_name):
        source = inputs if first < 0 else cuts[first]
        target = cuts.get(last, output)  # what the rest of the model reads, or the model's output
        piece_input = keras.Input(batch_shape=source.shape, dtype=source.dtype, name=source_name)
        mapping = graph.replay(calls[first + 1 : last + 1], {id(source): piece_input})
        return keras.Model(piece_input, mapping[id(target)], name=piece_name)

    units = [
        piece(first, last, f"{name}_unit{index}", input_name if first < 0 else f"{name}_unit{index}_input")
        for index, (first, last) in enumerate(zip(bounds, bounds[1:]))
    ]
    classifier = None
    if start is not None:
        _check_logits(name, calls[-1].layer)
        classifier = piece(start, len(calls) - 1, f"{name}_classifier", f"{name}_classifier_input")
        if num_classes is not None and output.shape[-1] != num_classes:
            raise ValueError(
                f"Model {name!r} ends in a classifier of {output.shape[-1]} classes "
                f"({', '.join(call.layer.name for call in calls[start + 1 :])}) but num_classes={num_classes}: "
                f"build it for {num_classes} classes, or pass the backbone without its top."
            )
    has_class_token = any(getattr(call.layer, "use_class_token", False) for call in calls)
    return OwnModel(
        units,
        [calls[last].layer.name for last in bounds[1:]],
        classifier,
        shape,
        name,
        "class" if has_class_token else "mean",
        [call.layer.name for call in calls],
        [calls[index].layer.name for index in cuts],
    )


def _input_of(model, input_shape):
    """(name, input layer name, example shape, input dtype) of `model`, or a ValueError."""
    if isinstance(model, (list, tuple)):
        if not model or not all(isinstance(layer, keras.layers.Layer) for layer in model):
            raise ValueError(f"A model given as a list must be a non-empty list of keras layers, got {model!r}.")
        return "layers", "image", tuple(input_shape or (32, 32, 3)), None
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"architecture must be a keras_local name, a keras.Model or a list of layers, "
            f"got {type(model).__name__}: {model!r}."
        )
    if isinstance(model, keras.Sequential) and not model.built and input_shape is not None:
        return model.name, "image", tuple(input_shape), None
    inputs = graph.functional_input(model)
    own = tuple(inputs.shape[1:])
    if input_shape is None:
        if None in own:
            raise ValueError(
                f"Model {model.name!r} takes inputs of shape {own}, with undefined dimensions: pass "
                f"input_shape, the shape of one example (e.g. input_shape=(32, 32, 3))."
            )
        return model.name, inputs.name, own, inputs.dtype
    given = tuple(input_shape)
    if len(given) != len(own) or any(a is not None and a != b for a, b in zip(own, given)):
        raise ValueError(f"input_shape={given} does not fit model {model.name!r}, which takes inputs of shape {own}.")
    return model.name, inputs.name, given, inputs.dtype


# The layers a classifier on pooled features is made of (Keras' own models end in such a run: GAP → Dense,
# Flatten → Dense → Dense, GAP keeping its dims → 1x1 convolutions → Flatten), and the ones that pool.
POOLING = (
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.Flatten,
)
CLASSIFIER_LAYERS = POOLING + (
    keras.layers.Dense,
    keras.layers.Dropout,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.Softmax,
    keras.layers.Reshape,
    keras.layers.Identity,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
)


def _classifier_start(calls, cuts, output):
    """The cut after which the model's classifier starts, or None, when the
    output is a vector and the classifier holds weights: before the first
    pooling layer of the run of classifier layers (`CLASSIFIER_LAYERS`, and
    1x1 convolutions) that ends the model; else after the last feature map
    (or, in a model of vectors, the last cut)."""
    if len(output.shape) != 2 or not cuts:
        return None
    start = None
    for index in range(len(calls) - 1, 0, -1):
        layer = calls[index].layer
        if not (isinstance(layer, CLASSIFIER_LAYERS) or _pointwise_convolution(layer)):
            break
        if isinstance(layer, POOLING) and index - 1 in cuts:
            start = index - 1
    if start is None:
        maps = [index for index, tensor in cuts.items() if len(tensor.shape) >= 3]
        start = maps[-1] if maps else list(cuts)[-1]
    return start if any(call.layer.trainable_weights for call in calls[start + 1 :]) else None


def _pointwise_convolution(layer):
    """Whether `layer` is a convolution with a 1x1 kernel and stride 1 (a dense layer on a pooled map)."""
    return (
        isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D))
        and all(size == 1 for size in layer.kernel_size)
        and all(stride == 1 for stride in layer.strides)
    )


def _check_logits(name, layer):
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax) or activation is keras.activations.softmax:
        raise ValueError(
            f"Model {name!r} ends in a softmax ({layer.name!r}); keras_local's losses read logits: "
            f"build it with classifier_activation=None (keras.applications) or a linear last layer."
        )

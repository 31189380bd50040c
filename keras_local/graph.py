"""The graph of a user's Keras model: where it can be cut, and its pieces.

A model is traced by calling its own layers, in its own order, on a fresh
`keras.Input` (a functional model node by node through
`keras.models.clone_model(..., clone_function=identity)`, a `Sequential` or a
list of layers one layer after the other). A *cut point* is a call after
which one tensor, one of its outputs, carries everything the rest of the
model reads: nothing inside a residual block, a concatenation or any skip
connection, and nothing between two calls of a shared layer. The pieces between consecutive
cut points are small functional models that share the user's layers (and so
their weights).

Example:

```python
inputs = keras.Input((8, 8, 3))
x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
y = keras.layers.Conv2D(4, 3, padding="same", name="branch")(x)
x = keras.layers.Add(name="residual")([x, y])
outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
model = keras.Model(inputs, outputs)
cut_points(model)   # ['stem', 'residual']: never after 'branch', inside the residual block
```
"""

import keras


class Call:
    """One call of a layer in a traced graph: the layer, the arguments it was
    called with and the KerasTensors it read and returned (every output, in
    order; a layer may return several, of which the model reads some)."""

    def __init__(self, layer, args, kwargs, outputs):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        self.inputs = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        self.outputs = keras.tree.flatten(outputs)


class Trace:
    """A traced model: its `calls` in order, and the `output` tensor the model
    returns (one of the last call's outputs, not always the first)."""

    def __init__(self, calls, output):
        self.calls = calls
        self.output = output


# Layers that hold a chain of layers in one call, by class name: how to open them (layer -> its layers in
# order, each a layer or (layer, keyword arguments of its call)). Each layer of a chain reads the previous
# one's first output; the chain stands for the opened layer's first output, the one the model reads.
# keras-hub's ViT-family encoders hold all their transformer blocks (keras-hub 0.32).
CHAINS = {
    "ViTEncoder": lambda layer: [layer.dropout, *layer.encoder_layers, layer.layer_norm],
    # A block returns (tokens, None), which a functional graph cannot hold: asked for its attention scores, it
    # returns (tokens, scores) and computes the same tokens. The encoder returns (tokens, states, scores).
    "DeiTEncoder": lambda layer: [
        *[(block, {"return_attention_scores": True}) for block in layer.encoder_layers],
        layer.layer_norm,
    ],
    # The encoder returns (tokens, {stage name: tokens}).
    "DINOV2Encoder": lambda layer: list(layer.layers),
}


def register_chain(class_name, layers_of):
    """Lets `trace` open layers of class `class_name` whose call applies
    `layers_of(layer)` one after the other (each on the previous one's first
    output; an item may be `(layer, call keyword arguments)`) and whose first
    output is the last one's, so they can be cut inside."""
    CHAINS[class_name] = layers_of


def _opened(layer, args, kwargs):
    """The layers to call in turn instead of `layer` (a nested model with one
    input and output, or a registered chain), or None."""
    # (Keras records a call's default `training` and `mask`; a chain's layers get the model's at run time.)
    if (
        len(args) != 1
        or not isinstance(args[0], keras.KerasTensor)
        or set(kwargs) - {"training", "mask"}
        or kwargs.get("mask") is not None
    ):
        return None
    if type(layer).__name__ in CHAINS:
        return CHAINS[type(layer).__name__](layer)
    if is_functional(layer) and len(layer.inputs) == 1 and len(layer.outputs) == 1:
        return layer
    return None


def is_functional(layer):
    """Whether `layer` is a model with a functional graph (e.g. a piece of a user's model)."""
    return isinstance(layer, keras.Model) and getattr(layer, "inputs", None) is not None


def trace(model, inputs):
    """Calls the layers of `model` (a functional model, a `Sequential` or a
    list of layers) on the KerasTensor `inputs`, in the model's order; returns
    a `Trace`. A nested model and a registered chain (`register_chain`) are
    opened: their own layers are called instead."""
    calls, returned = [], {}  # returned: {id(layer): what its last call returned}

    def call(layer, *args, **kwargs):
        inner = _opened(layer, args, kwargs)
        if inner is not None:
            opened = trace(inner, args[0])
            calls.extend(opened.calls)
            outputs = opened.output
        else:
            outputs = layer(*args, **kwargs)
            calls.append(Call(layer, args, kwargs, outputs))
        returned[id(layer)] = outputs
        return outputs

    if isinstance(model, (list, tuple, keras.Sequential)):
        x = inputs
        for item in model.layers if isinstance(model, keras.Sequential) else model:
            layer, kwargs = item if isinstance(item, tuple) else (item, {})
            x = keras.tree.flatten(call(layer, x, **kwargs))[0]
        if not calls:
            raise ValueError("A model with no layers cannot be cut.")
        return Trace(calls, x)
    structure = keras.tree.map_structure(lambda _: inputs, model.input)  # a one-entry dict stays one
    keras.models.clone_model(model, input_tensors=structure, clone_function=lambda layer: layer, call_function=call)
    layer, _, position = model.outputs[0]._keras_history  # which output of which layer the model returns
    return Trace(calls, keras.tree.flatten(returned[id(layer)])[position])


def replay(calls, mapping):
    """Calls the layers of `calls` again, each on the tensors that `mapping`
    ({id(traced tensor): new tensor}) gives for its inputs; returns `mapping`,
    updated with every new output."""

    def substitute(value):
        return mapping[id(value)] if isinstance(value, keras.KerasTensor) else value

    for call in calls:
        args, kwargs = keras.tree.map_structure(substitute, (call.args, call.kwargs))
        outputs = call.layer(*args, **kwargs)
        for old, new in zip(call.outputs, keras.tree.flatten(outputs)):
            mapping[id(old)] = new
    return mapping


def replay_model(model, x):
    """`model`'s layers called on the KerasTensor `x`, flat (no nested model):
    the output tensor."""
    return trace(model, x).output


def cut_tensors(calls, inputs, output):
    """{position in `calls`: tensor}: the calls after which the graph can be
    cut (see the module doc), never after the last, each with the one tensor
    that then carries everything the rest of the model reads (one of the
    call's outputs)."""
    last_use = {}
    for index, call in enumerate(calls):
        for tensor in call.inputs:
            last_use[id(tensor)] = index
    last_use[id(output)] = len(calls)
    first, last = {}, {}
    for index, call in enumerate(calls):
        first.setdefault(id(call.layer), index)
        last[id(call.layer)] = index
    inside_shared = {index for key in first for index in range(first[key], last[key])}
    live = {id(inputs)}
    cuts = {}
    for index, call in enumerate(calls[:-1]):
        for tensor in call.inputs:
            if last_use[id(tensor)] == index:
                live.discard(id(tensor))
        read = [tensor for tensor in call.outputs if last_use.get(id(tensor), -1) > index]
        live.update(id(tensor) for tensor in read)
        if len(read) == 1 and live == {id(read[0])} and index not in inside_shared:
            cuts[index] = read[0]
    return cuts


def functional_input(model):
    """The single input of a functional model or a built `Sequential`, or a
    ValueError that says why `model` has none to trace."""
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Sequential model {model.name!r} is not built, so its layers' shapes are unknown: pass "
            f"input_shape=(height, width, channels) (e.g. input_shape=(32, 32, 3)), or start it with keras.Input."
        )
    inputs = getattr(model, "inputs", None)
    if inputs is None:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is a subclassed model without a functional graph: "
            f"keras_local cannot see where it may be cut. Pass its layers as a list (build_model([layer, ...])) "
            f"or build it with the functional API."
        )
    outputs = model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(inputs)} input(s) and {len(outputs)} output(s); keras_local trains "
            f"models with one input and one output."
        )
    return inputs[0]


def cut_points(model):
    """The names of the layers after which `model` (functional or a built
    `Sequential`) can be cut, in order (see the module doc).

    Example:

    ```python
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)
    cut_points(model)[6:9]   # ['conv2_block1_add', 'conv2_block1_out', 'conv2_block2_add']: never inside a block
    ```
    """
    inputs = functional_input(model)
    traced = keras.Input(batch_shape=inputs.shape, dtype=inputs.dtype, name=inputs.name)
    graph = trace(model, traced)
    return [graph.calls[index].layer.name for index in cut_tensors(graph.calls, traced, graph.output)]

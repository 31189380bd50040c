"""Export a trained LocalModel as a plain Keras model for inference."""

import warnings

import keras
import numpy as np

from keras_local.graph import is_functional, replay_model


def export_inference_model(model, filepath=None, normalization=None):
    """A functional Keras model of built-in layers only, sharing `model`'s weights.

    The auxiliary heads are dropped: the result is input → all units → output
    head (for Associated Learning, the last bridge then the decoders h_L … h_1:
    only the effective parameters). Saved with `filepath` (a `.keras` file), it loads with
    `keras.saving.load_model` in a process that never imports `keras_local`.

    Args:
        model: a built LocalModel.
        filepath: where to save it (`.keras`), or None.
        normalization: `(mean, std)` per channel on the [0, 1] scale (what
            `keras_local.data.normalization(dataset)` gives): the model then
            takes images as the pipeline reads them, uint8 or floats in
            [0, 255], and rescales and standardises them itself. None: it
            takes already standardised images.

    The output is named `logits` (unnormalised class scores: apply a softmax
    for probabilities), or for Associated Learning `label_scores` (its
    decoder's sigmoid reconstruction of the one-hot label, in [0, 1]); the
    predicted class is the argmax either way.

    A user's own model (`keras_local.own_model`) is written with its own
    layers, flat: a model of keras' layers loads anywhere; one with custom
    layers (e.g. keras-hub's) needs their package imported where it loads.

    Example:

    ```python
    model = kl.build_model("resnet8", "gll", num_blocks=2)   # a trained model, in practice
    inference = kl.export_inference_model(model, "infer.keras", normalization=kl.data.normalization("cifar10"))
    uint8_images = np.random.randint(0, 256, size=(4, 32, 32, 3), dtype="uint8")
    keras.saving.load_model("infer.keras").predict(uint8_images)   # logits, shape (4, 10)
    ```
    """
    if not model.built:
        raise ValueError("Build or train the model before exporting it.")
    shape = model.blocks[0].input_shape_without_batch
    inputs = keras.Input(shape=shape, name="image")
    x = inputs
    if normalization is not None:
        mean, std = (np.broadcast_to(np.asarray(values, "float32"), shape[-1:]) for values in normalization)
        x = keras.layers.Rescaling(1 / 255, name="to_unit_range")(x)
        x = keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardize")(x)
    for block in model.blocks:
        for unit in block.units:
            x = _replay(unit, x)
    for layer in model.inference_head:
        x = _replay(layer, x)
    last = len(model.blocks) - 1
    output_name = "label_scores" if model.method.head_scores(last, last + 1) == "decoded" else "logits"
    inference = keras.Model(inputs, x, name=f"{model.name}_inference")
    if inference.layers[-1].name != output_name:  # a user's model may already end in a layer of that name
        taken = output_name in {layer.name for layer in inference.layers}
        outputs = keras.layers.Identity(name=f"{output_name}_output" if taken else output_name)(x)
        inference = keras.Model(inputs, outputs, name=f"{model.name}_inference")
    if filepath is not None:
        inference.save(filepath)
    return inference


def backbone_model(model, include_top=None):
    """The network of `model` as a plain functional `keras.Model`, sharing its
    weights: input → every block's units → (with `include_top`) the output
    head. For the user's own model (`keras_local.own_model`) its layers are
    called flat, as in the user's graph, under their own names and the
    model's name: the user's model back, trained.

    `include_top` defaults to whether the output head came with the network
    (the user's classifier, or a keras_local network's GAP → Dense); a
    user's backbone without a classifier comes back without the head the
    method gave it, with a warning that says so (it then predicts
    differently: features, not classes).

    Example:

    ```python
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv_b")(x)
    outputs = keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
    local = kl.build_model(keras.Model(inputs, outputs, name="mine"), "gll", num_blocks=2)
    mine = local.backbone_model()
    mine.name, [layer.name for layer in mine.layers]   # ('mine', ['pixels', 'conv_a', 'conv_b', 'gap', 'logits'])
    ```
    """
    if not model.built:
        raise ValueError("Build or train the model before taking its backbone.")
    units = [unit for block in model.blocks for unit in block.units]
    if include_top is None:
        include_top = not any(map(is_functional, units)) or is_functional(model.output_head)
        if not include_top:
            warnings.warn(
                f"backbone_model(): {model.backbone_name!r} has no classifier of its own, so this model gives "
                f"its features, while {model.name!r} predicts through the output head keras_local added "
                f"({type(model.output_head).__name__}); pass include_top=True to keep that head.",
                UserWarning,
                stacklevel=3,
            )
    first = units[0] if units else None
    name, dtype = (first.layers[0].name, first.inputs[0].dtype) if is_functional(first) else ("image", None)
    inputs = keras.Input(shape=model.blocks[0].input_shape_without_batch, name=name, dtype=dtype)
    x = inputs
    for layer in units + (model.inference_head if include_top else []):
        x = replay_model(layer, x) if is_functional(layer) else layer(x)
    return keras.Model(inputs, x, name=model.backbone_name or model.name)


def _replay(layer, x):
    """Built-in Keras layers are called as they are, a piece of the user's
    model layer by layer; this package's layers are replaced by their
    `call`, which calls only built-in layers."""
    if is_functional(layer):
        return replay_model(layer, x)
    if type(layer).__module__.startswith("keras."):
        return layer(x)
    return layer.call(x)

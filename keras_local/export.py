"""Export a trained LocalModel as a plain Keras model for inference."""

import keras


def export_inference_model(model, filepath=None):
    """A functional Keras model of built-in layers only, sharing `model`'s weights.

    The auxiliary heads are dropped: the result is input → all units → output
    head (for Associated Learning, the last bridge then the decoders h_L … h_1:
    only the effective parameters). Saved with `filepath` (a `.keras` file), it loads with
    `keras.saving.load_model` in a process that never imports `keras_local`.

    Example:

    ```python
    inference = kl.export_inference_model(model, "infer.keras")
    keras.saving.load_model("infer.keras").predict(images)
    ```
    """
    if not model.built:
        raise ValueError("Build or train the model before exporting it.")
    inputs = keras.Input(shape=model.blocks[0].input_shape_without_batch, name="image")
    x = inputs
    for block in model.blocks:
        for unit in block.units:
            x = _replay(unit, x)
    for layer in model.inference_head:
        x = _replay(layer, x)
    outputs = x
    inference = keras.Model(inputs, outputs, name=f"{model.name}_inference")
    if filepath is not None:
        inference.save(filepath)
    return inference


def _replay(layer, x):
    """Built-in Keras layers are called as they are; this package's layers
    are replaced by their `call`, which calls only built-in layers."""
    if type(layer).__module__.startswith("keras."):
        return layer(x)
    return layer.call(x)

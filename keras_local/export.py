"""Export a trained LocalModel as a plain Keras model for inference."""

import keras
import numpy as np


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
    outputs = keras.layers.Identity(name="logits" if model.method.heads_classify else "label_scores")(x)
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

"""Per-block optimizers and the facade that `LocalModel.optimizer` exposes.

Each block owns its optimizer (`model.blocks[k].optimizer`). Keras callbacks
only know `model.optimizer`; Keras' learning-rate callbacks (LearningRateScheduler,
ReduceLROnPlateau) and TensorBoard iterate over `model.optimizer.optimizers`
when it exists, so `BlockOptimizers` exposes exactly that and every callback
acts on every block.
"""

import keras
import tensorflow as tf


def _inner(optimizer):
    """The optimizer inside a LossScaleOptimizer (mixed precision), or itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


@keras.saving.register_keras_serializable(package="keras_local")
class ScaledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """`factor ×` another schedule (e.g. Associated Learning's 2× autoencoder rate).

    Example:

    ```python
    schedule = ScaledLearningRate(keras.optimizers.schedules.CosineDecay(1e-3, 1000), 2.0)
    float(schedule(0))   # 0.002
    ```
    """

    def __init__(self, schedule, factor):
        self.schedule = schedule
        self.factor = float(factor)

    def __call__(self, step):
        return self.factor * self.schedule(step)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["schedule"]), config["factor"])


def _scaled_learning_rate(learning_rate, factor):
    if factor == 1:
        return learning_rate
    if isinstance(learning_rate, dict):
        learning_rate = keras.optimizers.schedules.deserialize(learning_rate)
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return ScaledLearningRate(learning_rate, factor)
    return float(learning_rate) * factor


def resolve_block_optimizers(spec, num_blocks, learning_rate_factors=None):
    """One fresh optimizer per block from `spec`.

    `spec` is an optimizer (or identifier such as "sgd"), cloned from its
    config for every block, with its learning rate (or schedule) multiplied
    by `learning_rate_factors[k]` when given; a list of `num_blocks`
    optimizers; or a callable `block_index -> optimizer`.
    """
    if callable(spec) and not isinstance(spec, keras.optimizers.Optimizer):
        optimizers = [spec(index) for index in range(num_blocks)]
    elif isinstance(spec, (list, tuple)):
        if len(spec) != num_blocks:
            raise ValueError(
                f"Got {len(spec)} optimizers for {num_blocks} blocks; give one per block, "
                "a single optimizer to clone, or a callable block_index -> optimizer."
            )
        optimizers = list(spec)
    else:
        template = _inner(keras.optimizers.get(spec))
        config = template.get_config()
        factors = learning_rate_factors or [1.0] * num_blocks
        optimizers = [
            template.__class__.from_config({
                **config,
                "name": f"{config['name']}_block_{index}",
                "learning_rate": _scaled_learning_rate(config["learning_rate"], factors[index]),
            })
            for index in range(num_blocks)
        ]
    optimizers = [keras.optimizers.get(item) for item in optimizers]
    if len({id(item) for item in optimizers}) != num_blocks:
        raise ValueError("Each block needs its own optimizer instance; got shared instances.")
    return optimizers


class BlockOptimizers:
    """`model.optimizer` of a LocalModel: a view over the blocks' optimizers.

    Example:

    ```python
    model = kl.build_model("resnet8", "gll", num_blocks=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.optimizers          # [blocks[0].optimizer, ...]
    model.optimizer.learning_rate = 0.01    # sets every block's learning rate
    ```
    """

    def __init__(self, blocks, devices=None):
        self._blocks = list(blocks)
        self._devices = devices or [None] * len(self._blocks)

    @property
    def optimizers(self):
        return [block.optimizer for block in self._blocks]

    @property
    def built(self):
        return all(optimizer.built for optimizer in self.optimizers)

    def build(self, variables=None):
        """Builds each block's optimizer over its own block's variables, in
        `block.trainable_variables` order (what saving and restoring rely on).
        `variables` is accepted for Keras' API and ignored."""
        for block, device in zip(self._blocks, self._devices):
            if not block.optimizer.built:
                with tf.device(device):  # the slot variables live with the block
                    block.optimizer.build(block.trainable_variables)

    @property
    def iterations(self):
        return self._blocks[0].optimizer.iterations

    @property
    def learning_rate(self):
        return self._blocks[0].optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        for optimizer in self.optimizers:
            optimizer.learning_rate = value

    @property
    def variables(self):
        return [variable for optimizer in self.optimizers for variable in optimizer.variables]

    def __repr__(self):
        names = ", ".join(type(_inner(optimizer)).__name__ for optimizer in self.optimizers)
        return f"BlockOptimizers([{names}])"

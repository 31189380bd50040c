"""Per-block optimizers and the facade that `LocalModel.optimizer` exposes.

Each block owns its optimizer (`model.blocks[k].optimizer`). Keras callbacks
only know `model.optimizer`; Keras' learning-rate callbacks (LearningRateScheduler,
ReduceLROnPlateau) and TensorBoard iterate over `model.optimizer.optimizers`
when it exists, so `BlockOptimizers` exposes exactly that and every callback
acts on every block. An optimizer whose rate is a multiple of the others'
(Associated Learning's autoencoders: 2x) appears there as a
`ScaledLearningRateView`: callbacks read and set the shared base rate, and its
optimizer runs at `factor ×` what they set, so no learning-rate change loses
the factor.
"""

import keras
import tensorflow as tf


def named_optimizer(name, learning_rate, momentum=0.9, nesterov=True):
    """The optimizer a config or a search names: `"sgd"` (with `momentum`
    and `nesterov`) or `"adam"`, at `learning_rate` (a number or a schedule)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"Unknown optimizer {name!r}. Allowed: sgd, adam.")


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


def _with_loss_scale(settings, optimizer, device):
    """`optimizer` in a `LossScaleOptimizer` with the initial scale and growth steps of `settings` (one)."""
    with tf.device(device):
        return keras.optimizers.LossScaleOptimizer(
            optimizer,
            initial_scale=settings.initial_scale,
            dynamic_growth_steps=settings.dynamic_growth_steps,
            name=f"loss_scale_{optimizer.name}",
        )


def clones_one_optimizer(spec):
    """Whether `resolve_block_optimizers` clones `spec` (one optimizer) rather than taking one per block."""
    return not isinstance(spec, (list, tuple)) and not (
        callable(spec) and not isinstance(spec, keras.optimizers.Optimizer)
    )


def resolve_block_optimizers(spec, num_blocks, learning_rate_factors=None, devices=None):
    """One fresh optimizer per block from `spec`.

    `spec` is an optimizer (or identifier such as "sgd"), cloned from its
    config for every block, with its learning rate (or schedule) multiplied
    by `learning_rate_factors[k]` when given; a list of `num_blocks`
    optimizers; or a callable `block_index -> optimizer`. An optimizer made
    here is made on `devices[k]` (its step count and rate live there).
    """
    devices = devices or [None] * num_blocks
    if not clones_one_optimizer(spec) and not isinstance(spec, (list, tuple)):
        optimizers = []
        for index in range(num_blocks):
            with tf.device(devices[index]):
                optimizers.append(spec(index))
    elif isinstance(spec, (list, tuple)):
        if len(spec) != num_blocks:
            raise ValueError(
                f"Got {len(spec)} optimizers for {num_blocks} blocks; give one per block, "
                "a single optimizer to clone, or a callable block_index -> optimizer."
            )
        optimizers = list(spec)
    else:
        given = keras.optimizers.get(spec)
        template = _inner(given)
        config = template.get_config()
        factors = learning_rate_factors or [1.0] * num_blocks
        optimizers = []
        for index in range(num_blocks):
            with tf.device(devices[index]):
                optimizers.append(
                    template.__class__.from_config(
                        {
                            **config,
                            "name": f"{config['name']}_block_{index}",
                            "learning_rate": _scaled_learning_rate(config["learning_rate"], factors[index]),
                        }
                    )
                )
        if given is not template:  # the user's LossScaleOptimizer: each block's keeps its settings
            optimizers = [_with_loss_scale(given, optimizer, device) for optimizer, device in zip(optimizers, devices)]
    optimizers = [keras.optimizers.get(item) for item in optimizers]
    if len({id(item) for item in optimizers}) != num_blocks:
        raise ValueError("Each block needs its own optimizer instance; got shared instances.")
    return optimizers


class ScaledLearningRateView:
    """An optimizer whose `learning_rate` reads and sets the base rate: the
    optimizer's own rate ÷ `factor` (everything else is the optimizer's).

    Example:

    ```python
    optimizer = keras.optimizers.SGD(0.2)
    view = ScaledLearningRateView(optimizer, 2.0)
    view.learning_rate = 0.05     # what a Keras learning-rate callback does
    float(optimizer.learning_rate)   # 0.1
    ```
    """

    def __init__(self, optimizer, factor):
        object.__setattr__(self, "optimizer", optimizer)
        object.__setattr__(self, "factor", float(factor))

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate / self.factor

    @learning_rate.setter
    def learning_rate(self, value):
        self.optimizer.learning_rate = value * self.factor

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def __setattr__(self, name, value):
        if name == "learning_rate":  # the property above
            object.__setattr__(self, name, value)
        else:
            setattr(self.optimizer, name, value)


class BlockOptimizers:
    """`model.optimizer` of a LocalModel: a view over the blocks' optimizers.

    Example:

    ```python
    model = kl.build_model("resnet8", "gll", num_blocks=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.optimizers          # [blocks[0].optimizer, ...]
    model.optimizer.learning_rate = 0.01    # sets every block's learning rate (× its factor)
    ```

    `learning_rate_factors[k]` (default 1) is block k's rate ÷ the base rate:
    `optimizers` shows such a block through a `ScaledLearningRateView`.
    """

    def __init__(self, blocks, devices=None, learning_rate_factors=None):
        self._blocks = list(blocks)
        self._devices = devices or [None] * len(self._blocks)
        self.learning_rate_factors = [float(f) for f in (learning_rate_factors or [1.0] * len(self._blocks))]

    @property
    def optimizers(self):
        return [
            block.optimizer if factor == 1 else ScaledLearningRateView(block.optimizer, factor)
            for block, factor in zip(self._blocks, self.learning_rate_factors)
        ]

    @property
    def built(self):
        return all(block.optimizer.built for block in self._blocks)

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
        for optimizer in self.optimizers:  # a view multiplies by its factor
            optimizer.learning_rate = value

    @property
    def variables(self):
        return [variable for block in self._blocks for variable in block.optimizer.variables]

    def __repr__(self):
        names = ", ".join(type(_inner(block.optimizer)).__name__ for block in self._blocks)
        return f"BlockOptimizers([{names}])"

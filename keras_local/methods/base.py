"""What a training method is: a small rule the one `LocalModel.train_step` consults."""


class Method:
    """A local-training rule.

    Attributes:
        name: the registry name.
        cut_gradients: whether every block reads `stop_gradient` of the
            previous block's output (local training) or the whole network is
            differentiated end to end (backprop).
        aux_heads: whether blocks other than the last get an auxiliary head
            and a local loss. The last block always uses the network's output
            head.

    Subclasses take their options (e.g. `alpha`) as keyword arguments,
    validate them in `__init__` and return them from `get_config`.
    """

    name = None
    options = ()  # names of the keyword arguments the method accepts
    cut_gradients = True
    aux_heads = True

    def validate(self, block_sizes):
        """Checks options against the split (number of units per block)."""

    def get_config(self):
        return {}

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({options})"

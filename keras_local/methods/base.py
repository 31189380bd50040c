"""What a training method is: a small rule the one `LocalModel.train_step` consults."""

import sys
from dataclasses import dataclass

from keras_local.registry import Registry

# What `Method.linked_units` returns to link a block's every unit (clipped to the block's length).
WHOLE_BLOCK = sys.maxsize


@dataclass(frozen=True)
class Network:
    """The cut network an auxiliary head is made for (`Method.auxiliary_head`):
    the units of each block, every unit's output shape, the example's shape
    and the number of classes."""

    groups: list
    unit_shapes: list
    input_shape: tuple
    num_classes: int

METHODS = Registry("method")


def register_method(method_class):
    """Class decorator: makes `method_class` available by its `name`
    (`build_model(method=name)`, `get_method`, config files)."""
    METHODS.register(method_class.name)(method_class)
    return method_class


class Method:
    """A local-training rule.

    Attributes:
        name: the registry name.
        cut_gradients: whether every block reads `stop_gradient` of the
            previous block's output (local training) or the whole network is
            differentiated end to end (backprop).
        aux_heads: whether blocks other than the last get an auxiliary head
            and a local loss.
        separate_output_block: whether the network's output layer is a block
            of its own (no units) after the K blocks, so that the last block
            keeps an auxiliary head of its own (BWBPF). Otherwise the last
            block's head is the output layer.
        heads_classify: whether the blocks' heads score the classes (their
            accuracy is logged as `acc_k`); Associated Learning's bridges
            regress codes instead.
        extra_block_loss: the loss of the extra blocks' heads (`extra_blocks`).
        extra_loss_name: the logged name of extra block k's loss (`<name>_k`).
        default_loss: the loss of every block's head when `compile` gets none
            (None: sparse categorical cross-entropy on logits).
        default_head: the auxiliary head when `build_model` gets none.
        needs_images: whether the blocks' losses also read the input images
            (their target is then `{"labels": y, "images": x}`).
        schedulable: the numeric options that `LocalModel.method_variable`
            can turn into variables (changed during training by
            `keras_local.callbacks.MethodHyperparameterScheduler`).

    Subclasses take their options (e.g. `alpha`) as keyword arguments,
    validate them in `__init__` and return them from `get_config`.
    """

    name = None
    options = ()  # names of the keyword arguments the method accepts
    cut_gradients = True
    aux_heads = True
    separate_output_block = False
    heads_classify = True
    # What `keras_local.tuning.LocalHyperModel` may search: options declared once per method, with
    # their default choices, and an option that sets the linked tail's length (declared per K; the
    # cut candidates of each K are then filtered to blocks at least that long).
    search_defaults = {}
    searched_tail_option = None
    extra_block_loss = None
    extra_loss_name = "extra_loss"
    default_loss = None
    default_head = "linear"
    needs_images = False
    schedulable = ()

    def configure(self, architecture=None, num_blocks=None, dataset=None):
        """Called by `build_model` once the network, its number of blocks and
        the dataset are known: options left to them (None) are resolved here."""

    def output_head(self, num_classes, features_shape):
        """The network's output layer (the last block's head, or the output
        block's): GAP → Dense by default."""
        from keras_local.heads import LinearHead

        return LinearHead(num_classes, name="output_head")

    def reference_recipe(self, architecture):
        """The training recipe of the method's paper / reference code for
        `architecture` (`keras_local.recipes.Recipe`)."""
        raise NotImplementedError(f"Method {self.name!r} has no reference recipe.")

    def default_cuts(self, architecture, num_units):
        """Where to cut when neither `num_blocks` nor `cuts` is given (None: one block)."""
        return None

    def architecture_defaults(self):
        """Architecture options the method prefers (the user's options win)."""
        return {}

    def validate(self, block_sizes):
        """Checks options against the split (number of units per block)."""

    def loss_weights(self, num_blocks):
        """The weight of each block's loss (`num_blocks` counts every block
        of the model, the output block included)."""
        return [1.0] * num_blocks

    def linked_units(self, block_index, num_blocks):
        """How many units at the end of block `block_index` (its tail) also
        learn from the next block's error, mixed by `link` (0: none, the block
        learns from its own loss only; `WHOLE_BLOCK`: all of them)."""
        return 0

    def sent_loss(self, index, num_blocks, loss):
        """The part of block `index`'s loss whose error at the block's input
        it sends back through a backward link (None: the whole loss)."""
        return None

    def link(self, own_error, next_error):
        """The error a linked tail learns from, given the error of its own
        loss and the next block's error at the tail's output."""
        raise NotImplementedError(f"Method {self.name!r} has no backward links.")

    def check_block_order(self, block_order):
        """Raises a `ValueError` if the method cannot train with this block order."""
        if block_order == "pipelined" and self.needs_images:
            raise ValueError(
                f"block_order='pipelined' cannot run {self.name!r} yet: its blocks' losses read the input "
                f"images, which the pipeline's buffers do not carry. Use block_order='together' or 'sequential'."
            )

    def block_head(self, index, architecture, num_classes):
        """Block `index`'s head when the method dictates it (None: the
        builder's default, an auxiliary head or the output head)."""
        return None

    def blocks_train_alone(self):
        """Whether a block can train on its own input and labels, outside the
        model's step (`fit_greedy`, `fit_asynchronous`): not where its loss
        reads the images, the blocks are not cut, or the step does more (MAN's
        averages follow the next block; backward links are checked apart)."""
        return self.cut_gradients and not self.needs_images

    def head_classifies(self, index, num_blocks):
        """Whether block `index`'s head scores the classes (its accuracy is
        logged as `acc_k`); `heads_classify` for every block by default."""
        return self.heads_classify

    def head_prediction(self, model, index, outputs):
        """The class scores of block `index`'s head, from its `outputs` (logits;
        Associated Learning decodes a bridge's code)."""
        return outputs

    def extra_blocks(self, architecture, num_classes, num_blocks):
        """Blocks the method trains besides the network's, one per block or
        none (Associated Learning's label path): built, with heads."""
        return []

    def extra_learning_rate_factor(self):
        """The extra blocks' learning rate ÷ the blocks' learning rate."""
        return 1.0

    def targets(self, model, x, y, training=True, update_metrics=True):
        """What each block's loss compares with, one entry per block: the
        labels, or `{"labels": y, "images": x}` for methods whose losses read
        the images. A method with extra blocks may train them here."""
        target = {"labels": y, "images": x} if self.needs_images else y
        return [target] * len(model.blocks)

    def decoders(self, model):
        """Layers applied after the output head to give the prediction (none by default)."""
        return []

    def prediction_loss(self, loss):
        """The loss of the network's prediction (default: the blocks' loss)."""
        return loss

    @classmethod
    def searchable_num_blocks(cls, ks):
        """The K a search may give this method, among `ks`."""
        return list(ks)

    def check_variable(self, name, block_order):
        """Raises a `ValueError` if option `name` cannot be scheduled with this block order."""

    def bind_variable(self, name, variable, model):
        """Makes the option `name` read `variable` from now on."""
        setattr(self, name, variable)

    def block_loss(self, index, num_blocks, loss):
        """The loss of block `index` (default: the compiled one for all)."""
        return loss

    def auxiliary_head(self, index, head, network):
        """Block `index`'s auxiliary head, given the default one (`head`) and
        the cut `network` (`Network`): where MAN, HPFF and AugLocal build
        theirs."""
        return head

    def after_block_update(self, model, index):
        """Runs in the training step right after block `index` applied its
        update (MAN's moving average)."""

    def head_options(self):
        """Extra keyword arguments of the auxiliary heads."""
        return {}

    def get_config(self):
        return {}

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({options})"


def check_number(name, value, minimum, maximum=None, integer=False):
    """Validates a numeric method option; returns it as int or float."""
    kind = "an integer" if integer else "a number"
    valid_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    upper = "" if maximum is None else f" and <= {maximum}"
    if isinstance(value, bool) or not valid_type or value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {kind} >= {minimum}{upper}, got {value!r}.")
    return int(value) if integer else float(value)

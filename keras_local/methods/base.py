"""What a training method is: a small rule the one `LocalModel.train_step` consults."""

import sys
import warnings
from dataclasses import dataclass, field

from keras_local.heads import LinearHead
from keras_local.registry import Registry
from keras_local.validation import check_number  # noqa: F401 (the methods' import)

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


@dataclass(frozen=True)
class SearchSpace:
    """What `keras_local.tuning.LocalHyperModel` may search for a method.

    Args:
        options: `{option: default choices}`, declared under the method only
            (BackLink's `alpha`); a `[search]` table may replace the choices.
        tail_option: the option that sets the linked tail's length
            (BackLink's `propagation_length`): per K its choices are those
            that the split candidates admit.
        cut: False for a method whose network a search never cuts (`bp`: K = 1).

    Example:

    ```python
    SearchSpace(options={"alpha": [0.0, 0.5, 1.0]}).num_blocks([2, 4])   # [2, 4]
    ```
    """

    options: dict = field(default_factory=dict)
    tail_option: str = None
    cut: bool = True

    def num_blocks(self, ks):
        """The K a search may give the method, among `ks`."""
        return list(ks) if self.cut else [1]


METHODS = Registry("method")


def register_method(method_class):
    """Class decorator: makes `method_class` available by its `name`
    (`build_model(method=name)`, `get_method`, config files)."""
    METHODS.register(method_class.name)(method_class)
    return method_class


class Method:
    """A local-training rule: the one `LocalModel.train_step` consults its hooks.

    A subclass sets the attributes and overrides the hooks its paper needs;
    every default is greedy local learning's. The contract in five groups:

    1. **Building** the network: `default_head`, `aux_heads`,
       `separate_output_block`, `configure`, `architecture_defaults`,
       `default_cuts`, `output_head`, `block_head`, `auxiliary_head`,
       `head_options`, `extra_blocks` (a label path).
    2. **Objective**: `default_loss`, `needs_images`, `block_loss`,
       `loss_weights`, `targets`, `decoders`, `prediction_loss`,
       `head_scores`, `head_prediction`,
       `extra_block_loss`, `extra_loss_name`, `extra_learning_rate_factor`.
    3. **Gradient flow**: `cut_gradients`, `linked_units`, `link`,
       `sent_loss` (backward links), `after_block_update`.
    4. **Constraints**: `validate`, `check_block_order`,
       `why_blocks_cannot_train_alone`; `schedulable`, `check_variable`,
       `bind_variable` (options changed during training).
    5. **Recipe and search**: `reference_recipe`, `search` (`SearchSpace`).

    Subclasses take their options (e.g. `alpha`) as keyword arguments, list
    their names in `options`, validate them in `__init__` and return them
    from `get_config`.

    Example:

    ```python
    class HalfLastLoss(Method):   # gll (every default) with the last block's loss halved
        name = "half_last"

        def loss_weights(self, num_blocks):
            return [1.0] * (num_blocks - 1) + [0.5]

    model = kl.build_model("resnet8", HalfLastLoss(), num_blocks=2)   # @register_method: by its name
    ```
    """

    name = None
    options = ()  # names of the keyword arguments the method accepts

    # -- 1. building --------------------------------------------------------
    # default_head: the auxiliary head when `build_model` gets none. aux_heads: whether blocks other
    # than the last get an auxiliary head and a local loss. separate_output_block: whether the output
    # layer is a block of its own (no units) after the K blocks, so the last block keeps an auxiliary
    # head (BWBPF); otherwise the last block's head is the output layer.
    default_head = "linear"
    aux_heads = True
    separate_output_block = False

    def configure(self, architecture=None, num_blocks=None, dataset=None):
        """Called by `build_model` once the network, its number of blocks and
        the dataset are known: options left to them (None) are resolved here
        (InfoPro's λ per network and K)."""

    def architecture_defaults(self):
        """Architecture options the method prefers (the user's options win;
        Associated Learning's hidden layers)."""
        return {}

    def default_cuts(self, architecture, num_units):
        """Where to cut when neither `num_blocks` nor `cuts` is given (None:
        one block; Associated Learning: its components)."""
        return None

    def output_head(self, num_classes, features_shape):
        """The network's output layer (the last block's head, or the output
        block's): GAP → Dense by default."""

        return LinearHead(num_classes, name="output_head")

    def block_head(self, index, architecture, num_classes):
        """Block `index`'s head when the method dictates it (None: the
        builder's default, an auxiliary head or the output head; Associated
        Learning: its bridges)."""
        return None

    def auxiliary_head(self, index, head, network):
        """Block `index`'s auxiliary head, given the default one (`head`) and
        the cut `network` (`Network`): where MAN, HPFF and AugLocal build
        theirs."""
        return head

    def head_options(self):
        """Extra keyword arguments of the auxiliary heads (InfoPro's `aux_loss`)."""
        return {}

    def extra_blocks(self, architecture, num_classes, num_blocks):
        """Blocks the method trains besides the network's, one per block or
        none (Associated Learning's label path): built, with heads."""
        return []

    # -- 2. objective -------------------------------------------------------
    # default_loss: every block head's loss when `compile` gets none (None: sparse categorical
    # cross-entropy on logits). needs_images: whether the losses also read the input images (their
    # target is then `{"labels": y, "images": x}`). extra_block_loss / extra_loss_name: the loss of the
    # extra blocks' heads and its logged name (`<name>_k`).
    default_loss = None
    needs_images = False
    extra_block_loss = None
    extra_loss_name = "extra_loss"

    def block_loss(self, index, num_blocks, loss):
        """The loss of block `index` (default: the compiled one for all)."""
        return loss

    def loss_weights(self, num_blocks):
        """The weight of each block's loss (`num_blocks` counts every block
        of the model, the output block included)."""
        return [1.0] * num_blocks

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

    def head_scores(self, index, num_blocks):
        """How block `index`'s head scores the classes (its accuracy is
        logged as `acc_k`): `"logits"` (its outputs are class scores, the
        default), `"decoded"` (through `head_prediction`: Associated
        Learning's bridges regress codes) or None (an embedding: no `acc_k`)."""
        return "logits"

    def head_prediction(self, model, index, outputs):
        """The class scores of block `index`'s head, from its `outputs` (logits;
        Associated Learning decodes a bridge's code)."""
        return outputs

    def extra_learning_rate_factor(self):
        """The extra blocks' learning rate ÷ the blocks' learning rate."""
        return 1.0

    # -- 3. gradient flow ---------------------------------------------------
    # cut_gradients: whether every block reads `stop_gradient` of the previous block's output (local
    # training) or the whole network is differentiated end to end (backprop).
    cut_gradients = True

    def linked_units(self, block_index, num_blocks):
        """How many units at the end of block `block_index` (its tail) also
        learn from the next block's error, mixed by `link` (0: none, the block
        learns from its own loss only; `WHOLE_BLOCK`: all of them)."""
        return 0

    def link(self, own_error, next_error):
        """The error a linked tail learns from, given the error of its own
        loss and the next block's error at the tail's output."""
        raise NotImplementedError(f"Method {self.name!r} has no backward links.")

    def sent_loss(self, index, num_blocks, loss):
        """The part of block `index`'s loss whose error at the block's input
        it sends back through a backward link (None: the whole loss)."""
        return None

    def after_block_update(self, model, index):
        """Runs in the training step right after block `index` applied its
        update (MAN's moving average)."""

    # -- 4. constraints -----------------------------------------------------
    # schedulable: the numeric options `LocalModel.method_variable` can turn into variables (changed
    # during training by `keras_local.callbacks.MethodHyperparameterScheduler`).
    schedulable = ()

    def validate(self, block_sizes):
        """Checks options against the split (number of units per block)."""

    def check_block_order(self, block_order):
        """Raises a `ValueError` if the method cannot train with this block order."""

    def why_blocks_cannot_train_alone(self, num_blocks):
        """Why a block cannot train on its own input and labels outside the
        model's step (`fit_greedy`, `fit_asynchronous`), in a sentence; None
        if it can."""
        if not self.cut_gradients:
            return "one loss trains every block end to end"
        if self.needs_images:
            return "its blocks' losses read the input images, which a block trained alone does not get"
        linked = [index for index in range(num_blocks) if self.linked_units(index, num_blocks)]
        if linked:
            return (
                f"the tails of blocks {linked} learn from the next block's error on the same batch, which a "
                f"block trained alone never receives"
            )
        return None

    def check_variable(self, name, block_order):
        """Raises a `ValueError` if option `name` cannot be scheduled with this block order."""

    def bind_variable(self, name, variable, model):
        """Makes the option `name` read `variable` from now on."""
        setattr(self, name, variable)

    # -- 5. recipe and search -----------------------------------------------
    search = SearchSpace()

    def reference_recipe(self, architecture):
        """The training recipe of the method's paper / reference code for
        `architecture` (`keras_local.recipes.Recipe`)."""
        raise NotImplementedError(f"Method {self.name!r} has no reference recipe.")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _renamed_head_scores(cls)
        old = {name: cls.__dict__[name] for name in ("search_defaults", "searched_tail_option") if name in cls.__dict__}
        if old:  # the declarations before 0.4
            warnings.warn(
                f"{cls.__name__}: search_defaults and searched_tail_option are deprecated and will be removed "
                f"in keras_local 0.5; declare search = SearchSpace(options=..., tail_option=...) instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            cls.search = SearchSpace(
                options=dict(old.get("search_defaults", cls.search.options)),
                tail_option=old.get("searched_tail_option", cls.search.tail_option),
                cut=cls.search.cut,
            )

    def get_config(self):
        return {}

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({options})"


def _renamed_head_scores(cls):
    """A subclass written before 0.4 (`heads_classify`, `head_classifies`) gets the `head_scores` they
    describe, with a DeprecationWarning; both names will be removed in keras_local 0.5."""
    old = [name for name in ("heads_classify", "head_classifies") if name in cls.__dict__]
    if not old:
        return
    warnings.warn(
        f"{cls.__name__}: {' and '.join(old)} are deprecated and will be removed in keras_local 0.5; define "
        f'head_scores(index, num_blocks) instead ("logits", "decoded" or None).',
        DeprecationWarning,
        stacklevel=3,
    )
    raw = cls.__dict__.get("heads_classify", True)
    classifies = cls.__dict__.get("head_classifies")

    def head_scores(self, index, num_blocks):
        if classifies is not None and not classifies(self, index, num_blocks):
            return None
        return "logits" if raw else "decoded"

    cls.head_scores = head_scores

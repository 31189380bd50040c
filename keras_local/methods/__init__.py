"""The registry of training methods: `list_methods()`, `get_method(name, **options)`."""

# Importing a method's module registers it (`@register_method` at its definition).
from keras_local.methods.associated import AssociatedLearning
from keras_local.methods.auglocal import AugLocal
from keras_local.methods.backlink import BackLink
from keras_local.methods.base import METHODS, Method, register_method
from keras_local.methods.bp import Backprop
from keras_local.methods.bwbpf import BlockwiseBPFree
from keras_local.methods.dgl import DecoupledGreedy
from keras_local.methods.gll import GreedyLocal
from keras_local.methods.infopro import InfoPro
from keras_local.methods.predsim import PredSim

__all__ = [
    "METHODS",
    "AssociatedLearning",
    "AugLocal",
    "BackLink",
    "Backprop",
    "BlockwiseBPFree",
    "DecoupledGreedy",
    "GreedyLocal",
    "InfoPro",
    "Method",
    "PredSim",
    "get_method",
    "list_methods",
    "method_option_names",
    "register_method",
]


def list_methods():
    """Names accepted by `build_model(method=...)`."""
    return METHODS.names()


def get_method(method, **options):
    """Returns a `Method` instance from a name (with options) or passes one through."""
    if isinstance(method, Method):
        if options:
            raise ValueError(
                f"Options {sorted(options)} were given with a Method instance {method!r}; "
                "pass them to its constructor instead."
            )
        return method
    method_class = METHODS.get(method)
    unknown = sorted(set(options) - set(method_class.options))
    if unknown:
        owners = {name: [other for other in METHODS.names() if name in METHODS.get(other).options] for name in unknown}
        where = "; ".join(f"{name!r} is an option of {', '.join(owners[name])}" for name in unknown if owners[name])
        raise ValueError(
            f"Method {method!r} has no option {', '.join(repr(name) for name in unknown)}; its options: "
            f"{', '.join(method_class.options) or 'none'}.{f' ({where}.)' if where else ''}"
        )
    try:
        return method_class(**options)
    except TypeError as error:
        raise ValueError(f"Invalid options {sorted(options)} for method {method!r}: {error}") from None


def method_option_names():
    """Every option name any registered method accepts (for config files)."""
    return sorted({name for method in METHODS.values() for name in method.options})

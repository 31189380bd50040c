"""End-to-end backpropagation: the baseline every table compares with."""

from keras_local.methods.base import Method


class Backprop(Method):
    """One loss, CE(o(h_K)), differentiated through every block; no aux heads.

    The network still has K blocks (each with its own optimizer), so it can be
    compared with local methods block by block.
    """

    name = "bp"
    cut_gradients = False
    aux_heads = False

"""Greedy local learning (GLL, "Greedy SL", BackLink's l = 0)."""

from keras_local.methods.base import Method


class GreedyLocal(Method):
    """Block k reads stop_gradient(x_{k-1}); θ(B_k) and θ(a_k) get ∇L_k only,
    with L_k = CE(a_k(h_k), y). The last block uses the output head."""

    name = "gll"
    cut_gradients = True
    aux_heads = True

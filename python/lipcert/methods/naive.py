"""`naive`: the product of exact (certified) operator norms of the layers (lipcert::naive_bound).

Hidden layers are measured p_in -> p_in; the last affine layer maps p_in -> p_out, so the product
bounds ||f(x) - f(y)||_{p_out} / ||x - y||_{p_in}.
"""
from __future__ import annotations

from .. import _core
from ..network import Network


def naive_bound(net: Network, p_in: float, p_out: float):
    upper, layers = _core.naive_bound(net._core, p_in, p_out)
    return upper, True, {"layers": layers}

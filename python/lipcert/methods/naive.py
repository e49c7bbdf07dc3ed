"""`naive`: the product of exact (certified) operator norms of the layers.

Hidden layers are measured p_in -> p_in; the last affine layer maps p_in -> p_out, so the product
bounds ||f(x) - f(y)||_{p_out} / ||x - y||_{p_in}.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..layers import Dense
from ..network import Network
from ._rounding import mul_up, product_up


def dense_matrix_or_none(net: Network, index: int):
    """The layer as a matrix where one can be formed (dense layers, small convolutions); None for
    large convolutions and pooling, which are bounded by the core without one."""
    layer = net.layers[index]
    if isinstance(layer, Dense):
        return layer.weight
    if _core.conv_is_unrollable(net._core, index):
        return _core.layer_dense_matrix(net._core, index)
    return None


def affine_layer_norm(net: Network, index: int, p: float, q: float) -> tuple[float, str]:
    """Certified ||A||_{p->q} of the linear part of affine layer `index`, and how it was obtained."""
    layer = net.layers[index]
    core = net._core
    if p == q == 2:
        matrix = dense_matrix_or_none(net, index)
        if matrix is None:
            return _core.layer_spectral_upper(core, index, 0.0)
        # LAPACK's SVD gives the estimate, the core's Cholesky proof the certified bound.
        return _core.certified_spectral_norm(matrix, float(np.linalg.norm(matrix, 2))), "cholesky"
    if isinstance(layer, Dense):
        lower, upper, exact, _ = _core.operator_norm(layer.weight, p, q)
        return upper, "closed-form" if exact else "bound"
    if p == q and p in (1.0, math.inf):
        return _core.layer_abs_sum_norm(core, index, p == 1.0), "closed-form"
    # Conv/pool between different norms: ||A||_{p->q} <= ||A||_{p->p} ||I||_{p->q}.
    base, how = affine_layer_norm(net, index, p, p)
    out_size = int(math.prod(net.layer_shapes()[index][1]))
    return mul_up(base, _core.norm_conversion_factor(out_size, p, q)), how


def naive_bound(net: Network, p_in: float, p_out: float):
    affine = [i for i, layer in enumerate(net.layers) if layer.is_affine]
    factors, per_layer = [], []
    for i, layer in enumerate(net.layers):
        if layer.is_activation:
            factors.append(layer.lipschitz_constant)
        elif layer.is_affine:
            q = p_out if i == affine[-1] else p_in
            value, how = affine_layer_norm(net, i, p_in, q)
            factors.append(value)
            per_layer.append({"layer": i, "kind": type(layer).__name__, "norm": value, "how": how})
    if not affine:  # activations / reshapes only: the identity between the two norms
        factors.append(_core.norm_conversion_factor(net.output_size, p_in, p_out))
    return product_up(factors), True, {"layers": per_layer}

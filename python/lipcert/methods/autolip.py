"""`autolip` (Scaman & Virmaux 2018): the product of layer spectral norms.

Spectral norms are estimated matrix-free in the C++ core, batched over layers: power iteration on
A^T A accelerated by Lanczos (Golub-Kahan bidiagonalisation with full reorthogonalisation), or plain
batched power iteration on the GPU for dense layers when asked. Each estimate (a lower estimate) is
then turned into a certified bound: a Cholesky proof
of s^2 I - A^T A > 0 for dense layers and small convolutions, the circulant (frequency-domain) bound
for large convolutions, a closed form for pooling. Other norms go through norm equivalence:
||J||_{p->q} <= ||I||_{p->2} ||J||_2 ||I||_{2->q}.
"""
from __future__ import annotations

import logging

from .. import _core
from .._cuda_loader import cuda_module
from ..layers import Conv2d, Dense, lipschitz_factor
from ..network import Network
from ._rounding import mul_up, product_up

logger = logging.getLogger("lipcert")

MAX_ITERATIONS = 300
TOLERANCE = 1e-12


def needs_estimate(net: Network, index: int) -> bool:
    """Large convolutions are certified in the frequency domain, which needs no estimate."""
    return not isinstance(net.layers[index], Conv2d) or _core.conv_is_unrollable(net._core, index)


def spectral_estimates(net: Network, indices: list[int], use_cuda: bool, seed: int):
    """(sigma, iterations, converged) per affine layer; sigma is a lower estimate, not certified
    (None for layers that need no estimate)."""
    wanted = [i for i in indices if needs_estimate(net, i)]
    results = {i: (None, 0, False) for i in indices}
    results.update(zip(wanted, _core.spectral_norm_estimates(net._core, wanted, MAX_ITERATIONS, TOLERANCE, seed)))
    if use_cuda:
        dense = [i for i in indices if isinstance(net.layers[i], Dense)]
        if dense:
            sigmas = cuda_module().batched_power_iteration([net.layers[i].weight for i in dense], 200, seed)
            for i, s in zip(dense, sigmas):
                cpu_sigma, iterations, converged = results[i]
                results[i] = (max(cpu_sigma, s), iterations, converged)
    return [results[i] for i in indices]


def autolip_bound(net: Network, p_in: float, p_out: float, use_cuda: bool = False, seed: int = 0):
    indices = [i for i, layer in enumerate(net.layers) if layer.is_affine]
    estimates = spectral_estimates(net, indices, use_cuda, seed)
    factors, per_layer, estimate_product = [], [], 1.0
    for i, (sigma, iterations, converged) in zip(indices, estimates):
        upper, how = _core.layer_spectral_upper(net._core, i, 0.0 if sigma is None else sigma)
        factors.append(upper)
        estimate_product = None if sigma is None or estimate_product is None else estimate_product * sigma
        per_layer.append({"layer": i, "kind": type(net.layers[i]).__name__, "estimate": sigma, "upper": upper,
                          "how": how, "iterations": iterations, "converged": converged})
    for layer in net.layers:
        if layer.is_activation:
            factors.append(lipschitz_factor(layer))
            if estimate_product is not None:
                estimate_product *= lipschitz_factor(layer)
    spectral = product_up(factors)
    conversion = mul_up(_core.norm_conversion_factor(net.input_size, p_in, 2.0),
                        _core.norm_conversion_factor(net.output_size, 2.0, p_out))
    stats = {"layers": per_layer, "estimate_product": estimate_product, "norm_conversion": conversion}
    return mul_up(spectral, conversion), True, stats

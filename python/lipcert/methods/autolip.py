"""`autolip` (Scaman & Virmaux 2018): the product of layer spectral norms.

On the CPU, spectral norms are estimated matrix-free in the C++ core, batched over layers: power
iteration on A^T A accelerated by Lanczos (Golub-Kahan bidiagonalisation with full
reorthogonalisation). Each estimate (a lower estimate) is then turned into a certified bound: a
Cholesky proof of s^2 I - A^T A > 0 for dense layers and small convolutions, the circulant
(frequency-domain) bound for large convolutions, a closed form for pooling. On the GPU (use_cuda),
dense layers and large convolutions (per frequency) are certified directly by Gram iteration with
rounding-error bounds, which needs no estimate. Other norms go through norm equivalence:
||J||_{p->q} <= ||I||_{p->2} ||J||_2 ||I||_{2->q}.
"""
from __future__ import annotations

import logging

from .. import _core
from .._cuda_loader import cuda_module
from ..layers import Conv2d, Dense
from ..network import Network
from ._rounding import mul_up, product_up

logger = logging.getLogger("lipcert")

MAX_ITERATIONS = 300
TOLERANCE = 1e-12


# From this many dense weight entries, or with a frequency-domain convolution, device="auto" certifies
# on the GPU (measured on an H100 against the 2-core CPU proof; see benchmarks/bench_gpu_bounds.py).
GPU_MIN_DENSE_ENTRIES = 1 << 20


def gpu_worthwhile(net: Network) -> bool:
    dense_entries = sum(layer.weight.size for layer in net.layers if isinstance(layer, Dense))
    return dense_entries >= GPU_MIN_DENSE_ENTRIES or any(frequency_domain_conv(net, i) for i in range(len(net.layers)))


def frequency_domain_conv(net: Network, index: int) -> bool:
    """A convolution too large to unroll: certified in the frequency domain, which needs no estimate."""
    return isinstance(net.layers[index], Conv2d) and not _core.conv_is_unrollable(net._core, index)


def spectral_estimates(net: Network, indices: list[int], seed: int):
    """(sigma, iterations, converged) per affine layer; sigma is a lower estimate, not certified
    (None for layers that need no estimate)."""
    wanted = [i for i in indices if not frequency_domain_conv(net, i)]
    results = {i: (None, 0, False) for i in indices}
    results.update(zip(wanted, _core.spectral_norm_estimates(net._core, wanted, MAX_ITERATIONS, TOLERANCE, seed)))
    return [results[i] for i in indices]


def gpu_layer_bounds(net: Network, indices: list[int]) -> dict:
    """Certified (upper, squarings) by Gram iteration on the GPU for dense layers and for the
    convolutions the CPU would bound in the frequency domain; other layers are left to the CPU."""
    cuda = cuda_module()
    dense = [i for i in indices if isinstance(net.layers[i], Dense)]
    bounds = dict(zip(dense, cuda.gram_spectral_upper([net.layers[i].weight for i in dense])))
    for i in indices:
        if frequency_domain_conv(net, i):
            bounds[i] = cuda.conv_gram_spectral_upper(net._core, i)
    return bounds


def autolip_bound(net: Network, p_in: float, p_out: float, use_cuda: bool = False, seed: int = 0):
    indices = [i for i, layer in enumerate(net.layers) if layer.is_affine]
    on_gpu = gpu_layer_bounds(net, indices) if use_cuda else {}
    on_cpu = [i for i in indices if i not in on_gpu]
    estimates = dict(zip(on_cpu, spectral_estimates(net, on_cpu, seed)))
    factors, per_layer, estimate_product = [], [], 1.0
    for i in indices:
        if i in on_gpu:
            upper, squarings = on_gpu[i]
            factors.append(upper)
            estimate_product = None
            per_layer.append({"layer": i, "kind": type(net.layers[i]).__name__, "estimate": None, "upper": upper,
                              "how": "gram-gpu", "iterations": squarings, "converged": True})
            continue
        sigma, iterations, converged = estimates[i]
        upper, how = _core.layer_spectral_upper(net._core, i, 0.0 if sigma is None else sigma)
        factors.append(upper)
        estimate_product = None if sigma is None or estimate_product is None else estimate_product * sigma
        per_layer.append({"layer": i, "kind": type(net.layers[i]).__name__, "estimate": sigma, "upper": upper,
                          "how": how, "iterations": iterations, "converged": converged})
    for layer in net.layers:
        if layer.is_activation:
            factors.append(layer.lipschitz_constant)
            if estimate_product is not None:
                estimate_product *= layer.lipschitz_constant
    spectral = product_up(factors)
    conversion = mul_up(_core.norm_conversion_factor(net.input_size, p_in, 2.0),
                        _core.norm_conversion_factor(net.output_size, 2.0, p_out))
    stats = {"layers": per_layer, "estimate_product": estimate_product, "norm_conversion": conversion,
             "device": "cuda" if use_cuda else "cpu"}
    return mul_up(spectral, conversion), True, stats

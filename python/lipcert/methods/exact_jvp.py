"""Exact Jacobian-vector products of deep piecewise-linear networks, in integer arithmetic.

The core certifies J(x) v in extended precision, bounding each rounding error and carrying the bound
forward through |W|. That bound grows with the product of the |W| norms, which on GLipSDP's 64-layer
MNIST MLPs is 1e39-1e57: no floating-point format proves their activation patterns. Weights, biases,
x and v are doubles, hence dyadic rationals, and Dense layers and ReLU/LeakyReLU/MaxMin keep them
dyadic, so the forward pass can be run exactly with Python integers: each vector is an integer array
N with one exponent e (value N 2^e). The pattern is then proved by the signs themselves, and the only
rounding left is that of the final norms, which is directed. Numbers grow by about 125 bits a layer;
mlp_L65_W64 (3e5 multiply-adds) takes about 0.4 s.
"""
from __future__ import annotations

import math
import sys
from typing import Optional, Tuple

import numpy as np

from ..layers import Dense, Flatten, LeakyReLU, MaxMin, ReLU
from ..network import Network

# Above this many multiply-adds the integer pass would take seconds; the caller goes without.
MAX_MULTIPLY_ADDS = 2e6

_LAYERS = (Dense, Flatten, ReLU, LeakyReLU, MaxMin)


def exact_jvp_applies(net: Network) -> bool:
    """Dense layers and piecewise-linear activations only, and few enough multiply-adds."""
    return all(isinstance(l, _LAYERS) for l in net.layers) and net._core.multiply_adds <= MAX_MULTIPLY_ADDS


def _dyadic(a) -> Tuple[np.ndarray, int]:
    """(N, e) with a == N 2^e exactly: N an object array of Python ints."""
    a = np.asarray(a, dtype=np.float64)
    mantissa, exponent = np.frexp(a)  # a = m 2^k with |m| in [0.5, 1): m 2^53 is an integer
    mantissa = (mantissa * 2.0**53).astype(np.int64).ravel().tolist()
    exponent = (exponent.astype(np.int64) - 53).ravel()
    e = int(exponent.min()) if exponent.size else 0
    shifts = (exponent - e).tolist()
    ints = np.empty(len(mantissa), dtype=object)
    ints[:] = [m << s for m, s in zip(mantissa, shifts)]
    return ints.reshape(a.shape), e


def _aligned(a: np.ndarray, ea: int, b: np.ndarray, eb: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """a and b rescaled to the smaller of their exponents (the one already there is left alone)."""
    if ea <= eb:
        return a, b * (1 << (eb - ea)), ea
    return a * (1 << (ea - eb)), b, eb


def _norm_bound(ints: np.ndarray, e: int, p: float, upward: bool) -> float:
    """A float bound (below, or above if upward) on the p-norm of ints 2^e."""
    magnitudes = [abs(int(n)) for n in ints]
    if p == 2.0:
        total = sum(n * n for n in magnitudes)
        k = max(0, 64 - total.bit_length() // 2)  # isqrt(total 4^k) keeps at least 64 bits
        root = math.isqrt(total << (2 * k)) + (1 if upward else 0)
        num, e = root, e - k
    else:
        num = sum(magnitudes) if p == 1.0 else max(magnitudes, default=0)
    try:
        value = float(num << e) if e >= 0 else num / (1 << -e)  # correctly rounded
    except OverflowError:
        return math.inf if upward else sys.float_info.max
    return max(0.0, math.nextafter(value, math.inf if upward else -math.inf))


def exact_directional_lower(net: Network, x: np.ndarray, v: np.ndarray, p: float, q: float) -> Optional[float]:
    """A float below ||J(x) v||_q / ||v||_p, from J(x) v computed exactly; None where a pre-activation
    is exactly at its kink (or a MaxMin pair ties): there the network need not be differentiable.
    Only for networks where exact_jvp_applies."""
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(v))):
        return None
    z, ez = _dyadic(np.ravel(x))
    t, et = _dyadic(np.ravel(v))
    v_norm = _norm_bound(t, et, p, upward=True)
    for layer in net.layers:
        if isinstance(layer, Dense):
            w, ew = _dyadic(layer.weight)
            b, eb = _dyadic(layer.bias)
            z, b, ez = _aligned(w.dot(z), ez + ew, b, eb)
            z = z + b
            t, et = w.dot(t), et + ew
        elif isinstance(layer, (ReLU, LeakyReLU)):
            if any(n == 0 for n in z):
                return None
            active = np.array([n > 0 for n in z], dtype=bool)
            slope = layer.negative_slope if isinstance(layer, LeakyReLU) else 0.0
            if slope == 0.0:
                shift, scale_active, scale_inactive = 0, 1, 0
            else:  # slope = s 2^es: the active side is scaled by 2^shift to share the exponent
                (s,), es = _dyadic([slope])
                shift = max(0, -es)
                scale_active, scale_inactive = 1 << shift, s << (es + shift)
            z = np.where(active, z * scale_active, z * scale_inactive)
            t = np.where(active, t * scale_active, t * scale_inactive)
            ez, et = ez - shift, et - shift
        elif isinstance(layer, MaxMin):
            half = z.size // 2
            first, second = z[:half], z[half:]
            if any(a == b for a, b in zip(first, second)):
                return None
            swap = np.array([a < b for a, b in zip(first, second)], dtype=bool)  # max goes first
            order = np.arange(z.size)
            order[:half][swap], order[half:][swap] = order[half:][swap], order[:half][swap]
            z, t = z[order], t[order]
        elif not isinstance(layer, Flatten):
            raise ValueError(f"exact_directional_lower: {type(layer).__name__} layers are not supported")
    if v_norm == 0.0:
        return None
    return max(0.0, math.nextafter(_norm_bound(t, et, q, upward=False) / v_norm, -math.inf))

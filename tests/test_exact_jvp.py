"""Exact Jacobian-vector products (lipcert.methods.exact_jvp), checked against rational arithmetic
(fractions.Fraction) and against the core's floating-point certification."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lipcert as lc
from lipcert import _core
from lipcert.methods.exact_jvp import exact_directional_lower, exact_jvp_applies
from lipcert.methods.lower import certify_point

from conftest import random_cnn, random_mlp

NORMS = [(2.0, 2.0), (1.0, math.inf), (math.inf, 1.0), (2.0, 1.0), (math.inf, math.inf)]
ACTIVATIONS = [lc.ReLU, lambda: lc.LeakyReLU(0.1), lambda: lc.LeakyReLU(-0.3), lc.MaxMin]


def fraction_jvp(net, x, v):
    """(J(x) v as Fractions, whether every kink is strict): a Fraction forward pass, layer by layer."""
    z, t = [Fraction(a) for a in x], [Fraction(a) for a in v]
    strict = True
    for layer in net.layers:
        if isinstance(layer, lc.Dense):
            w = [[Fraction(a) for a in row] for row in layer.weight]
            z = [sum((a * b for a, b in zip(row, z)), Fraction(bias)) for row, bias in zip(w, layer.bias)]
            t = [sum((a * b for a, b in zip(row, t)), Fraction(0)) for row in w]
        elif isinstance(layer, lc.MaxMin):
            half = len(z) // 2
            strict &= all(z[i] != z[i + half] for i in range(half))
            swap = [z[i] < z[i + half] for i in range(half)]
            for vec in (z, t):
                for i in range(half):
                    if swap[i]:
                        vec[i], vec[i + half] = vec[i + half], vec[i]
        elif layer.is_activation:
            slope = Fraction(layer.negative_slope) if isinstance(layer, lc.LeakyReLU) else Fraction(0)
            strict &= all(a != 0 for a in z)
            d = [Fraction(1) if a > 0 else slope for a in z]
            z, t = [a * b for a, b in zip(z, d)], [a * b for a, b in zip(t, d)]
    return t, strict


def fraction_norm_squared(t, p):
    """||t||_p^2 exactly."""
    if p == 2.0:
        return sum(a * a for a in t)
    return (sum(abs(a) for a in t) if p == 1.0 else max(abs(a) for a in t)) ** 2


def assert_below_and_close(lower, t, v, p, q):
    """lower <= ||t||_q / ||v||_p exactly, and within 1e-14 of it."""
    ratio_squared = fraction_norm_squared(t, q) / fraction_norm_squared([Fraction(a) for a in v], p)
    assert ratio_squared * Fraction(1 - 1e-14) <= Fraction(lower) ** 2 <= ratio_squared


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), act=st.integers(0, len(ACTIVATIONS) - 1), norm=st.integers(0, len(NORMS) - 1),
       depth=st.integers(1, 5))
def test_exact_lower_is_the_rational_norm_rounded_down(seed, act, norm, depth):
    rng = np.random.default_rng(seed)
    sizes = [3] + [4] * depth + [2]
    net = random_mlp(rng, sizes, ACTIVATIONS[act], scale=1.5)
    p, q = NORMS[norm]
    x, v = rng.normal(size=3), rng.normal(size=3)
    assert exact_jvp_applies(net)
    lower = exact_directional_lower(net, x, v, p, q)
    t, strict = fraction_jvp(net, x, v)
    assert strict and lower is not None
    assert_below_and_close(lower, t, v, p, q)
    core, verified, _, _ = _core.certified_directional_lower(net._core, x, v, p, q)
    if verified:
        assert core <= lower * (1 + 1e-15)


def test_a_kink_a_maxmin_tie_or_a_non_finite_point_is_not_certified():
    relu = lc.Network([lc.Dense(np.array([[1.0, -1.0]]), np.zeros(1)), lc.ReLU(), lc.Dense(np.ones((1, 1)))], (2,))
    assert exact_directional_lower(relu, np.array([1.0, 1.0]), np.array([1.0, 0.0]), 2.0, 2.0) is None
    assert exact_directional_lower(relu, np.array([1.0, 0.5]), np.array([1.0, 0.0]), 2.0, 2.0) == pytest.approx(1.0)
    maxmin = lc.Network([lc.Dense(np.eye(2), np.zeros(2)), lc.MaxMin(), lc.Dense(np.array([[1.0, 0.0]]))], (2,))
    assert exact_directional_lower(maxmin, np.array([0.3, 0.3]), np.array([1.0, 0.0]), 2.0, 2.0) is None
    assert exact_directional_lower(maxmin, np.array([0.3, 0.2]), np.array([1.0, 0.0]), 2.0, 2.0) == pytest.approx(1.0)
    assert exact_directional_lower(relu, np.array([np.inf, 0.5]), np.array([1.0, 0.0]), 2.0, 2.0) is None
    assert exact_directional_lower(relu, np.array([1.0, 0.5]), np.array([np.nan, 0.0]), 2.0, 2.0) is None


@pytest.mark.parametrize("scale, low, high", [(1e300, 1e308, np.finfo(float).max), (1e-300, 0.0, 0.0)])
def test_norms_beyond_the_float_range_are_bounded_not_overflowed(scale, low, high):
    # J = scale^2 = 1e600 or 1e-600: about the largest float is a lower bound on the first, 0 on the second.
    net = lc.Network([lc.Dense(np.array([[scale]]), np.zeros(1)), lc.ReLU(), lc.Dense(np.array([[scale]]))], (1,))
    assert low <= exact_directional_lower(net, np.ones(1), np.ones(1), 2.0, 2.0) <= high


def test_only_dense_piecewise_linear_networks_of_bounded_size_qualify():
    rng = np.random.default_rng(3)
    assert not exact_jvp_applies(random_cnn(rng))
    assert not exact_jvp_applies(random_mlp(rng, [3, 4, 2], lc.Tanh))
    assert not exact_jvp_applies(random_mlp(rng, [1500, 1500, 2]))


def test_deep_mlps_beyond_every_floating_point_proof_get_an_exact_witness(shared_data):
    # Error bounds carried through |W| reach 1e8 (binary128) on this 64-layer MLP: the core proves no
    # pattern, and before exact_jvp autolip's lower bound was 0.
    net = lc.load(shared_data / "glipsdp" / "mnist" / "mlp_L65_W16.onnx")
    x = np.random.default_rng(0).uniform(0, 1, size=net.input_size)
    jac = net.jacobian(x[None])[0]
    v = _core.operator_norm(jac, 2.0, 2.0)[3]
    assert not _core.certified_directional_lower(net._core, x, v, 2.0, 2.0)[1]
    true = np.linalg.norm(jac @ v) / np.linalg.norm(v)
    assert true * (1 - 1e-12) <= certify_point(net, x, 2.0, 2.0) <= true * (1 + 1e-12)
    b = lc.lipschitz(net, method="autolip", time_limit=5)
    assert b.witness is not None and 0 < b.lower <= b.upper
    assert b.lower <= np.linalg.norm(net.jacobian(b.witness[None])[0], 2) * (1 + 1e-12)

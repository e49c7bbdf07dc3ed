"""Certified norms of single matrices and layers against dense numpy computations."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipcert as lc
from conftest import exact_matrix_norm
from lipcert import _core

NORMS = [1.0, 2.0, math.inf]


@pytest.mark.parametrize("p,q", list(itertools.product(NORMS, NORMS)))
def test_operator_norm_brackets_the_exact_norm(p, q):
    rng = np.random.default_rng(10)
    for shape in [(3, 4), (6, 2), (1, 5), (5, 1), (9, 9)]:
        a = rng.normal(size=shape)
        lower, upper, exact, v = _core.operator_norm(a, p, q)
        true = exact_matrix_norm(a, p, q)
        assert lower <= true <= upper
        assert exact  # small matrices: every pair is exact
        assert upper - lower <= 1e-9 * true
        # the returned vector attains the lower bound
        assert np.linalg.norm(a @ v, q) / np.linalg.norm(v, p) >= lower


@pytest.mark.parametrize("p,q", [(2.0, 1.0), (math.inf, 1.0), (math.inf, 2.0)])
def test_hard_norm_pairs_on_large_matrices_give_certified_brackets(p, q):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(20, 18))
    lower, upper, exact, v = _core.operator_norm(a, p, q)
    assert not exact
    assert 0 < lower <= upper
    # a sampled lower bound over extreme points never exceeds the certified upper bound
    samples = rng.choice([-1.0, 1.0], size=(2000, 18)) if p == math.inf else rng.normal(size=(2000, 18))
    ratios = np.linalg.norm(samples @ a.T, q, axis=1) / np.linalg.norm(samples, p, axis=1)
    assert ratios.max() <= upper


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(1e-6, 1e6),
       st.sampled_from(["full", "rank one", "repeated"]))
def test_spectral_operator_norm_is_exact_on_either_side_of_the_gram_path(m, n, seed, scale, kind):
    """Matrices with a side of at most 32 take the Gram eigenvector path, the others an SVD: both give
    a certified bracket of the SVD's value within 1e-9 and a vector that attains the lower end."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, n)) * scale
    if kind == "rank one":
        a = np.outer(rng.normal(size=m), rng.normal(size=n)) * scale
    elif kind == "repeated":  # the top singular value twice: any vector of its 2-D space attains it
        u, _, vt = np.linalg.svd(a, full_matrices=False)
        s = np.linspace(1.0, 0.1, min(m, n)) * scale
        s[: min(2, s.size)] = scale
        a = (u * s) @ vt
    sigma = np.linalg.svd(a, compute_uv=False)[0]
    lower, upper, exact, v = _core.operator_norm(a, 2.0, 2.0)
    assert exact and lower <= sigma * (1 + 1e-12) and sigma <= upper
    assert upper - lower <= 1e-9 * sigma
    assert np.linalg.norm(a @ v) / np.linalg.norm(v) >= lower * (1 - 1e-12)


def test_spectral_operator_norm_of_a_zero_matrix():
    for shape in [(3, 5), (5, 3), (40, 50)]:
        lower, upper, exact, v = _core.operator_norm(np.zeros(shape), 2.0, 2.0)
        assert lower == upper == 0.0 and exact and v.shape == (shape[1],)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(1e-6, 1e6))
def test_certified_spectral_norm_is_above_svd_and_tight(m, n, seed, scale):
    a = np.random.default_rng(seed).normal(size=(m, n)) * scale
    sigma = np.linalg.svd(a, compute_uv=False)[0]
    certified = _core.certified_spectral_norm(a, sigma)
    assert certified >= sigma
    assert certified <= sigma * (1 + 1e-8)


def test_spectral_proof_fails_below_the_norm_and_recovers_from_low_estimates():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(30, 20))
    sigma = np.linalg.svd(a, compute_uv=False)[0]
    assert math.isinf(_core.prove_spectral_bound(a, sigma * (1 - 1e-6)))
    assert sigma <= _core.prove_spectral_bound(a, sigma * (1 + 1e-9)) <= sigma * (1 + 1e-8)
    # an estimate far too low (an unconverged power iteration) still ends in a tight certified bound
    assert sigma <= _core.certified_spectral_norm(a, sigma * 0.5) <= sigma * (1 + 1e-8)


def test_spectral_norm_of_a_rank_one_matrix_with_huge_entries():
    u = np.arange(1, 6, dtype=float)
    a = np.outer(u, u) * 1e150
    sigma = np.linalg.norm(u) ** 2 * 1e150
    assert sigma <= _core.certified_spectral_norm(a, sigma) <= sigma * (1 + 1e-8)
    assert _core.certified_spectral_norm(np.zeros((3, 4)), 0.0) == 0.0


def _conv_net(rng, ic, oc, k, stride, pad, size):
    return lc.Network([lc.Conv2d(rng.normal(size=(oc, ic, k, k)), None, stride, pad)], (ic, size, size))


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1), (1, 2)])
def test_conv_circulant_bound_is_above_the_unrolled_norm(stride, pad):
    rng = np.random.default_rng(13)
    net = _conv_net(rng, 3, 4, 3, stride, pad, 7)
    dense = _core.layer_dense_matrix(net._core, 0)
    sigma = np.linalg.svd(dense, compute_uv=False)[0]
    bound = _core.conv_circulant_spectral_bound(net._core, 0)
    assert bound >= sigma
    assert bound <= 1.5 * sigma  # not vacuous


def test_layer_norms_match_dense_matrices():
    rng = np.random.default_rng(14)
    net = lc.Network([lc.Conv2d(rng.normal(size=(4, 2, 3, 3)), None, 2, 1), lc.AvgPool2d(2, 1)], (2, 8, 8))
    for index in range(2):
        dense = _core.layer_dense_matrix(net._core, index)
        for columns, p in ((True, 1), (False, np.inf)):
            value = _core.layer_abs_sum_norm(net._core, index, columns)
            exact = np.linalg.norm(dense, p)
            assert exact <= value <= exact * (1 + 1e-12)
        sigma = np.linalg.svd(dense, compute_uv=False)[0]
        upper, how = _core.layer_spectral_upper(net._core, index, sigma)
        assert sigma <= upper


def test_spectral_estimates_are_tight_lower_estimates():
    rng = np.random.default_rng(15)
    net = lc.Network([lc.Dense(rng.normal(size=(40, 30))), lc.ReLU(),
                      lc.Dense(rng.normal(size=(20, 40)))], (30,))
    results = _core.spectral_norm_estimates(net._core, [0, 2], 300, 1e-12, 0)
    for (sigma, iterations, converged), layer in zip(results, (net.layers[0], net.layers[2])):
        true = np.linalg.svd(layer.weight, compute_uv=False)[0]
        assert sigma <= true * (1 + 1e-12)
        assert sigma >= true * (1 - 1e-10) and converged


def test_norm_conversion_factors():
    assert _core.norm_conversion_factor(16, math.inf, 2.0) >= 4.0
    assert _core.norm_conversion_factor(16, 2.0, 1.0) >= 4.0
    assert _core.norm_conversion_factor(16, math.inf, 1.0) == 16.0
    assert _core.norm_conversion_factor(16, 1.0, 2.0) == 1.0

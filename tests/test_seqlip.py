"""seqlip against independent truths: each pair's maximum by enumerating every activation vertex of
numpy's SVD split, the exact global constant of small ReLU nets (enumerated patterns), the max over all
patterns (which SeqLip bounds too), autolip (which it never exceeds) and sampled Jacobians."""
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import brute_force_global_constant, random_mlp
from hypothesis import given, settings
from hypothesis import strategies as st

import lipcert as lc
from lipcert.methods.slope_restricted import slope_restricted_problem


def split(weights):
    """SeqLip's split W_k = L_k R_k (U S | V'; U S^1/2 | S^1/2 V'; U | S V') by numpy's SVD."""
    out = []
    for k, w in enumerate(weights):
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        power = 1.0 if k == 0 else (0.0 if k == len(weights) - 1 else 0.5)
        out.append((u * s ** power, (s ** (1 - power))[:, None] * vt))
    return out


def enumerated_pair_maxima(net):
    """max over vertices D of ||R_j D L_{j-1}||_2, for every hidden layer j, by enumeration."""
    problem = slope_restricted_problem(net)
    factors = split(problem.weights)
    maxima = []
    for j, (alpha, beta) in enumerate(zip(problem.alpha, problem.beta), start=1):
        right, left = factors[j][1], factors[j - 1][0]
        maxima.append(max(np.linalg.norm(right @ np.diag(d) @ left, 2)
                          for d in itertools.product([alpha, beta], repeat=right.shape[1])))
    return maxima


def max_over_all_patterns(net):
    """The largest l2 norm of W_l D_l ... D_1 W_0 over every 0/1 pattern, realisable or not."""
    dense = [layer.weight for layer in net.layers if isinstance(layer, lc.Dense)]
    best = 0.0
    for pattern in itertools.product([0.0, 1.0], repeat=sum(w.shape[0] for w in dense[:-1])):
        jac, offset = dense[0], 0
        for w in dense[1:]:
            d = np.array(pattern[offset:offset + jac.shape[0]])
            offset += jac.shape[0]
            jac = w @ (d[:, None] * jac)
        best = max(best, np.linalg.norm(jac, 2))
    return best


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("activation", [lc.ReLU, lambda: lc.LeakyReLU(0.2), lc.Tanh, lc.Sigmoid])
def test_each_pair_is_the_enumerated_maximum(seed, activation):
    net = random_mlp(np.random.default_rng(seed), [3, 7, 6, 5, 2], activation=activation)
    b = lc.lipschitz(net, method="seqlip")
    pairs = b.stats["pairs"]
    assert b.certified and b.stats["pairs_solved"]
    for pair, exact in zip(pairs, enumerated_pair_maxima(net)):
        assert exact <= pair["upper"] <= exact * (1 + 1e-6)
        assert pair["attained"] == pytest.approx(exact, rel=1e-12)
    assert b.upper >= math.prod(p["upper"] for p in pairs)


@pytest.mark.parametrize("seed", range(6))
def test_bounds_every_pattern_and_the_exact_constant_and_never_exceeds_autolip(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [2, 5, 4, 2], scale=2.0)
    b = lc.lipschitz(net, method="seqlip")
    exact = brute_force_global_constant(net, 2, 2)
    assert b.certified and b.upper >= max_over_all_patterns(net) >= exact * (1 - 1e-12)
    assert b.lower <= exact * (1 + 1e-9)
    assert b.upper <= lc.lipschitz(net, method="autolip").upper * (1 + 1e-9)


@pytest.mark.parametrize("norm", [1, math.inf, (math.inf, 1)])
def test_other_norms_go_through_norm_equivalence(norm):
    net = random_mlp(np.random.default_rng(3), [3, 5, 4, 2])
    b = lc.lipschitz(net, method="seqlip", norm=norm)
    l2 = lc.lipschitz(net, method="seqlip", norm=2)
    assert b.certified and b.upper >= brute_force_global_constant(net, *b.norm) * (1 - 1e-12)
    assert b.upper >= l2.upper * (1 - 1e-12)
    assert b.stats["norm_conversion"]


def test_an_unfinished_search_is_still_certified():
    # 48 neurons per layer cannot be enumerated in 0.2 s: the bound is the searches' open nodes.
    rng = np.random.default_rng(0)
    net = random_mlp(rng, [10, 48, 48, 48, 3])
    b = lc.lipschitz(net, method="seqlip", time_limit=0.2)
    assert b.certified and not b.stats["pairs_solved"]
    assert any(p["upper"] > p["attained"] * (1 + 1e-6) for p in b.stats["pairs"])
    assert b.lower <= b.upper <= lc.lipschitz(net, method="autolip").upper * (1 + 1e-9)
    x = rng.normal(size=(200, 10))
    assert np.linalg.norm(net.jacobian(x), ord=2, axis=(1, 2)).max() <= b.upper
    # SeqLip's own (greedy) value is reported as an estimate, not as the bound.
    assert b.stats["l2_estimate"] <= b.upper
    # A longer search only tightens: a child's bound never exceeds its parent's.
    assert b.upper <= lc.lipschitz(net, method="seqlip", time_limit=0.01).upper * (1 + 1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=st.lists(st.integers(1, 6), min_size=3, max_size=5),
       activation=st.sampled_from(["relu", "leaky", "tanh", "sigmoid", "maxmin"]))
def test_lower_bound_sampled_jacobians_upper_bound(seed, sizes, activation):
    rng = np.random.default_rng(seed)
    if activation == "maxmin":
        sizes = [sizes[0]] + [2 * s for s in sizes[1:-1]] + [sizes[-1]]
    make = {"relu": lc.ReLU, "leaky": lambda: lc.LeakyReLU(0.3), "tanh": lc.Tanh, "sigmoid": lc.Sigmoid,
            "maxmin": lc.MaxMin}[activation]
    net = random_mlp(rng, sizes, activation=make, scale=1.5)
    b = lc.lipschitz(net, method="seqlip", time_limit=1.0)
    x = rng.normal(size=(64, sizes[0])) * 3
    sampled = np.linalg.norm(net.jacobian(x), ord=2, axis=(1, 2)).max()
    assert b.certified and b.lower <= b.upper and sampled <= b.upper
    assert b.upper <= lc.lipschitz(net, method="autolip").upper * (1 + 1e-9)


def test_convolutions_are_unrolled_and_a_linear_network_is_its_matrix():
    rng = np.random.default_rng(1)
    net = lc.Network([lc.Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1), lc.ReLU(), lc.AvgPool2d(2), lc.Flatten(),
                      lc.Dense(rng.normal(size=(3, 8)))], input_shape=(1, 4, 4))
    b = lc.lipschitz(net, method="seqlip")
    x = rng.normal(size=(100, 1, 4, 4))
    assert b.certified and np.linalg.norm(net.jacobian(x), ord=2, axis=(1, 2)).max() <= b.upper
    assert b.upper <= lc.lipschitz(net, method="autolip").upper * (1 + 1e-9)
    w = rng.normal(size=(3, 4))
    linear = lc.lipschitz(lc.Network([lc.Dense(w)], input_shape=(4,)), method="seqlip")
    assert linear.upper == pytest.approx(np.linalg.norm(w, 2), rel=1e-12) and linear.upper >= np.linalg.norm(w, 2)


def test_output_selects_a_margin_and_rank_deficient_weights_are_covered():
    rng = np.random.default_rng(2)
    w1 = rng.normal(size=(5, 3))
    w1[3] = w1[0]  # a repeated row: W_1 has rank 3 < 5
    w2, w3 = rng.normal(size=(4, 5)), rng.normal(size=(3, 4))
    net = lc.Network([lc.Dense(w1), lc.ReLU(), lc.Dense(w2), lc.ReLU(), lc.Dense(w3)], input_shape=(3,))
    c = np.array([[1.0, -1.0, 0.0]])
    b = lc.lipschitz(net, method="seqlip", output=c)
    margin = lc.Network([lc.Dense(w1), lc.ReLU(), lc.Dense(w2), lc.ReLU(), lc.Dense(c @ w3)], input_shape=(3,))
    assert b.upper >= max_over_all_patterns(margin) >= brute_force_global_constant(margin, 2, 2)


def test_auto_uses_seqlip_where_sdp_does_not_fit():
    net = random_mlp(np.random.default_rng(0), [20, 400, 400, 400, 10])
    b = lc.lipschitz(net, method="auto", time_limit=2.0)
    assert "seqlip" in b.stats["candidates"] and "sdp" not in b.stats["candidates"]
    assert b.stats["candidates"]["seqlip"] <= b.stats["candidates"]["autolip"] * (1 + 1e-9)
    small = random_mlp(np.random.default_rng(0), [3, 5, 2])
    assert "seqlip" not in lc.lipschitz(small, method="auto").stats["candidates"]


def test_cli_bound_seqlip(tmp_path):
    net = random_mlp(np.random.default_rng(6), [3, 5, 4, 2])
    net.save(tmp_path / "net.npz")
    done = subprocess.run([sys.executable, "-m", "lipcert", "bound", str(tmp_path / "net.npz"), "--method", "seqlip",
                           "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["method"] == "seqlip" and result["certified"]
    assert result["upper"] == pytest.approx(lc.lipschitz(net, method="seqlip").upper, rel=1e-12)


def test_a_convolution_too_large_to_unroll_is_refused_by_name():
    net = lc.Network([lc.Conv2d(np.ones((64, 64, 3, 3)) * 0.01, padding=1), lc.ReLU(), lc.Flatten(),
                      lc.Dense(np.ones((2, 64 * 32 * 32)) * 1e-3)], input_shape=(64, 32, 32))
    with pytest.raises(lc.UnsupportedLayerError, match="Conv2d"):
        lc.lipschitz(net, method="seqlip")

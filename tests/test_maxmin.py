"""MaxMin (GroupSort of size 2) in the IR: forward and Jacobians against numpy and torch, every
global method against the exact constant of small networks (enumerated pair orders), branch and
bound on boxes against the same enumeration, and the methods that refuse it."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lipcert as lc
from conftest import exact_matrix_norm, ref_forward


def maxmin_mlp(rng, sizes, scale=1.0):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lc.Dense(rng.normal(size=(sizes[i + 1], sizes[i])) * scale / math.sqrt(sizes[i]),
                               rng.normal(size=sizes[i + 1]) * 0.5))
        if i < len(sizes) - 2:
            layers.append(lc.MaxMin())
    return lc.Network(layers, (sizes[0],))


def exact_global_constant(net, p, q, lower=None, upper=None):
    """The max of ||J|| over the orders of all pairs (and the signs of all ReLU/LeakyReLU neurons)
    whose region has interior in R^n, or in the box [lower, upper] (scipy's LP): the exact Lipschitz
    constant of a small Dense network with MaxMin, ReLU and LeakyReLU layers, independent of lipcert."""
    from scipy.optimize import linprog

    n = net.input_size
    # An activation layer's switches: one per pair (MaxMin: a - b), one per neuron (elementwise: z).
    switches = []
    for layer in net.layers:
        if isinstance(layer, lc.Dense):
            width = layer.weight.shape[0]
        elif layer.is_activation:
            switches.append(width // 2 if isinstance(layer, lc.MaxMin) else width)
    best = 0.0
    for signs in itertools.product([1.0, -1.0], repeat=sum(switches)):  # +1: a >= b (kept) / z >= 0
        a, c = np.eye(n), np.zeros(n)
        rows, rhs, offset = [], [], 0
        for layer in net.layers:
            if isinstance(layer, lc.Dense):
                a, c = layer.weight @ a, layer.weight @ c + layer.bias
                continue
            if isinstance(layer, lc.MaxMin):
                h = a.shape[0] // 2
                s = np.array(signs[offset:offset + h])
                # s (a - b) > 0, as -s (a - b) < 0 over the affine pieces.
                rows.append(-s[:, None] * (a[:h] - a[h:]))
                rhs.append(s * (c[:h] - c[h:]))
                keep = (s > 0)[:, None]
                a = np.vstack([np.where(keep, a[:h], a[h:]), np.where(keep, a[h:], a[:h])])
                keep = keep[:, 0]
                c = np.concatenate([np.where(keep, c[:h], c[h:]), np.where(keep, c[h:], c[:h])])
            else:
                h = a.shape[0]
                s = np.array(signs[offset:offset + h])
                rows.append(-s[:, None] * a)
                rhs.append(s * c)
                slope = layer.negative_slope if isinstance(layer, lc.LeakyReLU) else 0.0
                d = np.where(s > 0, 1.0, slope)
                a, c = d[:, None] * a, d * c
            offset += h
        norm = exact_matrix_norm(a, p, q)
        if norm <= best:
            continue
        g, h_ = np.vstack(rows), np.concatenate(rhs)
        if lower is not None:
            g, h_ = np.vstack([g, np.eye(n), -np.eye(n)]), np.concatenate([h_, upper, -np.asarray(lower)])
        lengths = np.linalg.norm(g, axis=1)
        res = linprog(np.r_[np.zeros(n), -1.0], A_ub=np.c_[g, lengths], b_ub=h_,
                      bounds=[(None, None)] * n + [(0, 1)], method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            best = norm
    return best


def test_forward_and_jacobian_match_references():
    rng = np.random.default_rng(0)
    net = lc.Network([lc.Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), padding=1), lc.MaxMin(),
                      lc.Flatten(), lc.Dense(rng.normal(size=(6, 4 * 5 * 5))), lc.MaxMin(),
                      lc.Dense(rng.normal(size=(3, 6)))], (2, 5, 5))
    x = rng.normal(size=(4, 2, 5, 5))
    np.testing.assert_allclose(net(x), ref_forward(net, x), rtol=1e-12, atol=1e-12)
    jac = net.jacobian(x)
    step = 1e-6
    basis = np.eye(net.input_size).reshape(-1, 2, 5, 5)
    for k in range(4):
        diff = np.stack([(ref_forward(net, x[k:k + 1] + step * e[None]) - ref_forward(net, x[k:k + 1] - step * e[None]))[0]
                         / (2 * step) for e in basis], axis=1)
        np.testing.assert_allclose(jac[k], diff, atol=1e-6)


@pytest.mark.parametrize("norm,methods", [(2, ("naive", "autolip", "sdp")), (1, ("naive",)), (math.inf, ("naive",))])
def test_maxmin_alone_is_exactly_1_lipschitz(norm, methods):
    net = lc.Network([lc.MaxMin()], (4,))
    for method in methods:  # autolip and sdp work in l2 (other norms through ||I|| factors)
        b = lc.lipschitz(net, method=method, norm=norm)
        assert b.certified and 1.0 <= b.upper <= 1.0 + 1e-6
        assert b.lower == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm", [2, 1, math.inf])
def test_global_methods_bound_the_exact_constant(seed, norm):
    rng = np.random.default_rng(seed)
    net = maxmin_mlp(rng, [3, 4, 4, 2])
    exact = exact_global_constant(net, norm, norm)
    bounds = {m: lc.lipschitz(net, method=m, norm=norm) for m in ("naive", "autolip", "sdp", "sdp-layer")}
    for method, b in bounds.items():
        assert b.certified and b.upper >= exact * (1 - 1e-9), method
        assert b.lower <= exact * (1 + 1e-9), method
    if norm == 2:  # LipSDP relaxes the product of norms, never loosens it
        assert bounds["sdp"].upper <= bounds["naive"].upper * (1 + 1e-6)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.sampled_from([2, 4, 6]), depth=st.integers(1, 3))
def test_sdp_bound_holds_on_sampled_jacobians(seed, width, depth):
    rng = np.random.default_rng(seed)
    net = maxmin_mlp(rng, [3] + [width] * depth + [2], scale=2.0)
    b = lc.lipschitz(net, method="sdp")
    assert lc.verify_certificate(net, b)
    x = rng.normal(size=(200, 3)) * 3
    sampled = max(np.linalg.norm(j, 2) for j in net.jacobian(x))
    assert b.upper >= sampled * (1 - 1e-12)
    assert b.lower <= b.upper


def test_witness_attains_the_lower_bound():
    rng = np.random.default_rng(3)
    net = maxmin_mlp(rng, [3, 6, 4, 2])
    b = lc.lipschitz(net, method="autolip")
    assert b.lower > 0
    assert np.linalg.norm(net.jacobian(b.witness[None])[0], 2) == pytest.approx(b.lower, rel=1e-9)


def test_methods_that_do_not_take_maxmin_say_so():
    rng = np.random.default_rng(0)
    net = maxmin_mlp(rng, [3, 4, 2])
    with pytest.raises(lc.UnsupportedLayerError, match="MaxMin.*global constant"):
        lc.lipschitz(net, method="bab")
    with pytest.raises(lc.InvalidNetworkError, match="MaxMin.*even"):
        lc.Network([lc.Dense(np.ones((3, 3))), lc.MaxMin()], (3,))
    with pytest.raises(lc.InvalidNetworkError, match="MaxMin.*channels.*even"):
        lc.Network([lc.MaxMin()], (3, 2, 2))


def mixed_mlp(rng, leaky):
    """Dense 3-6, MaxMin, Dense 6-4, ReLU or LeakyReLU(-0.4), Dense 4-2."""
    return lc.Network([lc.Dense(rng.normal(size=(6, 3)), rng.normal(size=6) * 0.5), lc.MaxMin(),
                       lc.Dense(rng.normal(size=(4, 6)) / 2, rng.normal(size=4) * 0.5),
                       lc.LeakyReLU(-0.4) if leaky else lc.ReLU(), lc.Dense(rng.normal(size=(2, 4)))], (3,))


@pytest.mark.parametrize("p,q", [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 1.0), (2.0, math.inf)])
def test_bab_matches_brute_force_on_maxmin_networks(p, q):
    rng = np.random.default_rng(5)
    nets = [maxmin_mlp(rng, [2, 6, 4, 2]), maxmin_mlp(rng, [3, 6, 2]), mixed_mlp(rng, False), mixed_mlp(rng, True)]
    for net in nets:
        n = net.input_size
        lo, hi = -np.full(n, 0.7), np.full(n, 0.5)
        exact = exact_global_constant(net, p, q, lo, hi)
        b = lc.lipschitz(net, method="bab", norm=(p, q), domain=lc.Box(lo, hi), tol=1e-10)
        assert b.exact and b.upper == pytest.approx(exact, rel=1e-9)
        assert b.lower <= exact * (1 + 1e-12) and exact <= b.upper * (1 + 1e-12)
        assert np.all(b.witness >= lo) and np.all(b.witness <= hi)
        assert exact_matrix_norm(net.jacobian(b.witness[None])[0], p, q) == pytest.approx(b.lower, rel=1e-9)
    # the box cuts regions off: the constant on it is below the global one somewhere
    assert any(exact_global_constant(net, 2, 2, -np.full(net.input_size, 0.7), np.full(net.input_size, 0.5))
               < exact_global_constant(net, 2, 2) * (1 - 1e-6) for net in nets)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), nodes=st.integers(1, 30), p=st.sampled_from([1.0, 2.0, math.inf]),
       mixed=st.booleans())
def test_bab_on_maxmin_keeps_lower_le_exact_le_upper_at_every_node_limit(seed, nodes, p, mixed):
    rng = np.random.default_rng(seed)
    net = mixed_mlp(rng, seed % 2 == 0) if mixed else maxmin_mlp(rng, [3, 6, 4, 2], scale=2.0)
    lo, hi = -np.ones(3), np.ones(3) * 0.6
    exact = exact_global_constant(net, p, p, lo, hi)
    r = lc._core.lipschitz_bab(net._core, lo, hi, p, p, 1e-9, 60, nodes, 0.0, np.zeros(3), None)
    assert r["lower"] <= exact * (1 + 1e-12) and exact <= r["upper"] * (1 + 1e-12)


def test_bab_on_a_convolutional_maxmin_network_bounds_every_sampled_jacobian():
    rng = np.random.default_rng(2)
    net = lc.Network([lc.Conv2d(rng.normal(size=(4, 1, 3, 3)) / 3, rng.normal(size=4) * 0.1, padding=1), lc.MaxMin(),
                      lc.Flatten(), lc.Dense(rng.normal(size=(4, 4 * 3 * 3)) / 4, rng.normal(size=4) * 0.1),
                      lc.MaxMin(), lc.Dense(rng.normal(size=(2, 4)))], (1, 3, 3))
    centre = rng.normal(size=(1, 3, 3))
    b = lc.lipschitz(net, method="bab", domain=lc.Ball(centre, 0.05), tol=1e-8, time_limit=60)
    assert b.certified and b.exact
    x = centre[None] + rng.uniform(-0.05, 0.05, size=(300, 1, 3, 3))
    sampled = max(np.linalg.norm(j, 2) for j in net.jacobian(x))
    assert sampled <= b.upper * (1 + 1e-12) and b.lower <= b.upper
    assert np.linalg.norm(net.jacobian(b.witness.reshape(1, 1, 3, 3))[0], 2) == pytest.approx(b.lower, rel=1e-9)
    assert np.abs(b.witness.ravel() - centre.ravel()).max() <= 0.05


def test_auto_takes_bab_on_a_box_for_maxmin_networks():
    rng = np.random.default_rng(0)
    net = maxmin_mlp(rng, [3, 4, 2])
    auto = lc.lipschitz(net, method="auto", domain=lc.Box(-np.ones(3), np.ones(3)))
    assert "bab" in auto.stats["candidates"] and auto.certified and auto.exact


def test_certify_a_maxmin_network():
    rng = np.random.default_rng(1)
    net = maxmin_mlp(rng, [4, 6, 3])
    x = rng.normal(size=(20, 4))
    y = net(x).argmax(axis=1)
    r = lc.certify(net, x, y, eps=0.01)
    assert r.clean_accuracy == 1.0 and np.all(r.radii > 0)
    assert r.margins_certified  # the core's interval forward pass goes through MaxMin


def test_save_and_load_keep_maxmin(tmp_path):
    net = maxmin_mlp(np.random.default_rng(2), [3, 4, 2])
    net.save(tmp_path / "net.npz")
    back = lc.load(tmp_path / "net.npz")
    assert isinstance(back.layers[1], lc.MaxMin)
    x = np.random.default_rng(3).normal(size=(5, 3))
    np.testing.assert_array_equal(back(x), net(x))

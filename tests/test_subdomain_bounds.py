"""The branch-and-bound subdomain primitive: certified pre-activation bounds and Jacobian sets over a
box with a partial activation assignment, checked against sampled points and brute force."""
import math

import numpy as np
import pytest

import lipcert as lc
from conftest import exact_matrix_norm, random_cnn, random_mlp
from lipcert import _core

NORMS = [1.0, 2.0, math.inf]


def pre_activations(net, x):
    """Inputs of every activation layer at the points x (numpy reference)."""
    out, h = [], np.asarray(x, dtype=float).reshape((len(x),) + net.input_shape)
    for layer in net.layers:
        if layer.is_activation:
            out.append(h.reshape(len(x), -1).copy())
        h = lc.Network([layer], h.shape[1:])(h) if not isinstance(layer, lc.Flatten) else h.reshape(len(x), -1)
    return out


def bound(net, lo, hi, states=None, p=2.0, q=2.0, linear_relaxation=True):
    bounder = _core.CpuSubdomainBounder(net._core, linear_relaxation=linear_relaxation)
    return _core.bound_subdomains(net._core, np.atleast_2d(lo), np.atleast_2d(hi), [states] if states else [], p, q,
                                  bounder)[0]


@pytest.mark.parametrize("p,q", [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 1.0)])
def test_box_bounds_contain_sampled_pre_activations_and_jacobians(p, q):
    rng = np.random.default_rng(40)
    for net in (random_mlp(rng, [4, 12, 10, 3], lambda: lc.LeakyReLU(0.1)), random_cnn(rng, lc.ReLU)):
        lo = rng.normal(size=net.input_size) * 0.3
        hi = lo + 0.2
        b = bound(net, lo, hi, p=p, q=q)
        assert b["feasible"]
        x = lo + (hi - lo) * rng.random((300, net.input_size))
        for z, zl, zu in zip(pre_activations(net, x), b["pre_lower"], b["pre_upper"]):
            assert np.all(z >= zl) and np.all(z <= zu)
        jac = net.jacobian(x)
        assert np.all(np.abs(jac - b["jacobian_center"]) <= b["jacobian_radius"])
        assert max(exact_matrix_norm(j, p, q) if net.input_size <= 6 else _core.operator_norm(j, p, q)[0]
                   for j in jac) <= b["norm_upper"]


@pytest.mark.parametrize("activation", [lc.ReLU, lambda: lc.LeakyReLU(0.1), lambda: lc.LeakyReLU(-0.7),
                                        lambda: lc.LeakyReLU(1.5)])
def test_linear_relaxation_bounds_are_sound_and_tighter_than_intervals(activation):
    """CROWN bounds after free neurons: every sampled point (box corners included, where linear bounds
    are attained) that satisfies the assignment lies inside them, and they are inside the interval
    bounds, strictly so on the deep layers."""
    rng = np.random.default_rng(46)
    net = random_mlp(rng, [3, 16, 16, 16, 16, 2], activation)
    gained = 0.0
    for _ in range(6):
        center = rng.normal(size=3)
        lo, hi = center - 0.3 * rng.random(3), center + 0.3 * rng.random(3)
        # the signs at one point of the box, kept on the first layer's first few neurons
        signs = [np.where(z[0] > 0, 1, -1) for z in pre_activations(net, (lo + (hi - lo) * rng.random(3))[None])]
        states = [np.zeros(z.size, np.int8).tolist() for z in signs]
        states[0][:5] = signs[0][:5].tolist()
        tight, loose = bound(net, lo, hi, states), bound(net, lo, hi, states, linear_relaxation=False)
        assert tight["feasible"] and loose["feasible"]
        corners = lo + (hi - lo) * np.array(np.meshgrid(*[[0.0, 1.0]] * 3)).reshape(3, -1).T
        x = np.vstack([corners, lo + (hi - lo) * rng.random((3000, 3))])
        pres = pre_activations(net, x)
        inside = np.all(np.sign(pres[0][:, :5]) == signs[0][:5], axis=1)
        assert inside.sum() > 50
        for z, zl, zu, il, iu in zip(pres, tight["pre_lower"], tight["pre_upper"], loose["pre_lower"], loose["pre_upper"]):
            assert np.all(z[inside] >= zl) and np.all(z[inside] <= zu)
            assert np.all(zl >= il) and np.all(zu <= iu)
        gained += np.sum(loose["pre_upper"][-1] - loose["pre_lower"][-1]) / np.sum(tight["pre_upper"][-1] - tight["pre_lower"][-1])
        jac = net.jacobian(x[inside])
        assert np.all(np.abs(jac - tight["jacobian_center"]) <= tight["jacobian_radius"])
        assert tight["norm_upper"] <= loose["norm_upper"]
    assert gained / 6 > 1.5


def test_maxmin_pair_assignments_give_sound_bounds_and_jacobian_sets():
    """Pairs kept or swapped by the assignment (state +1: a >= b) or left free: every sampled point
    that satisfies it lies inside the bounds and its Jacobian inside the set; with every pair
    assigned at a point, the set is that point's Jacobian alone."""
    rng = np.random.default_rng(47)
    net = lc.Network([lc.Dense(rng.normal(size=(8, 3)), rng.normal(size=8) * 0.3), lc.MaxMin(),
                      lc.Dense(rng.normal(size=(6, 8)) / 2, rng.normal(size=6) * 0.3), lc.MaxMin(),
                      lc.Dense(rng.normal(size=(2, 6)))], (3,))
    for trial in range(6):
        lo = rng.normal(size=3)
        hi = lo + 0.5
        point = lo + (hi - lo) * rng.random(3)
        order = [np.where(z[0, :z.shape[1] // 2] >= z[0, z.shape[1] // 2:], 1, -1)
                 for z in pre_activations(net, point[None])]
        states = [np.zeros(2 * o.size, np.int8) for o in order]
        every = trial >= 4  # the last trials assign every pair
        assigned = order[0].size if every else 2
        states[0][:assigned] = order[0][:assigned]
        if every:
            states[1][:order[1].size] = order[1]
        b = bound(net, lo, hi, [st.tolist() for st in states])
        assert b["feasible"]
        x = np.vstack([point, lo + (hi - lo) * rng.random((4000, 3))])
        pres = pre_activations(net, x)
        inside = np.ones(len(x), bool)
        for z, st in zip(pres, states):
            h = z.shape[1] // 2
            diff = z[:, :h] - z[:, h:]
            inside &= np.all((st[:h] == 0) | (np.sign(diff) == st[:h]), axis=1)
        assert inside[0] and inside.sum() > 20
        for z, zl, zu in zip(pres, b["pre_lower"], b["pre_upper"]):
            assert np.all(z[inside] >= zl) and np.all(z[inside] <= zu)
        jac = net.jacobian(x[inside])
        assert np.all(np.abs(jac - b["jacobian_center"]) <= b["jacobian_radius"])
        if every:
            assert not b["unstable"] and np.abs(b["jacobian_radius"]).max() < 1e-12
            np.testing.assert_allclose(b["jacobian_center"], jac[0], rtol=1e-12, atol=1e-12)
            assert len(b["region_h"]) == states[0].size // 2 + states[1].size // 2
        else:
            assert all(u[0] != 0 or u[1] >= assigned for u in b["unstable"])  # assigned pairs are not split again
            assert all(u[1] < net.layers[2 * u[0]].weight.shape[0] // 2 for u in b["unstable"])  # pairs by index
    bad = [[0, 0, 0, 0, 1, 0, 0, 0], []]
    with pytest.raises(ValueError, match="one per pair"):
        bound(net, lo, hi, bad)


def test_negative_leaky_slope_interval_images_are_sound():
    rng = np.random.default_rng(45)
    net = random_mlp(rng, [3, 8, 6, 2], lambda: lc.LeakyReLU(-0.7))
    lo, hi = -np.ones(3), np.ones(3)
    b = bound(net, lo, hi)
    x = lo + (hi - lo) * rng.random((2000, 3))
    for z, zl, zu in zip(pre_activations(net, x), b["pre_lower"], b["pre_upper"]):
        assert np.all(z >= zl) and np.all(z <= zu)
    assert np.all(np.abs(net.jacobian(x) - b["jacobian_center"]) <= b["jacobian_radius"])


@pytest.mark.parametrize("p", NORMS)
def test_root_bound_is_above_the_exact_local_constant(p):
    rng = np.random.default_rng(41)
    net = random_mlp(rng, [2, 8, 6, 2])
    lo, hi = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    b = bound(net, lo, hi, p=p, q=p)
    # a dense grid over the box visits every activation region of this small net
    g = np.stack(np.meshgrid(np.linspace(-0.5, 0.5, 200), np.linspace(-0.5, 0.5, 200)), -1).reshape(-1, 2)
    sampled = max(exact_matrix_norm(j, p, p) for j in net.jacobian(g))
    assert sampled <= b["norm_upper"]


def test_fixing_the_sampled_pattern_makes_the_set_a_single_exact_jacobian():
    rng = np.random.default_rng(42)
    net = random_mlp(rng, [3, 7, 5, 2])
    x = rng.normal(size=(1, 3))
    states = [np.where(z[0] > 0, 1, -1).astype(np.int8).tolist() for z in pre_activations(net, x)]
    b = bound(net, np.full(3, -np.inf), np.full(3, np.inf), states)
    jac = net.jacobian(x)[0]
    assert b["feasible"] and not b["unstable"]
    np.testing.assert_allclose(b["jacobian_center"], jac, rtol=1e-14, atol=1e-15)
    assert np.all(b["jacobian_radius"] <= 1e-12 * np.abs(jac).max())
    sigma = np.linalg.svd(jac, compute_uv=False)[0]
    assert sigma <= b["norm_upper"] <= sigma * (1 + 1e-9)


def test_assignments_tighten_bounds_and_contradictions_are_infeasible():
    net = lc.Network([lc.Dense(np.array([[1.0], [-1.0]]), np.array([0.0, 0.0])), lc.ReLU(),
                      lc.Dense(np.array([[2.0, 3.0]]))], (1,))
    free = bound(net, [-1.0], [1.0])
    assert len(free["unstable"]) == 2 and free["norm_upper"] >= 3.0
    # z1 = x active and z2 = -x active together hold only at x = 0 (the slopes are 2 and -3)
    active = bound(net, [0.5], [1.0], [[1, -1]])
    assert active["feasible"] and active["norm_upper"] == pytest.approx(2.0, rel=1e-12)
    assert not bound(net, [0.5], [1.0], [[-1, 0]])["feasible"]  # z1 = x >= 0.5 cannot be inactive


def test_global_domain_keeps_every_free_neuron_unstable():
    net = random_mlp(np.random.default_rng(43), [2, 5, 2])
    b = bound(net, np.full(2, -np.inf), np.full(2, np.inf))
    assert len(b["unstable"]) == 5
    assert b["norm_upper"] >= lc.lipschitz(net, method="naive").lower


def test_smooth_activations_and_bad_assignments_are_rejected():
    net = random_mlp(np.random.default_rng(44), [2, 4, 1], lc.Tanh)
    with pytest.raises(ValueError, match="not a piecewise-linear activation"):
        bound(net, np.zeros(2), np.ones(2))
    net = random_mlp(np.random.default_rng(44), [2, 4, 1])
    with pytest.raises(ValueError, match="4 neurons"):
        bound(net, np.zeros(2), np.ones(2), [[1, 0]])

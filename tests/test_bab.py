"""method="bab": exact local constants by branch and bound, against brute-force enumeration of
activation regions and the published LipBaB values."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lipcert as lc
from conftest import brute_force_global_constant, exact_matrix_norm, random_mlp

NORMS = [1.0, 2.0, math.inf]

# Published exact local constants (LipBaB, Bhowmick et al. 2021), see shared/data/README.md.
LIPBAB = {
    "SDnet_(10,15,10,3)": (0.1, {2.0: 9.530716922306004, 1.0: 10.41286850374477, math.inf: 16.274810805318676}),
    "SDnet_(10,20,15,10,3)": (0.1, {2.0: 40.05651016370293, 1.0: 48.04897158493324, math.inf: 72.28569774866806}),
    "SDnet_(10,30,30,30,3)": (0.1, {2.0: 19.462799793264388, 1.0: 19.369311332018757, math.inf: 39.11036425646691}),
    "iris_net_(4,5,5,3)": (1.0, {2.0: 6.771454513402937, 1.0: 5.958048912394726, math.inf: 12.605085581416922}),
}


def load_lipbab(directory, name):
    """LipBaB's networks: scikit-learn coefs_ / intercepts_ saved as numpy object arrays."""
    return lc.from_sklearn(np.load(directory / f"{name}_weights.npy", allow_pickle=True),
                           np.load(directory / f"{name}_biases.npy", allow_pickle=True))


@pytest.mark.parametrize("name", sorted(LIPBAB))
@pytest.mark.parametrize("p", NORMS)
def test_lipbab_networks_reproduce_the_published_exact_values(shared_data, name, p):
    net = load_lipbab(shared_data / "lipbab", name)
    side, values = LIPBAB[name]
    box = lc.Box(np.zeros(net.input_size), np.full(net.input_size, side))
    b = lc.lipschitz(net, method="bab", norm=p, domain=box, tol=1e-9, time_limit=120)
    assert b.exact and b.certified
    assert b.lower <= values[p] * (1 + 1e-12) and values[p] <= b.upper * (1 + 1e-12)
    assert b.upper == pytest.approx(values[p], rel=1e-9)
    jac = net.jacobian(b.witness[None])[0]
    assert b.lower <= exact_matrix_norm(jac, p, p) if p != math.inf or net.input_size <= 12 else True
    assert np.all(b.witness >= 0) and np.all(b.witness <= side)


@pytest.mark.parametrize("p,q", [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 1.0), (2.0, math.inf)])
def test_bab_matches_brute_force_on_small_boxes(p, q):
    rng = np.random.default_rng(60)
    for sizes in ([2, 8, 2], [3, 5, 4, 2]):
        net = random_mlp(rng, sizes)
        lo, hi = -np.full(sizes[0], 0.7), np.full(sizes[0], 0.5)
        exact = brute_force_global_constant(net, p, q, lo, hi)
        b = lc.lipschitz(net, method="bab", norm=(p, q), domain=lc.Box(lo, hi), tol=1e-10)
        assert b.exact
        assert b.lower <= exact * (1 + 1e-12) and exact <= b.upper * (1 + 1e-12)
        assert b.upper == pytest.approx(exact, rel=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), hidden=st.integers(2, 6), nodes=st.integers(1, 40),
       p=st.sampled_from(NORMS), leaky=st.booleans(), bisection=st.sampled_from([0, 1, 4]),
       tightening_after=st.sampled_from([-1, 0, 5]))
def test_lower_le_exact_le_upper_at_every_node_limit(seed, hidden, nodes, p, leaky, bisection, tightening_after):
    from lipcert import _core

    rng = np.random.default_rng(seed)
    act = (lambda: lc.LeakyReLU(0.2)) if leaky else lc.ReLU
    net = random_mlp(rng, [2, hidden, hidden, 2], act)
    lo, hi = rng.uniform(-1, 0, 2), rng.uniform(0, 1, 2)
    exact = brute_force_global_constant(net, p, p, lo, hi) if not leaky else None
    r = _core.lipschitz_bab(net._core, lo, hi, p, p, 0.0, 30.0, nodes, 0.0, np.zeros(2), None,
                            input_bisection=bisection, lp_tightening_after=tightening_after)
    assert r["lower"] <= r["upper"]
    if exact is not None:
        assert r["lower"] <= exact * (1 + 1e-12) and exact <= r["upper"] * (1 + 1e-12)
    if r["lower"] > 0:
        jac = net.jacobian(r["witness"][None])[0]
        assert r["lower"] <= exact_matrix_norm(jac, p, p) * (1 + 1e-12)
        assert np.all(r["witness"] >= lo) and np.all(r["witness"] <= hi)


@pytest.mark.parametrize("p,q", [(2.0, 2.0), (1.0, 1.0), (math.inf, 1.0)])
def test_input_bisection_matches_brute_force(p, q):
    """Boxes halved down to their smallest and neuron splits after: exact on boxes and l1 balls."""
    from lipcert import _core

    rng = np.random.default_rng(61)
    for bisection in (1, 4):
        net = random_mlp(rng, [2, 5, 5, 2])
        lo, hi = -np.ones(2), np.ones(2)
        center, radius = rng.uniform(-0.3, 0.3, 2), 0.8
        for ball in (None, (center, radius)):
            exact = brute_force_global_constant(net, p, q, lo, hi, l1_ball=ball)
            r = _core.lipschitz_bab(net._core, lo, hi, p, q, 1e-10, 60.0, 10_000_000, 0.0, np.zeros(2), None,
                                    l1_center=None if ball is None else center, l1_radius=radius,
                                    input_bisection=bisection)
            assert r["exact"]
            assert r["lower"] <= exact * (1 + 1e-12) and exact <= r["upper"] * (1 + 1e-12)
            assert r["upper"] == pytest.approx(exact, rel=1e-9)
            assert exact_matrix_norm(net.jacobian(r["witness"][None])[0], p, q) >= r["lower"]


@pytest.mark.parametrize("p,q", [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 1.0)])
def test_lp_tightening_fixes_neurons_and_matches_brute_force(p, q):
    """Neurons whose sign an LP proves on a node's region are assigned instead of split: the same exact
    values as the brute force on boxes and l1 balls, in fewer nodes."""
    from lipcert import _core

    rng = np.random.default_rng(63)
    fixed = 0
    for sizes in ([3, 6, 5, 2], [4, 5, 6, 2]):
        net = random_mlp(rng, sizes)
        n = sizes[0]
        lo, hi = -np.full(n, 0.8), np.full(n, 0.6)
        center, radius = rng.uniform(-0.2, 0.2, n), 0.9
        for ball in (None, (center, radius)):
            exact = brute_force_global_constant(net, p, q, lo, hi, l1_ball=ball)
            runs = [_core.lipschitz_bab(net._core, lo, hi, p, q, 1e-10, 60.0, 10_000_000, 0.0, np.zeros(n), None,
                                        l1_center=None if ball is None else center, l1_radius=radius,
                                        lp_tightening_after=after) for after in (-1, 0)]
            for r in runs:
                assert r["exact"]
                assert r["lower"] <= exact * (1 + 1e-12) and exact <= r["upper"] * (1 + 1e-12)
                assert r["upper"] == pytest.approx(exact, rel=1e-9)
                assert exact_matrix_norm(net.jacobian(r["witness"][None])[0], p, q) >= r["lower"]
                assert np.all(r["witness"] >= lo) and np.all(r["witness"] <= hi)
                assert ball is None or np.abs(r["witness"] - center).sum() <= radius
            assert runs[0]["fixed_by_lp"] == 0
            fixed += runs[1]["fixed_by_lp"]
    assert fixed > 0


def test_lp_tightening_starts_after_its_node_count():
    """Short searches go without LP sign fixing (its LPs cost more than the nodes they save there); the
    engine's default threshold is what lipschitz() reports."""
    from lipcert import _core

    net = random_mlp(np.random.default_rng(64), [4, 40, 40, 2])
    lo, hi = np.full(4, -0.5), np.full(4, 0.5)
    fixed = {}
    for after in (0, 10_000):
        r = _core.lipschitz_bab(net._core, lo, hi, 2.0, 2.0, 0.0, 30.0, 300, 0.0, np.zeros(4), None,
                                lp_tightening_after=after)
        assert r["lp_tightening_after"] == after and r["nodes"] < 10_000
        fixed[after] = r["fixed_by_lp"]
    assert fixed[0] > 0 and fixed[10_000] == 0
    default = _core.lipschitz_bab(net._core, lo, hi, 2.0, 2.0, 0.0, 1.0, 1, 0.0, np.zeros(4), None)
    b = lc.lipschitz(net, method="bab", domain=lc.Box(lo, hi), tol=1e-6, time_limit=20)
    assert b.stats["lp_tightening_after"] == default["lp_tightening_after"] > 0
    with pytest.raises(ValueError, match="lp_tightening_after"):
        _core.lipschitz_bab(net._core, lo, hi, 2.0, 2.0, 0.0, 1.0, 10, 0.0, np.zeros(4), None, lp_tightening_after=-2)


def test_low_dimensional_inputs_get_input_bisection_by_default():
    rng = np.random.default_rng(62)
    for n, expected in ((2, 4), (3, 0)):
        net = random_mlp(rng, [n, 6, 6, 2])
        b = lc.lipschitz(net, method="bab", domain=lc.Ball(np.zeros(n), 1.0), tol=1e-9)
        assert b.exact and b.stats["input_bisection"] == expected
    with pytest.raises(ValueError, match="input_bisection"):
        from lipcert import _core

        _core.lipschitz_bab(net._core, -np.ones(3), np.ones(3), 2.0, 2.0, 1e-6, 1.0, 100, 0.0, np.zeros(3), None,
                            input_bisection=-1)


def test_small_searches_close_unseeded_and_the_others_are_seeded(monkeypatch):
    """lipschitz(method="bab") searches first without the sampling seed: a search that closes within
    PROBE_NODES returns at once; one that does not starts again from the seed (or from the first
    search's lower bound, if higher), to the same exact value. On a box and on all of R^n."""
    import lipcert.methods.bab as bab_module

    net = random_mlp(np.random.default_rng(65), [3, 6, 4, 2])
    lo, hi = np.full(3, -0.6), np.full(3, 0.4)
    default = bab_module.PROBE_NODES
    for domain, exact in ((lc.Box(lo, hi), brute_force_global_constant(net, 2.0, 2.0, lo, hi)),
                          (None, brute_force_global_constant(net, 2.0, 2.0))):
        for probe_nodes, seeded in ((default, False), (1, True)):
            monkeypatch.setattr(bab_module, "PROBE_NODES", probe_nodes)
            b = lc.lipschitz(net, method="bab", domain=domain, tol=1e-10)
            assert b.exact and b.upper == pytest.approx(exact, rel=1e-9)
            assert b.lower <= exact * (1 + 1e-12) and exact <= b.upper * (1 + 1e-12)
            assert ("samples" in b.stats["lower_search"]) is seeded
            assert exact_matrix_norm(net.jacobian(b.witness[None])[0], 2.0, 2.0) == pytest.approx(b.lower, rel=1e-9)


def test_time_limit_returns_the_best_certified_pair(shared_data):
    net = load_lipbab(shared_data / "lipbab", "SDnet_(10,30,30,30,3)")
    box = lc.Box(np.zeros(10), np.full(10, 0.1))
    b = lc.lipschitz(net, method="bab", norm=2, domain=box, tol=1e-9, time_limit=1.0)
    assert b.certified and 0 < b.lower <= 19.462799793264388 * (1 + 1e-12) <= b.upper * (1 + 1e-12)
    assert b.stats["status"] in ("time_limit", "converged")


def test_leaves_reached_without_an_lp_are_proved_empty_not_left_open(shared_data):
    # The LPs run only on nodes that are split, so leaves reach certification unchecked; on this net
    # (l-inf) the largest of them have empty regions, and must be dropped by a proof instead of
    # stalling the search.
    net = load_lipbab(shared_data / "lipbab", "SDnet_(10,30,30,30,3)")
    box = lc.Box(np.zeros(10), np.full(10, 0.1))
    b = lc.lipschitz(net, method="bab", norm=math.inf, domain=box, tol=1e-9, time_limit=60)
    assert b.exact and abs(b.upper - 39.11036425646691) <= 1e-9 * 39.11036425646691
    assert b.stats["pruned_by_lp"] > 0


def test_a_global_bound_caps_bab_where_the_search_is_far_from_closing():
    # A 64-dimensional l2 question in 0.3 s: the search's own bound stays above the global product.
    net = random_mlp(np.random.default_rng(3), [64, 32, 32, 10])
    ball = lc.Ball(np.full(64, 0.5), 0.2, math.inf)
    b = lc.lipschitz(net, method="bab", norm=2, domain=ball, time_limit=0.3)
    autolip = lc.lipschitz(net, method="autolip")
    assert b.certified and b.lower <= b.upper <= autolip.upper < b.stats["search_upper"]
    assert b.stats["upper_from"] in ("naive", "autolip")


def test_auto_uses_bab_on_bounded_domains_and_is_tighter():
    net = random_mlp(np.random.default_rng(61), [3, 10, 10, 2])
    box = lc.Box(np.zeros(3), np.full(3, 0.2))
    auto = lc.lipschitz(net, method="auto", domain=box, tol=1e-9)
    assert auto.method == "bab" and auto.exact
    assert auto.upper <= lc.lipschitz(net, method="autolip").upper


def test_farkas_certificate_proves_only_empty_polytopes():
    from lipcert import _core

    lo, hi = np.zeros(2), np.ones(2)
    zero = np.zeros((1, 2))
    # x1 + x2 <= -0.5 is empty in the unit box; x1 + x2 <= 0.5 is not
    assert _core.prove_infeasible(np.array([[1.0, 1.0]]), np.array([-0.5]), zero, np.zeros(1), lo, hi)
    assert not _core.prove_infeasible(np.array([[1.0, 1.0]]), np.array([0.5]), zero, np.zeros(1), lo, hi)
    # an error bound large enough to make the set possibly non-empty defeats the proof
    assert not _core.prove_infeasible(np.array([[1.0, 1.0]]), np.array([-0.5]), zero, np.array([1.0]), lo, hi)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("p", [1, 2, math.inf])
def test_l1_balls_match_brute_force_and_the_witness_is_inside(seed, p):
    rng = np.random.default_rng(70 + seed)
    net = random_mlp(rng, [3, 5, 4, 2], scale=2.0)
    center, radius = rng.normal(size=3) * 0.5, 0.8
    b = lc.lipschitz(net, method="bab", norm=p, domain=lc.Ball(center, radius, p=1), tol=1e-9)
    exact = brute_force_global_constant(net, p, p, center - radius, center + radius, l1_ball=(center, radius))
    assert b.exact and b.lower <= exact * (1 + 1e-9) and b.upper >= exact * (1 - 1e-9)
    assert b.upper == pytest.approx(exact, rel=1e-8)
    assert lc.Ball(center, radius, p=1).contains(b.witness)
    assert exact_matrix_norm(net.jacobian(b.witness[None])[0], p, p) == pytest.approx(b.lower, rel=1e-9)
    # the l1 ball is strictly inside its box: the box's constant may be larger, never smaller
    box = lc.lipschitz(net, method="bab", norm=p, domain=lc.Ball(center, radius), tol=1e-9)
    assert box.upper >= b.lower


def test_a_witness_an_ulp_past_the_ball_is_pulled_inside_and_certified_again(monkeypatch):
    import lipcert.methods.bab as bab_module

    net = random_mlp(np.random.default_rng(71), [3, 5, 2])
    ball = lc.Ball(np.full(3, 0.1), 0.25)
    engine = bab_module._core.lipschitz_bab

    def past_the_ball(*args, **kwargs):  # the engine's box is rounded outward: its corner may lie outside
        result = engine(*args, **kwargs)
        result["witness"] = np.nextafter(ball.center + ball.radius, np.inf)
        return result

    monkeypatch.setattr(bab_module._core, "lipschitz_bab", past_the_ball)
    b = lc.lipschitz(net, method="bab", domain=ball, tol=1e-9)
    assert not ball.contains(np.nextafter(ball.center + ball.radius, np.inf)) and ball.contains(b.witness)
    assert b.lower > 0 and b.lower == pytest.approx(np.linalg.norm(net.jacobian(b.witness[None])[0], 2), rel=1e-9)


@pytest.mark.parametrize("kwargs,error", [
    (dict(domain=lc.Ball(np.zeros(3), 0.1, p=2)), NotImplementedError),
])
def test_unsupported_domains_are_clear_errors(kwargs, error):
    net = random_mlp(np.random.default_rng(62), [3, 4, 2])
    with pytest.raises(error, match="bab"):
        lc.lipschitz(net, method="bab", **kwargs)


def test_smooth_activations_are_rejected_by_bab():
    net = random_mlp(np.random.default_rng(63), [3, 4, 2], lc.Tanh)
    with pytest.raises(lc.UnsupportedLayerError, match="Tanh"):
        lc.lipschitz(net, method="bab", domain=lc.Box(np.zeros(3), np.ones(3)))


# ---- domain=None: the exact global constant --------------------------------------------------

def deep_narrow_mlp(seed):
    """Random MLPs of 1-3 narrow hidden layers with biases of mixed scale: many of their activation
    patterns are realised only at infinity, which the global search must prove irrelevant."""
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 4))] + [int(rng.integers(2, 6)) for _ in range(int(rng.integers(1, 4)))]
    sizes += [int(rng.integers(1, 3))]
    act = (lambda: lc.LeakyReLU(float(rng.uniform(-0.5, 0.5)))) if rng.random() < 0.3 else lc.ReLU
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(lc.Dense(rng.normal(size=(sizes[i + 1], sizes[i])),
                               rng.normal(size=sizes[i + 1]) * rng.choice([0.1, 1.0, 10.0])))
        if i < len(sizes) - 2:
            layers.append(act())
    return lc.Network(layers, (sizes[0],)), rng


@pytest.mark.parametrize("seed", range(24))
def test_global_bab_matches_brute_force_over_all_of_rn(seed):
    net, rng = deep_narrow_mlp(1000 + seed)
    p, q = (float(rng.choice(NORMS)) for _ in range(2))
    exact = brute_force_global_constant(net, p, q)
    b = lc.lipschitz(net, method="bab", norm=(p, q), domain=None, tol=1e-10, time_limit=30)
    assert b.certified and b.lower <= exact * (1 + 1e-12) and exact <= b.upper * (1 + 1e-12)
    assert b.exact and b.upper == pytest.approx(exact, rel=1e-9), b.stats["status"]
    assert b.lower == pytest.approx(exact_matrix_norm(net.jacobian(b.witness[None])[0], p, q), rel=1e-9)


def test_global_bab_reproduces_exlipbab_on_its_iris_network(shared_data):
    net = load_lipbab(shared_data / "exlipbab", "iris_net_(4x6x6x3)_ReLU")
    b = lc.lipschitz(net, method="bab", domain=None, tol=1e-9, time_limit=120)
    assert b.exact and b.upper == pytest.approx(11.634355134114875, rel=1e-9)  # shared/data/README.md
    assert b.lower == pytest.approx(np.linalg.norm(net.jacobian(b.witness[None])[0], 2), rel=1e-9)


def test_global_bab_finds_a_region_far_from_the_origin():
    # slope 6 only beyond x = 1000; sampling near the origin sees 1 (and -2 beyond 1e7)
    net = lc.Network([lc.Dense(np.ones((3, 1)), np.array([-1000.0, 0.0, -1e7])), lc.ReLU(),
                      lc.Dense(np.array([[5.0, 1.0, -3.0]]), np.zeros(1))], (1,))
    b = lc.lipschitz(net, method="bab", domain=None, tol=1e-9)
    assert b.exact and b.upper == pytest.approx(6.0, rel=1e-9) and b.lower == pytest.approx(6.0, rel=1e-9)
    assert 1000 < b.witness[0] < 1e7


@pytest.mark.parametrize("layers", [
    lambda rng: [lc.ReLU(), lc.Dense(rng.normal(size=(2, 3)), rng.normal(size=2))],
    lambda rng: [lc.Dense(rng.normal(size=(4, 3)), rng.normal(size=4)), lc.ReLU(),
                 lc.Dense(rng.normal(size=(3, 4)), rng.normal(size=3)), lc.ReLU()],
    lambda rng: [lc.Dense(rng.normal(size=(4, 3)), rng.normal(size=4)), lc.Dense(rng.normal(size=(4, 4)),
                 rng.normal(size=4)), lc.LeakyReLU(0.3), lc.Dense(rng.normal(size=(2, 4)), rng.normal(size=2))],
])
def test_global_bab_takes_networks_that_start_or_end_with_an_activation(layers):
    rng = np.random.default_rng(81)
    net = lc.Network(layers(rng), (3,))
    exact = brute_force_global_constant(net, 2.0, 2.0)
    b = lc.lipschitz(net, method="bab", domain=None, tol=1e-10)
    assert b.exact and b.upper == pytest.approx(exact, rel=1e-9)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), nodes=st.integers(1, 60), p=st.sampled_from(NORMS))
def test_global_lower_le_exact_le_upper_at_every_node_limit(seed, nodes, p):
    from lipcert import _core

    net, _ = deep_narrow_mlp(seed)
    exact = brute_force_global_constant(net, p, p)
    r = _core.lipschitz_bab_global(net._core, p, p, 0.0, 30.0, nodes, 0.0, np.zeros(net.input_size), None)
    assert r["lower"] <= exact * (1 + 1e-12) and exact <= r["upper"] * (1 + 1e-12)
    if r["lower"] > 0:
        assert r["lower"] <= exact_matrix_norm(net.jacobian(r["witness"][None])[0], p, p) * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_global_bab_on_a_small_cnn_matches_the_brute_force_of_its_unrolled_mlp(seed):
    """Convolutions and 2x2 pooling are unrolled by the engine; the truth here unrolls them with torch
    (each layer applied to the unit images) and enumerates the MLP's activation patterns."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(90 + seed)
    conv_w, conv_b = rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2) * 0.3
    dense_w, dense_b = rng.normal(size=(2, 2)), rng.normal(size=2)
    cnn = lc.Network([lc.Conv2d(conv_w, conv_b, stride=1, padding=0), lc.ReLU(), lc.AvgPool2d(2), lc.Flatten(),
                      lc.Dense(dense_w, dense_b)], (1, 3, 3))
    unit_images = torch.eye(9, dtype=torch.float64).reshape(9, 1, 3, 3)
    conv = torch.nn.functional.conv2d(unit_images, torch.from_numpy(conv_w))  # (9, 2, 2, 2), no bias
    unit_maps = torch.eye(8, dtype=torch.float64).reshape(8, 2, 2, 2)
    pool = torch.nn.functional.avg_pool2d(unit_maps, 2).reshape(8, 2)
    mlp = lc.Network([lc.Dense(conv.reshape(9, 8).T.numpy(), np.repeat(conv_b, 4)), lc.ReLU(),
                      lc.Dense(dense_w @ pool.T.numpy(), dense_b)], (9,))
    x = rng.normal(size=(5, 1, 3, 3))
    assert np.allclose(cnn(x), mlp(x.reshape(5, 9)), rtol=1e-12, atol=1e-12)
    p, q = [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 1.0)][seed]
    exact = brute_force_global_constant(mlp, p, q)
    b = lc.lipschitz(cnn, method="bab", norm=(p, q), domain=None, tol=1e-10, time_limit=30)
    assert b.exact and b.upper == pytest.approx(exact, rel=1e-9)
    assert b.lower == pytest.approx(exact_matrix_norm(cnn.jacobian(b.witness[None])[0], p, q), rel=1e-9)


def test_global_bab_dives_to_a_certified_witness_from_its_first_node():
    """Unseeded and stopped after the root's split (a node limit of 2), the global search has already
    dived to a leaf: its lower bound is the norm of the Jacobian at the witness it returns."""
    from lipcert import _core

    net = random_mlp(np.random.default_rng(84), [3, 8, 8, 8, 2])
    r = _core.lipschitz_bab_global(net._core, 2.0, 2.0, 0.0, 30.0, 2, 0.0, np.zeros(3), None)
    assert r["status"] == "node_limit" and r["nodes"] > 2 and 0 < r["lower"] <= r["upper"]
    assert r["lower"] == pytest.approx(np.linalg.norm(net.jacobian(r["witness"][None])[0], 2), rel=1e-9)


def test_global_bab_refuses_pooling_windows_whose_weights_are_not_exact():
    from conftest import random_cnn

    net = lc.Network([lc.Conv2d(np.ones((1, 1, 2, 2)), np.zeros(1)), lc.ReLU(), lc.AvgPool2d(3), lc.Flatten(),
                      lc.Dense(np.ones((1, 1)), np.zeros(1))], (1, 4, 4))
    with pytest.raises(lc.UnsupportedLayerError, match="AvgPool2d.*domain=None.*2\\^k"):
        lc.lipschitz(net, method="bab", domain=None)
    from lipcert import _core

    with pytest.raises(ValueError, match="AvgPool2d.*2\\^k"):  # the engine refuses it too (lipcert-bench)
        _core.lipschitz_bab_global(net._core, 2.0, 2.0, 0.0, 1.0, 10, 0.0, np.zeros(16), None)
    assert lc.lipschitz(random_cnn(np.random.default_rng(82)), method="bab", domain=None, time_limit=2).certified


def test_nonnegative_farkas_proofs_need_a_real_contradiction():
    from lipcert import _core

    # v1 - v2 = -1 with v >= 0 is feasible (v = (0, 1)); 2 v1 + v2 = -1 is not.
    assert not _core.prove_no_nonnegative_solution(np.array([[1.0, -1.0]]), np.array([-1.0]))
    assert _core.prove_no_nonnegative_solution(np.array([[2.0, 1.0]]), np.array([-1.0]))
    # a recession direction (1, 1) of the feasible set does not fool it: v1 - v2 = 0, v1 + v2 = 1 is feasible
    assert not _core.prove_no_nonnegative_solution(np.array([[1.0, -1.0], [1.0, 1.0]]), np.array([0.0, 1.0]))
    # infeasible through a combination whose vertex certificate cancels exactly (y = (1, 1) gives
    # E^T y = (0, 1)): the strict certificate (3, 2) leaves room for rounding
    assert _core.prove_no_nonnegative_solution(np.array([[1.0, -1.0], [-1.0, 2.0]]), np.array([1.0, -3.0]))
    # v1 - v2 = 1, v2 - v1 = 1 is empty, but E (1, 1) = 0: any perturbation of E makes it feasible far
    # out, so no proof in floating point can exist, and none is claimed
    assert not _core.prove_no_nonnegative_solution(np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([1.0, 1.0]))


def central_difference_jacobian(net, x, h):
    steps = np.eye(x.size) * h
    forward = np.asarray(net((x + steps).reshape((-1,) + net.input_shape))).reshape(x.size, -1)
    backward = np.asarray(net((x - steps).reshape((-1,) + net.input_shape))).reshape(x.size, -1)
    return ((forward - backward) / (2 * h)).T


@pytest.mark.parametrize("method,domain", [
    ("bab", None), ("bab", "box"), ("bab", "l1"), ("autolip", None), ("autolip", "l2")])
def test_witnesses_clear_their_kinks_so_finite_differences_agree(method, domain):
    # bab certifies its witnesses about 1e-6 inside their regions: before they were moved deeper, a
    # central difference of step 1e-6 disagreed with `lower` (by up to 40%) at 20 of the 116 bab
    # witnesses below (4 / 6 / 10 on R^n / the box / the l1 ball), none of them wrong.
    off = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        d = int(rng.integers(1, 4))
        sizes = [d] + [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 3)))] + [int(rng.integers(1, 3))]
        net = random_mlp(rng, sizes, activation=lc.ReLU if seed % 2 else (lambda: lc.LeakyReLU(0.1)))
        p = NORMS[seed % 3]
        dom = {None: None, "box": lc.Box(-np.ones(d), np.ones(d)), "l1": lc.Ball(np.zeros(d), 1.0, 1),
               "l2": lc.Ball(np.full(d, 0.3), 1.0, 2)}[domain]
        b = lc.lipschitz(net, method=method, norm=p, domain=dom, time_limit=5)
        if b.witness is None:
            continue
        w = b.witness.ravel()
        assert dom is None or dom.contains(w)
        assert b.lower == pytest.approx(exact_matrix_norm(net.jacobian(w[None])[0], p, p), rel=1e-12)
        difference = exact_matrix_norm(central_difference_jacobian(net, w, 1e-6 * max(1.0, np.abs(w).max())), p, p)
        if difference != pytest.approx(b.lower, rel=1e-5):
            off.append((seed, b.lower, difference))
    assert not off


def test_deeper_region_point_moves_a_point_off_its_kink_within_its_region():
    from lipcert import _core

    # f(x) = relu(x) + relu(x - 1): kinks at 0 and 1, one Jacobian on (0, 1)
    net = lc.Network([lc.Dense(np.ones((2, 1)), np.array([0.0, -1.0])), lc.ReLU(), lc.Dense(np.ones((1, 2)), np.zeros(1))],
                     (1,))
    everywhere = (np.array([-np.inf]), np.array([np.inf]))
    for x, kink in [(1e-9, 0.0), (1 - 1e-9, 1.0)]:
        moved = _core.deeper_region_point(net._core, np.array([x]), *everywhere, min_depth=1e-4)
        assert moved is not None and 1e-4 <= abs(moved[0] - kink) and 0 < moved[0] < 1
    assert _core.deeper_region_point(net._core, np.array([0.5]), *everywhere, min_depth=1e-4) is None
    # in a box that leaves the region no room, nothing deeper is found
    assert _core.deeper_region_point(net._core, np.array([1e-9]), np.array([0.0]), np.array([2e-9]),
                                     min_depth=1e-4) is None
    with pytest.raises(ValueError, match="piecewise linear"):
        _core.deeper_region_point(lc.Network([lc.Dense(np.ones((1, 1)), np.zeros(1)), lc.Tanh()], (1,))._core,
                                  np.zeros(1), *everywhere, min_depth=1e-4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pair", range(3))
def test_deeper_region_point_moves_a_point_off_a_maxmin_pairs_kink(seed, pair):
    # Dense-ReLU-Dense-MaxMin-Dense: x put 1e-9 from the kink of a pair of the second layer, where
    # their order swaps; the point found keeps every ReLU sign and pair order, clear of all kinks.
    rng = np.random.default_rng(seed)
    net = lc.Network([lc.Dense(rng.normal(size=(6, 4)), rng.normal(size=6)), lc.ReLU(),
                      lc.Dense(rng.normal(size=(6, 6)) / 2, rng.normal(size=6)), lc.MaxMin(),
                      lc.Dense(rng.normal(size=(2, 6)), np.zeros(2))], (4,))
    second = lc.Network(net.layers[:3], (4,))

    def onto_the_kink(x):  # Newton steps onto d = 1e-9, within whichever ReLU region x ends in
        for _ in range(8):
            values, _ = _kink_distances(net, x)
            if abs(values[6 + pair] - 1e-9) < 1e-12:
                return x
            jacobian = np.asarray(second.jacobian(x[None]))[0]
            gradient = jacobian[pair] - jacobian[pair + 3]
            if not gradient.any():
                return None
            x = x - (values[6 + pair] - 1e-9) * gradient / (gradient @ gradient)
        return None

    x = next(y for y in (onto_the_kink(rng.normal(size=4)) for _ in range(20)) if y is not None)
    _assert_moved_off_its_kink(net, x, rtol=1e-12)


def _assert_moved_off_its_kink(net, x, rtol):
    """x lies within 1e-8 of a kink; deeper_region_point's point keeps x's pattern (every ReLU sign
    and pair order), lies at least 1e-4 from every kink, and has x's Jacobian."""
    from lipcert import _core

    values, distances = _kink_distances(net, x)
    assert distances.min() < 1e-8
    everywhere = np.full(x.size, np.inf)
    moved = _core.deeper_region_point(net._core, x, -everywhere, everywhere, min_depth=1e-4)
    assert moved is not None
    moved_values, moved_distances = _kink_distances(net, moved)
    assert np.array_equal(moved_values > 0, values > 0) and moved_distances.min() >= 1e-4
    assert np.allclose(net.jacobian(moved[None]), net.jacobian(x[None]), rtol=rtol, atol=1e-12)


def _kink_distances(net, x):
    """Each ReLU's input and each MaxMin pair's difference at x (their signs are x's pattern), and
    their distances to their kinks |z_i| / ||grad z_i||, the gradients by forward differences of each
    affine layer along the input's basis (exact up to rounding)."""
    z, tangents = x.reshape(net.input_shape), np.eye(x.size).reshape(x.size, *net.input_shape)
    values, distances = [], []

    def see(value, tangent):
        gradient = np.linalg.norm(tangent.reshape(x.size, -1), axis=0)
        values.append(value.ravel())
        distances.append(np.where(gradient > 0, np.abs(value.ravel()) / np.where(gradient > 0, gradient, 1), np.inf))

    for layer, (shape_in, _) in zip(net.layers, net.layer_shapes()):
        if isinstance(layer, lc.ReLU):
            see(z, tangents)
            tangents, z = tangents * (z > 0), np.maximum(z, 0)
        elif isinstance(layer, lc.MaxMin):
            half = z.size // 2
            see(z[:half] - z[half:], tangents[:, :half] - tangents[:, half:])
            order = np.where(z[:half] >= z[half:], np.arange(half), np.arange(half) + half)
            order = np.concatenate([order, np.where(order < half, order + half, order - half)])
            tangents, z = tangents[:, order], z[order]
        else:
            single = lc.Network([layer], shape_in)
            out = np.asarray(single(z[None]))[0]
            tangents, z = np.asarray(single(z[None] + tangents)) - out, out
    return np.concatenate(values), np.concatenate(distances)


def test_deeper_region_point_moves_a_kink_point_of_an_mnist_sized_cnn():
    # 12544 neurons x 784 inputs, x 1e-9 from a kink of the second layer: the rows come from the
    # neurons nearest x alone (reverse products through the convolutions and ReLUs)
    rng = np.random.default_rng(0)
    net = lc.Network([lc.Conv2d(rng.normal(size=(8, 1, 3, 3)) / 3, rng.normal(size=8) * 0.1, padding=1), lc.ReLU(),
                      lc.Conv2d(rng.normal(size=(8, 8, 3, 3)) / 8, rng.normal(size=8) * 0.1, padding=1), lc.ReLU(),
                      lc.Flatten(), lc.Dense(rng.normal(size=(10, 8 * 28 * 28)) / 60, np.zeros(10))], (1, 28, 28))
    x = rng.random(784)
    second = lc.Network(net.layers[:3], net.input_shape)
    kink = 3 * 784 + 400  # the second convolution's channel 3, pixel (14, 8)
    for _ in range(4):  # Newton steps to 1e-9 from that neuron's kink
        z = np.asarray(second(x[None])).ravel()[kink]
        row = np.asarray(second.vjp(x[None], np.eye(1, 6272, kink)))[0].ravel()
        x = x - (z - 1e-9) * row / (row @ row)
    _assert_moved_off_its_kink(net, x, rtol=1e-9)

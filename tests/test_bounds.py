"""naive / autolip / auto: certified upper bounds above the exact constant, certified lower bounds
attained at witnesses, on networks whose exact constant is known by brute force."""
import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lipcert as lc
from conftest import ACTIVATIONS, brute_force_global_constant, exact_matrix_norm, random_cnn, random_mlp

NORMS = [1.0, 2.0, math.inf]
PAIRS = list(itertools.product(NORMS, NORMS))
METHODS = ["naive", "autolip", "auto"]


@pytest.mark.parametrize("p,q", PAIRS)
def test_upper_bound_is_at_least_exact_on_small_relu_nets(p, q):
    rng = np.random.default_rng(int(p * 3 + q if math.isfinite(p + q) else 99))
    for sizes in ([2, 5, 2], [3, 4, 3, 2]):
        net = random_mlp(rng, sizes)
        exact = brute_force_global_constant(net, p, q)
        for method in METHODS:
            b = lc.lipschitz(net, method=method, norm=(p, q))
            assert b.certified
            assert b.lower <= exact * (1 + 1e-12) + 1e-15, (method, b.lower, exact)
            assert exact <= b.upper, (method, b.upper, exact)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), hidden=st.integers(1, 6), n_in=st.integers(1, 3),
       n_out=st.integers(1, 3), p=st.sampled_from(NORMS), q=st.sampled_from(NORMS))
def test_lower_le_exact_le_upper_on_random_relu_nets(seed, hidden, n_in, n_out, p, q):
    net = random_mlp(np.random.default_rng(seed), [n_in, hidden, n_out])
    exact = brute_force_global_constant(net, p, q)
    b = lc.lipschitz(net, method="auto", norm=(p, q), seed=seed)
    assert b.lower <= exact * (1 + 1e-12) + 1e-15 <= b.upper * (1 + 1e-12) + 2e-15


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("method", METHODS)
def test_upper_is_above_lower_on_every_layer_kind(activation, method):
    rng = np.random.default_rng(20)
    for net in (random_mlp(rng, [6, 10, 8, 4], activation), random_cnn(rng, activation)):
        for p, q in [(2.0, 2.0), (1.0, 1.0), (math.inf, math.inf), (math.inf, 2.0)]:
            b = lc.lipschitz(net, method=method, norm=(p, q))
            assert b.certified and 0 < b.lower <= b.upper


@pytest.mark.parametrize("p,q", PAIRS)
def test_witness_attains_the_lower_bound(p, q):
    rng = np.random.default_rng(21)
    net = random_mlp(rng, [3, 8, 8, 2], lc.Tanh)
    b = lc.lipschitz(net, method="autolip", norm=(p, q))
    assert b.witness is not None and b.witness.shape == net.input_shape
    jac = net.jacobian(b.witness[None])[0]
    attained = exact_matrix_norm(jac, p, q)
    assert b.lower <= attained <= b.lower * (1 + 1e-9)


def test_witness_lies_in_the_domain():
    rng = np.random.default_rng(22)
    net = random_mlp(rng, [4, 16, 3])
    box = lc.Box(np.zeros(4), np.full(4, 0.1))
    b = lc.lipschitz(net, method="naive", domain=box)
    assert np.all(b.witness >= 0) and np.all(b.witness <= 0.1)
    for p in (1, 2, math.inf):
        ball = lc.Ball(np.ones(4), 0.05, p=p)
        b = lc.lipschitz(net, method="autolip", domain=ball)
        assert np.linalg.norm(b.witness - 1, p) <= 0.05 * (1 + 1e-12)
        assert 0 < b.lower <= b.upper


def test_sampled_lower_bounds_never_exceed_the_upper_bound_on_a_cnn():
    rng = np.random.default_rng(23)
    net = random_cnn(rng, lc.ReLU)
    b = lc.lipschitz(net, method="auto")
    x = rng.normal(size=(300,) + net.input_shape) * 2
    sampled = np.linalg.svd(net.jacobian(x), compute_uv=False)[:, 0].max()
    assert sampled <= b.upper


def test_output_matrix_bounds_the_composed_map():
    rng = np.random.default_rng(24)
    net = random_mlp(rng, [2, 6, 3])
    c = np.array([[1.0, -1.0, 0.0]])
    b = lc.lipschitz(net, method="naive", output=c)
    exact = brute_force_global_constant(net.with_output(c), 2.0, 2.0)
    assert b.lower <= exact * (1 + 1e-12) <= b.upper


def test_exact_flag_follows_the_tolerance():
    net = lc.Network([lc.Dense(np.array([[3.0, 4.0]]))], (2,))  # linear: L = 5 exactly
    b = lc.lipschitz(net, method="naive", tol=1e-9)
    assert b.exact and 5.0 <= b.upper <= 5.0 * (1 + 1e-12) and b.lower <= 5.0
    assert b.lower >= 5.0 * (1 - 1e-12)


def test_bound_to_dict_is_json_serialisable():
    net = random_mlp(np.random.default_rng(25), [3, 5, 2])
    d = lc.lipschitz(net, method="autolip", norm=(2, "inf")).to_dict()
    assert set(d) >= {"upper", "lower", "certified", "exact", "method", "norm", "time_s", "witness", "stats"}
    assert d["norm"] == ["2", "inf"]
    json.dumps(d)


def test_autolip_never_reports_bare_power_iteration_as_certified():
    rng = np.random.default_rng(26)
    net = random_mlp(rng, [30, 40, 20])
    b = lc.lipschitz(net, method="autolip")
    for layer in b.stats["layers"]:
        assert layer["upper"] >= layer["estimate"]
        assert layer["how"] in ("cholesky", "circulant", "closed-form")
    exact_product = np.prod([np.linalg.svd(l.weight, compute_uv=False)[0] for l in net.layers if isinstance(l, lc.Dense)])
    assert exact_product <= b.upper <= exact_product * (1 + 1e-8)


def test_lipsdp_random_network_reproduces_the_published_product(shared_data):
    net = lc.load(shared_data / "lipsdp" / "random_weights.mat")
    b = lc.lipschitz(net, method="naive")
    assert abs(b.upper - 43.31) < 5e-3  # published product of spectral norms
    assert b.lower <= 36.4825  # LipSDP-Neuron's published upper bound (36.482, rounded)


@pytest.mark.parametrize("kwargs,error", [
    (dict(method="magic"), ValueError),
    (dict(method="bab", domain=lc.Ball(np.zeros(3), 0.1, p=2)), NotImplementedError),
    (dict(norm=3), ValueError),
    (dict(norm=(2, 2, 2)), ValueError),
    (dict(norm="euclid"), ValueError),
    (dict(domain=lc.Box(np.zeros(5), np.ones(5))), ValueError),
    (dict(domain=(0, 1)), TypeError),
    (dict(output=np.ones((2, 7))), ValueError),
    (dict(tol=-1), ValueError),
    (dict(time_limit=0), ValueError),
    (dict(device="tpu"), ValueError),
])
def test_bad_arguments_are_rejected(kwargs, error):
    net = random_mlp(np.random.default_rng(27), [3, 4, 2])
    with pytest.raises(error):
        lc.lipschitz(net, **kwargs)


def test_cuda_device_without_gpu_is_a_clear_error():
    if lc.cuda_available():
        pytest.skip("a GPU is present")
    net = random_mlp(np.random.default_rng(28), [3, 4, 2])
    with pytest.raises(lc.LipcertError, match="no CUDA device"):
        lc.lipschitz(net, device="cuda")


def test_domains_validate_their_arguments():
    with pytest.raises(ValueError):
        lc.Box([0, 1], [1, 0])
    with pytest.raises(ValueError):
        lc.Box([0, 0], [1, np.inf])
    with pytest.raises(ValueError):
        lc.Ball([0, 0], -1.0)
    with pytest.raises(ValueError):
        lc.Ball([0, 0], 1.0, p=3)


def test_witness_on_a_relu_kink_is_not_certified():
    from lipcert import _core

    net = lc.Network([lc.Dense(np.array([[1.0, -1.0]]), np.zeros(1)), lc.ReLU(), lc.Dense(np.ones((1, 1)))], (2,))
    lower, verified, margin, _ = _core.certified_directional_lower(net._core, np.array([1.0, 1.0]),
                                                                  np.array([1.0, 0.0]), 2.0, 2.0)
    assert not verified and lower == 0.0 and margin <= 0
    lower, verified, margin, bits = _core.certified_directional_lower(net._core, np.array([2.0, 1.0]),
                                                                     np.array([1.0, 0.0]), 2.0, 2.0)
    assert verified and lower == pytest.approx(1.0, rel=1e-15) and lower <= 1.0 and bits >= 64


@pytest.mark.parametrize("scale, gap, bits", [(2.0**10, 2.0**-30, 64), (2.0**30, 2.0**-40, 103),
                                              (2.0**60, 2.0**-45, 113), (2.0**80, 2.0**-45, None)])
def test_the_pattern_proof_takes_the_precision_a_cancellation_needs(scale, gap, bits):
    # The second ReLU's input is scale - (scale + gap) + 1 - 1 + 2 gap = gap at x = 1: its rounding
    # error bound is about scale times the unit roundoff, so long double (2^-64), double words (2^-103)
    # and binary128 (2^-113) in turn are needed, and at 2^80 none suffices. J = 1 only if it is active.
    from lipcert import _core

    net = lc.Network([lc.Dense(np.array([[scale], [scale], [1.0]]), np.array([0.0, gap, 0.0])), lc.ReLU(),
                      lc.Dense(np.array([[1.0, -1.0, 1.0]]), np.array([-1.0 + 2 * gap])), lc.ReLU(),
                      lc.Dense(np.ones((1, 1)))], (1,))
    lower, verified, margin, used = _core.certified_directional_lower(net._core, np.ones(1), np.ones(1), 2.0, 2.0)
    if bits is None:
        assert not verified and lower == 0.0 and margin <= 0
    else:
        assert verified and used == bits and 0 < margin <= gap
        assert 1 - 1e-12 <= lower <= 1.0


def test_double_words_certify_deep_networks_where_long_double_cannot():
    from lipcert import _core

    rng = np.random.default_rng(30)
    used = []
    for _ in range(30):
        sizes = [4] + [8] * 40
        layers = []
        for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers += [lc.Dense(3.0 * rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)),
                       lc.LeakyReLU(0.1) if k % 2 else lc.ReLU()]
        net = lc.Network(layers + [lc.Dense(rng.normal(size=(2, 8)))], (4,))
        x, v = rng.normal(size=4), rng.normal(size=4)
        lower, verified, _, bits = _core.certified_directional_lower(net._core, x, v, 2.0, 2.0)
        true = np.linalg.norm(net.jacobian(x[None])[0] @ v) / np.linalg.norm(v)
        if verified:
            used.append(bits)
            assert true * (1 - 1e-12) <= lower <= true * (1 + 1e-12)
    assert used.count(103) >= 20


@pytest.mark.parametrize("activation, depth", [(lc.Tanh, 20), (lc.Sigmoid, 30)])
def test_deep_smooth_networks_take_the_precision_their_error_bound_needs(activation, depth):
    # No pattern to prove, but long double's error bound, carried through |W| over so many layers,
    # takes more than 1e-6 of ||J v|| (up to all of it): binary128 must take over.
    from lipcert import _core

    for seed in range(4):
        rng = np.random.default_rng(seed)
        net = random_mlp(rng, [4] + [16] * depth + [2], activation, scale=2.0)
        x = rng.normal(size=4)
        jac = net.jacobian(x[None])[0]
        v = _core.operator_norm(jac, 2.0, 2.0)[3]
        lower, verified, _, bits = _core.certified_directional_lower(net._core, x, v, 2.0, 2.0)
        true = np.linalg.norm(jac @ v) / np.linalg.norm(v)
        assert verified and bits == 113 and abs(lower - true) <= 1e-12 * true


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_certified_directional_lower_is_below_and_close_to_the_true_ratio(activation):
    from lipcert import _core

    rng = np.random.default_rng(29)
    net = random_cnn(rng, activation)
    for _ in range(5):
        x, v = rng.normal(size=net.input_size), rng.normal(size=net.input_size)
        true = np.linalg.norm(net.jacobian(x[None])[0] @ v) / np.linalg.norm(v)
        lower, verified, _, _ = _core.certified_directional_lower(net._core, x, v, 2.0, 2.0)
        assert verified and true * (1 - 1e-12) <= lower * (1 + 1e-15) and lower <= true * (1 + 1e-12)


def test_deep_onnx_networks_get_a_certified_witness(shared_data):
    net = lc.load(shared_data / "glipsdp" / "mnist" / "mlp_L33_W16.onnx")
    b = lc.lipschitz(net, method="autolip", time_limit=5)
    assert b.witness is not None and 0 < b.lower <= b.upper
    jac = net.jacobian(b.witness[None])[0]
    assert b.lower <= np.linalg.norm(jac, 2) <= b.lower * (1 + 1e-9)


def _lower_search_with_clock(monkeypatch, net, tick, **kwargs):
    """lower_bound with a clock that advances by `tick` seconds per reading: a faster or slower machine."""
    from lipcert.methods import lower

    readings = itertools.count()
    monkeypatch.setattr(lower.time, "perf_counter", lambda: next(readings) * tick)
    return lower.lower_bound(net, 2.0, 2.0, **kwargs)


def test_the_lower_search_depends_on_its_budget_not_the_clock(monkeypatch):
    net = random_mlp(np.random.default_rng(31), [64, 256, 256, 10])
    # A budget that allows fewer than the 256 samples and a few ascent steps.
    runs = [_lower_search_with_clock(monkeypatch, net, tick, time_budget=0.03, deadline_s=1e9) for tick in (1e-9, 1e-3)]
    (lower, witness, stats), (lower_slow, witness_slow, stats_slow) = runs
    assert 0 < stats["samples"] < 256 and 0 < stats["climb_steps"] < 30 and not stats["stopped_by_clock"]
    assert lower == lower_slow and np.array_equal(witness, witness_slow) and stats == stats_slow
    assert lower <= np.linalg.norm(net.jacobian(witness[None])[0], 2)


def test_the_clock_stops_a_slow_lower_search_and_says_so(monkeypatch):
    net = random_mlp(np.random.default_rng(31), [64, 256, 256, 10])
    lower, witness, stats = _lower_search_with_clock(monkeypatch, net, 1.0, time_budget=0.03, deadline_s=2.0)
    assert stats["stopped_by_clock"] and stats["samples"] < 64 and witness is not None
    assert 0 < lower <= np.linalg.norm(net.jacobian(witness[None])[0], 2)

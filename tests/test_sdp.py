"""sdp (LipSDP): against an independent one-big-LMI solve (cvxpy + Clarabel), published values,
exact constants by enumeration, and the certificate check."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lipcert as lc
from lipcert.methods.sdp import certified_bound_from_multipliers
from lipcert.methods.slope_restricted import slope_restricted_problem

ACTIVATIONS = {"relu": lc.ReLU, "tanh": lc.Tanh, "sigmoid": lc.Sigmoid, "leaky": lambda: lc.LeakyReLU(0.1)}


def mlp(sizes, activation="relu", seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(lc.Dense(scale * rng.normal(size=(b, a)) / math.sqrt(a), rng.normal(size=b)))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return lc.Network(layers, input_shape=(sizes[0],))


def lipsdp_cvxpy(net, per_layer=False):
    """The one-big-LMI LipSDP of Fazlyab et al. (their eq. (10)), written independently of lipcert's
    block form: [A; B]' [[-2ab T, (a+b) T], [(a+b) T, -2T]] [A; B] + diag(-rho I, 0, ..., W_l' W_l) <= 0."""
    cp = pytest.importorskip("cvxpy")
    dense = [l for l in net.layers if isinstance(l, lc.Dense)]
    acts = [l for l in net.layers if l.is_activation]
    ws = [d.weight for d in dense]
    n0, hidden = ws[0].shape[1], [w.shape[0] for w in ws[:-1]]
    big_n = sum(hidden)
    a_mat = np.zeros((big_n, n0 + big_n))
    b_mat = np.zeros((big_n, n0 + big_n))
    row, col = 0, 0
    for k, w in enumerate(ws[:-1]):
        a_mat[row:row + w.shape[0], col:col + w.shape[1]] = w
        col += w.shape[1]
        row += w.shape[0]
    b_mat[:, n0:] = np.eye(big_n)
    alpha = np.concatenate([[a.slope_bounds[0]] * h for a, h in zip(acts, hidden)])
    beta = np.concatenate([[a.slope_bounds[1]] * h for a, h in zip(acts, hidden)])
    rho = cp.Variable()
    if per_layer:
        t_layers = cp.Variable(len(hidden), nonneg=True)
        t = cp.hstack([t_layers[k] * np.ones(h) for k, h in enumerate(hidden)])
    else:
        t = cp.Variable(big_n, nonneg=True)
    tm = cp.diag(t)
    ab = np.vstack([a_mat, b_mat])
    middle = cp.bmat([[-2 * np.diag(alpha * beta) @ tm, np.diag(alpha + beta) @ tm],
                      [np.diag(alpha + beta) @ tm, -2 * tm]])
    last = np.zeros((n0 + big_n, n0 + big_n))
    last[-hidden[-1]:, -hidden[-1]:] = ws[-1].T @ ws[-1]
    first = np.zeros((n0 + big_n, n0 + big_n))
    first[:n0, :n0] = np.eye(n0)
    m = ab.T @ middle @ ab - rho * first + last
    problem = cp.Problem(cp.Minimize(rho), [(m + m.T) / 2 << 0])
    problem.solve(solver=cp.CLARABEL)
    return math.sqrt(rho.value)


@pytest.mark.parametrize("sizes,activation", [([3, 8, 6, 2], "relu"), ([4, 10, 1], "tanh"),
                                              ([3, 7, 7, 3], "leaky"), ([5, 6, 6, 6, 2], "sigmoid")])
def test_sdp_equals_one_big_lmi_solved_by_cvxpy(sizes, activation):
    net = mlp(sizes, activation, seed=len(sizes))
    b = lc.lipschitz(net, method="sdp")
    assert b.certified and b.method == "sdp"
    assert b.upper == pytest.approx(lipsdp_cvxpy(net), rel=1e-4)
    layer = lc.lipschitz(net, method="sdp-layer")
    assert layer.certified and layer.upper == pytest.approx(lipsdp_cvxpy(net, per_layer=True), rel=1e-4)
    assert b.upper <= layer.upper * (1 + 1e-6)


def test_sdp_equals_cvxpy_where_the_newton_system_factorises_in_blocks():
    # 120 neurons: the Newton system's Cholesky factorisation runs in 96-row blocks, with a trailing
    # update between them (cvxpy takes about 25 s here).
    # The core solve with every Newton system factorised in single precision and refined must reach
    # the same optimum.
    from lipcert import _core
    net = mlp([3, 40, 40, 40, 2], "relu", seed=5)
    b = lc.lipschitz(net, method="sdp")
    reference = lipsdp_cvxpy(net)
    assert b.certified and b.upper == pytest.approx(reference, rel=1e-6)
    single = _core.lipsdp_solve(*slope_restricted_problem(net).core_args(), single_precision_newton_from=0)
    assert single["status"] == "optimal" and single["certified_upper"] == pytest.approx(reference, rel=1e-6)


def eclipse_net(layers, width):
    """The ECLipsE grid's recipe (shared/data/README.md): input 4, output 1, each W ~ N(0, 1) rescaled
    to a spectral norm drawn from U(0.4, 1.8), ReLU."""
    rng = np.random.RandomState(width * 7 + layers * 13)
    sizes = [4] + [width] * (layers - 1) + [1]
    dense = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(size=(b, a))
        dense.append(lc.Dense(w * rng.uniform(0.4, 1.8) / np.linalg.norm(w, 2), np.zeros(b)))
    layers_ = [x for d in dense[:-1] for x in (d, lc.ReLU())] + [dense[-1]]
    return lc.Network(layers_, input_shape=(4,))


@pytest.mark.parametrize("primal_dual", [False, True])
def test_the_neuron_solve_reaches_its_optimum_on_a_deep_network(primal_dual):
    # 30 weights of width 20: LipSDP-Neuron's optimum is at most LipSDP-Layer's (whose multipliers
    # are feasible for it). The barrier method once stopped here at a falsely centred point 390x above
    # it, hidden in sdp() by the LipSDP-Layer cross-check; the core solve alone must get there (by
    # default this depth goes to the primal-dual method).
    from lipcert import _core
    problem = slope_restricted_problem(eclipse_net(30, 20))
    neuron = _core.lipsdp_solve(*problem.core_args(), per_layer=False, tol=1e-7, primal_dual=primal_dual)
    layer = _core.lipsdp_solve(*problem.core_args(), per_layer=True, tol=1e-7)
    assert neuron["status"] == "optimal" and layer["status"] == "optimal"
    assert neuron["certified_upper"] < 0.5 * layer["certified_upper"]


@pytest.mark.parametrize("sizes,activation", [([3, 8, 6, 2], "relu"), ([3, 7, 7, 3], "leaky"),
                                              ([5, 6, 6, 6, 2], "sigmoid")])
def test_the_primal_dual_solve_equals_cvxpy_and_the_barrier_solve(sizes, activation):
    from lipcert import _core
    net = mlp(sizes, activation, seed=len(sizes))
    args = slope_restricted_problem(net).core_args()
    primal_dual = _core.lipsdp_solve(*args, primal_dual=True)
    barrier = _core.lipsdp_solve(*args, primal_dual=False)
    assert primal_dual["status"] == "optimal" and primal_dual["relative_gap"] <= 1e-7
    assert primal_dual["certified_upper"] == pytest.approx(lipsdp_cvxpy(net), rel=1e-4)
    assert primal_dual["certified_upper"] == pytest.approx(barrier["certified_upper"], rel=1e-6)
    assert primal_dual["newton_steps"] < barrier["newton_steps"]
    # Every direction came from the chains of block-tridiagonal inverses (none needed dense products).
    assert primal_dual["chain_steps"] == primal_dual["primal_dual_steps"] == primal_dual["newton_steps"]
    assert barrier["primal_dual_steps"] == 0


@pytest.mark.parametrize("activation", ["relu", "leaky"])
def test_the_primal_dual_solve_needs_a_third_of_the_barriers_newton_systems_on_a_deep_network(activation):
    # Measured: 20 / 18 against 69 / 58 on these 20 x 20 MLPs (22 / 20 from the barrier's start); both
    # end at the same optimum, and the primal-dual method's points are proved like the barrier's.
    from lipcert import _core
    args = slope_restricted_problem(mlp([20] * 21 + [1], activation, seed=20)).core_args()
    primal_dual = _core.lipsdp_solve(*args, primal_dual=True)
    barrier = _core.lipsdp_solve(*args, primal_dual=False)
    assert primal_dual["status"] == barrier["status"] == "optimal"
    assert primal_dual["certified_upper"] == pytest.approx(barrier["certified_upper"], rel=1e-6)
    assert 2 * primal_dual["newton_steps"] < barrier["newton_steps"]
    assert primal_dual["chain_steps"] == primal_dual["newton_steps"]
    # LipSDP-Layer (multipliers shared within a layer) stays with the barrier method.
    layer = [_core.lipsdp_solve(*args, per_layer=True, primal_dual=flag) for flag in (False, True)]
    assert layer[0]["newton_steps"] == layer[1]["newton_steps"]
    assert layer[0]["certified_upper"] == layer[1]["certified_upper"]
    # Where it does not reach its optimum, the barrier method runs from its own start: its steps are
    # added, its points proved.
    cut = _core.lipsdp_solve(*args, primal_dual=True, max_newton_steps=5)
    barrier_cut = _core.lipsdp_solve(*args, primal_dual=False, max_newton_steps=5)
    assert cut["status"] == barrier_cut["status"] == "max_steps"
    assert cut["newton_steps"] == 10 and barrier_cut["newton_steps"] == 5
    assert cut["certified_upper"] == barrier_cut["certified_upper"] >= barrier["certified_upper"]


def test_the_primal_dual_directions_switch_to_dense_products_where_the_chains_lose_accuracy():
    # The chains' error grows about as cond(M)^2, and on this ECLipsE net (4 inputs, one output) M
    # gets ill-conditioned enough near the optimum (||M^-1|| ~ 1e12, measured) that the last
    # iterations' directions need dense products: without them it stalled at 30 iterations.
    from lipcert import _core
    args = slope_restricted_problem(eclipse_net(5, 60)).core_args()
    primal_dual = _core.lipsdp_solve(*args, primal_dual=True)
    barrier = _core.lipsdp_solve(*args, primal_dual=False)
    assert primal_dual["status"] == "optimal"
    assert primal_dual["primal_dual_steps"] == primal_dual["newton_steps"] < barrier["newton_steps"]
    assert 0 < primal_dual["chain_steps"] < primal_dual["newton_steps"]
    assert primal_dual["certified_upper"] == pytest.approx(barrier["certified_upper"], rel=1e-6)


def test_by_default_the_primal_dual_method_solves_networks_from_24_hidden_layers():
    # It needs fewer Newton systems, but each costs more; measured, it pays from about 24 hidden layers.
    from lipcert import _core
    deep = _core.lipsdp_primal_dual_from_layers
    assert deep == 24
    for hidden in (deep - 1, deep):
        args = slope_restricted_problem(mlp([6] * (hidden + 1) + [1], "relu", seed=hidden)).core_args()
        default = _core.lipsdp_solve(*args)
        chosen = _core.lipsdp_solve(*args, primal_dual=hidden >= deep)
        assert default["status"] == "optimal"
        assert default["newton_steps"] == chosen["newton_steps"]
        assert default["certified_upper"] == chosen["certified_upper"]
        assert (default["primal_dual_steps"] > 0) == (hidden >= deep)
    # Its optimal end is a primal-dual pair within tol of the optimum, so sdp() skips the LipSDP-Layer
    # cross-check that follows the barrier method on deep networks.
    b = lc.lipschitz(mlp([6] * 25 + [1], "relu", seed=24), method="sdp")
    assert b.certified and b.upper == pytest.approx(default["certified_upper"], rel=1e-12)
    assert b.stats["primal_dual_steps"] == b.stats["newton_steps"] and "layer_solve" not in b.stats


def test_a_solve_stops_once_its_optimum_is_above_a_given_bound():
    # sdp's LipSDP-Layer cross-check only matters if it beats the neuron solve's proved bound: given
    # that bound as stop_above, it stops at the first centred point whose lower estimate of its
    # optimum, rho - nu / t, is above it, still with a proved bound.
    from lipcert import _core
    net = eclipse_net(10, 20)
    args = slope_restricted_problem(net).core_args()
    neuron = _core.lipsdp_solve(*args)
    full = _core.lipsdp_solve(*args, per_layer=True)
    early = _core.lipsdp_solve(*args, per_layer=True, stop_above=neuron["certified_upper"] ** 2)
    assert neuron["status"] == full["status"] == "optimal" and early["status"] == "above"
    assert early["newton_steps"] < full["newton_steps"]
    assert neuron["certified_upper"] < full["certified_upper"] <= early["certified_upper"] < math.inf
    # A stop_above the path never reaches changes nothing.
    unreached = _core.lipsdp_solve(*args, per_layer=True, stop_above=2 * full["certified_upper"] ** 2)
    assert (unreached["status"], unreached["newton_steps"], unreached["certified_upper"]) == \
        (full["status"], full["newton_steps"], full["certified_upper"])
    with pytest.raises(ValueError, match="stop_above"):
        _core.lipsdp_solve(*args, per_layer=True, stop_above=math.nan)
    # sdp() keeps the neuron solve's bound, its cross-check having stopped early.
    b = lc.lipschitz(net, method="sdp")
    assert b.stats["layer_solve"]["status"] == "above"
    assert b.stats["layer_solve"]["newton_steps"] == early["newton_steps"]
    assert b.upper == neuron["certified_upper"]


def test_a_tighter_tol_never_proves_a_looser_bound():
    # At tol 1e-12 the barrier method stalls (as it may at any tol out of its reach), its last points
    # so near the boundary that their proofs lost 5e-4; points further back prove what tol 1e-7 does,
    # to within the proofs' rounding (1e-10 below on one machine, 4.8e-9 above on another).
    from lipcert import _core
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((10, 4)) / 2] + [rng.standard_normal((10, 10)) / math.sqrt(10) for _ in range(29)]
    weights.append(rng.standard_normal((2, 10)))
    net = lc.Network([x for w in weights[:-1] for x in (lc.Dense(w), lc.ReLU())] + [lc.Dense(weights[-1])], (4,))
    args = slope_restricted_problem(net).core_args()
    default = _core.lipsdp_solve(*args, tol=1e-7)
    tight = _core.lipsdp_solve(*args, tol=1e-12)
    assert default["status"] == "optimal"
    assert tight["certified_upper"] <= default["certified_upper"] * (1 + 1e-7)


def test_autos_estimate_of_sdps_time_grows_with_the_network_and_counts_the_cross_check():
    from lipcert.methods.sdp import CROSS_CHECK_DEPTH, sdp_seconds
    deeper = [sdp_seconds(mlp([20] + [100] * depth + [1])) for depth in range(1, 9)]
    steps = np.diff(deeper)
    assert (steps > 0).all()
    # The LipSDP-Layer cross-check joins at CROSS_CHECK_DEPTH hidden layers.
    assert steps[CROSS_CHECK_DEPTH - 2] > 1.5 * steps[CROSS_CHECK_DEPTH - 3]
    assert sdp_seconds(mlp([20, 200, 1])) < sdp_seconds(mlp([20, 400, 1])) < sdp_seconds(mlp([784, 400, 1]))


@pytest.mark.parametrize("single_precision_from", [0, 10**9])
def test_sdp_is_exact_on_a_rotated_separable_network_with_a_wide_layer(single_precision_from):
    # f(x) = D relu(Q x), Q orthogonal: congruence with diag(Q', I) splits LipSDP-Neuron into 2x2 LMIs
    # [[rho, -t/2], [-t/2, t - d_i^2]] >= 0, so its optimum is max |d_i|, the exact constant. The
    # 200-neuron block takes the multi-panel paths of the parallel factorisation and solves; the Newton
    # system is solved both by the single-precision factor with refinement and in double precision.
    from lipcert import _core
    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    d = rng.uniform(0.2, 2.0, size=200)
    net = lc.Network([lc.Dense(q), lc.ReLU(), lc.Dense(np.diag(d))], input_shape=(200,))
    result = _core.lipsdp_solve(*slope_restricted_problem(net).core_args(), per_layer=False, tol=1e-9,
                                single_precision_newton_from=single_precision_from)
    assert result["status"] == "optimal"
    assert np.abs(d).max() <= result["certified_upper"] <= np.abs(d).max() * (1 + 1e-6)


def test_single_precision_newton_solves_reach_the_double_precision_optimum():
    from lipcert import _core
    for net in (eclipse_net(30, 20), mlp([5, 40, 40, 40, 40, 2], "leaky", seed=2)):
        args = slope_restricted_problem(net).core_args()
        for primal_dual in (False, True):
            single = _core.lipsdp_solve(*args, single_precision_newton_from=0, primal_dual=primal_dual)
            double = _core.lipsdp_solve(*args, single_precision_newton_from=10**9, primal_dual=primal_dual)
            assert single["status"] == double["status"] == "optimal"
            assert single["certified_upper"] == pytest.approx(double["certified_upper"], rel=1e-6)


def test_lipsdp_published_values_on_random_weights(shared_data):
    net = lc.load(shared_data / "lipsdp" / "random_weights.mat")
    assert lc.lipschitz(net, method="sdp").upper == pytest.approx(36.482, abs=1e-3)
    assert lc.lipschitz(net, method="sdp-layer").upper == pytest.approx(39.839, abs=1e-3)


def test_glipsdp_fnn2_seed0_class7_matches_lipsdp(shared_data):
    net = lc.load(shared_data / "glipsdp" / "digits" / "fnn2_seed0_weights.mat")
    b = lc.lipschitz(net, method="sdp", output=np.eye(10)[7])
    assert b.upper == pytest.approx(5.1097, rel=1e-4)
    assert lc.verify_certificate(net, b)


def _exact_global_relu_constant(net):
    """The exact constant on a box wide enough to contain every activation region near the origin
    (bab, checked against brute-force enumeration in test_bab.py); a lower bound of the global one."""
    box = lc.Box(-1e3 * np.ones(net.input_size), 1e3 * np.ones(net.input_size))
    return lc.lipschitz(net, method="bab", domain=box, tol=1e-9, time_limit=60)


@pytest.mark.parametrize("seed", range(3))
def test_sdp_is_above_the_exact_constant_and_below_the_product(seed):
    net = mlp([2, 6, 5, 2], "relu", seed=seed)
    exact = _exact_global_relu_constant(net)
    assert exact.exact
    sdp = lc.lipschitz(net, method="sdp")
    naive = lc.lipschitz(net, method="naive")
    assert exact.lower <= sdp.upper <= naive.upper * (1 + 1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from(sorted(ACTIVATIONS)),
       depth=st.integers(1, 3), width=st.integers(2, 8), p=st.sampled_from([1, 2, math.inf]))
def test_sdp_bounds_every_sampled_jacobian(seed, activation, depth, width, p):
    sizes = [3] + [width] * depth + [2]
    net = mlp(sizes, activation, seed=seed, scale=2.0)
    b = lc.lipschitz(net, method="sdp", norm=p)
    assert b.certified
    x = np.random.default_rng(seed).normal(scale=3.0, size=(200, 3))
    jac = net.jacobian(x)
    order = {1: 1, 2: 2, math.inf: np.inf}[p]
    sampled = max(np.linalg.norm(j, order) for j in jac)
    assert sampled <= b.upper * (1 + 1e-9)
    assert b.lower <= b.upper


def test_tampered_certificate_fails_verification():
    net = mlp([4, 12, 12, 3], "relu", seed=5)
    b = lc.lipschitz(net, method="sdp")
    assert lc.verify_certificate(net, b)
    tampered = lc.Bound(**{**b.__dict__, "stats": dict(b.stats)})
    lam = np.array(b.stats["multipliers"])
    lam[np.argmax(lam)] *= 0.5
    tampered.stats["multipliers"] = lam.tolist()
    assert not lc.verify_certificate(net, tampered)
    assert certified_bound_from_multipliers(net, -np.abs(lam), 2, 2) == math.inf
    lower = lc.Bound(**{**b.__dict__, "upper": b.upper * 0.999})
    assert not lc.verify_certificate(net, lower)


def test_a_linear_network_certificate_is_its_matrix_norm():
    w = np.random.default_rng(8).normal(size=(3, 5))
    net = lc.Network([lc.Dense(w), lc.Dense(np.eye(3) * 0.5)], input_shape=(5,))
    b = lc.lipschitz(net, method="sdp", norm=(1, 2))
    assert b.stats["multipliers"] == [] and lc.verify_certificate(net, b)
    assert b.upper >= np.linalg.norm(0.5 * w, axis=0).max()  # ||A||_{1->2}: the largest column norm
    assert not lc.verify_certificate(net, lc.Bound(**{**b.__dict__, "upper": b.upper * 0.999}))


def test_sdp_unrolls_convolutions_and_composes_linear_layers():
    rng = np.random.default_rng(3)
    net = lc.Network([lc.Conv2d(rng.normal(size=(3, 1, 3, 3)), padding=1), lc.ReLU(), lc.AvgPool2d(2),
                      lc.Flatten(), lc.Dense(rng.normal(size=(4, 27))), lc.Tanh(), lc.Dense(rng.normal(size=(2, 4)))],
                     input_shape=(1, 6, 6))
    problem = slope_restricted_problem(net)
    assert [w.shape for w in problem.weights] == [(108, 36), (4, 108), (2, 4)]
    assert problem.weight_error[1] > 0 and problem.weight_error[0] == 0
    b = lc.lipschitz(net, method="sdp")
    assert b.certified
    x = rng.normal(size=(100, 1, 6, 6))
    assert max(np.linalg.norm(j, 2) for j in net.jacobian(x)) <= b.upper


def test_linear_network_gives_its_spectral_norm():
    w = np.random.default_rng(1).normal(size=(5, 7))
    net = lc.Network([lc.Dense(w)], input_shape=(7,))
    b = lc.lipschitz(net, method="sdp")
    assert b.certified and b.upper == pytest.approx(np.linalg.norm(w, 2), rel=1e-9)
    assert b.upper >= np.linalg.norm(w, 2)


def test_auto_includes_sdp_on_small_networks():
    net = mlp([3, 10, 10, 2], "relu", seed=2)
    b = lc.lipschitz(net, method="auto")
    assert "sdp" in b.stats["candidates"]
    assert b.upper <= b.stats["candidates"]["sdp"]


def test_verify_certificate_rejects_other_methods():
    net = mlp([3, 5, 2])
    with pytest.raises(ValueError):
        lc.verify_certificate(net, lc.lipschitz(net, method="naive"))

"""Optional CUDA kernels: loaded lazily, compared with the CPU path where a GPU exists."""
import numpy as np
import pytest

import lipcert as lc
from lipcert import _core
from lipcert._cuda_loader import cuda_module

gpu = pytest.mark.skipif(not lc.cuda_available(), reason="no CUDA device")


def test_import_works_without_a_gpu_and_reports_both_facts():
    assert isinstance(lc.cuda_compiled(), bool)
    assert isinstance(lc.cuda_available(), bool)
    assert lc.cuda_available() <= lc.cuda_compiled()
    if lc.cuda_compiled():
        assert cuda_module().device_count() >= 0


@pytest.mark.gpu
@gpu
def test_gpu_batched_power_iteration_matches_svd():
    # Random Gaussian matrices have clustered top singular values (slow power iteration); these have a
    # gap of 0.8 between the first two, so 500 steps converge far below the tolerance.
    rng = np.random.default_rng(0)
    mats = []
    for m, n in [(64, 32), (300, 500), (1, 7), (128, 128)]:
        u, _ = np.linalg.qr(rng.normal(size=(m, m)))
        v, _ = np.linalg.qr(rng.normal(size=(n, n)))
        s = np.zeros((m, n))
        k = min(m, n)
        s[np.arange(k), np.arange(k)] = np.concatenate([[5.0], 4.0 * rng.random(k - 1)])
        mats.append(u @ s @ v.T)
    sigmas = cuda_module().batched_power_iteration(mats, 500, 0)
    for a, s in zip(mats, sigmas):
        true = np.linalg.svd(a, compute_uv=False)[0]
        assert s <= true * (1 + 1e-12) and s >= true * (1 - 1e-8)


@pytest.mark.gpu
@gpu
def test_gpu_gram_iteration_is_a_tight_certified_spectral_bound():
    rng = np.random.default_rng(2)
    mats = [rng.normal(size=shape) for shape in [(64, 32), (300, 500), (1, 7), (7, 1), (128, 128), (128, 128), (3, 3)]]
    mats += [np.linalg.qr(rng.normal(size=(64, 64)))[0]]  # every singular value 1: the slowest case
    mats += [1e-150 * rng.normal(size=(40, 30)), 1e100 * rng.normal(size=(30, 40)), np.zeros((5, 4))]
    bounds = cuda_module().gram_spectral_upper(mats)
    for a, (upper, squarings) in zip(mats, bounds):
        true = np.linalg.svd(a, compute_uv=False)[0]
        assert upper >= true and squarings >= 1
        assert upper <= true * (1 + 1e-6) + 1e-290


@pytest.mark.gpu
@gpu
def test_gpu_conv_gram_bound_matches_the_cpu_circulant_bound():
    rng = np.random.default_rng(3)
    conv = lc.Conv2d(rng.normal(size=(16, 8, 3, 3)), rng.normal(size=16), stride=1, padding=1)
    net = lc.Network([conv, lc.ReLU(), lc.Conv2d(rng.normal(size=(4, 16, 5, 5)), None, stride=2, padding=2)],
                     (8, 12, 12))  # small enough to check against the unrolled matrix's SVD
    for index in (0, 2):
        cpu = _core.conv_circulant_spectral_bound(net._core, index)
        gpu_upper, _ = cuda_module().conv_gram_spectral_upper(net._core, index)
        assert gpu_upper == pytest.approx(cpu, rel=1e-6)
        unrolled = np.linalg.svd(_core.layer_dense_matrix(net._core, index), compute_uv=False)[0]
        assert gpu_upper >= unrolled


@pytest.mark.gpu
@gpu
def test_autolip_on_cuda_matches_cpu():
    rng = np.random.default_rng(1)
    net = lc.Network([lc.Dense(rng.normal(size=(200, 100))), lc.ReLU(), lc.Dense(rng.normal(size=(10, 200)))], (100,))
    cpu = lc.lipschitz(net, method="autolip", device="cpu")
    gpu_bound = lc.lipschitz(net, method="autolip", device="cuda")
    assert gpu_bound.upper == pytest.approx(cpu.upper, rel=1e-6)
    assert gpu_bound.upper >= cpu.lower
    assert {layer["how"] for layer in gpu_bound.stats["layers"]} == {"gram-gpu"}


def random_subdomains(rng, net, count, width=0.3, depth=None):
    """Boxes around random points, each with the activation states of its centre on a random part of
    the neurons (so many subdomains are feasible and have fixed prefixes). With depth, each subdomain
    instead fixes its first (up to depth) neurons in layer order, as branch and bound does."""
    from test_subdomain_bounds import pre_activations

    centers = rng.normal(size=(count, net.input_size)) * 0.5
    lowers, uppers = centers - width * rng.random((count, 1)), centers + width * rng.random((count, 1))
    pres = pre_activations(net, centers)
    sizes = [z.shape[1] for z in pres]
    states = []
    for b in range(count):
        signs = np.sign(np.concatenate([z[b] for z in pres])).astype(np.int8)
        if depth is None:
            signs[rng.random(signs.size) >= rng.random() * 1.2] = 0
        else:
            signs[rng.integers(0, depth + 1):] = 0
        states.append(np.split(signs, np.cumsum(sizes)[:-1]))
    return lowers, uppers, states


def assert_bounds_agree(cpu, gpu, rel=1e-9):
    assert cpu["feasible"] == gpu["feasible"]
    if not cpu["feasible"]:
        return
    for key in ("pre_lower", "pre_upper"):
        for a, b in zip(cpu[key], gpu[key]):
            np.testing.assert_allclose(a, b, rtol=rel, atol=1e-12)
    for key in ("jacobian_center", "jacobian_radius", "region_g", "region_h"):
        np.testing.assert_allclose(cpu[key], gpu[key], rtol=rel, atol=1e-12)
    assert gpu["norm_upper"] == pytest.approx(cpu["norm_upper"], rel=rel)
    assert [u[:2] for u in cpu["unstable"]] == [u[:2] for u in gpu["unstable"]]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("p,q", [(2.0, 2.0), (np.inf, np.inf), (1.0, 2.0)])
def test_gpu_subdomain_bounds_match_the_cpu_path(p, q):
    from conftest import random_cnn, random_mlp

    rng = np.random.default_rng(7)
    for net in (random_mlp(rng, [5, 40, 30, 20, 3]), random_mlp(rng, [3, 16, 16, 2], lambda: lc.LeakyReLU(0.2)),
                random_cnn(rng)):
        lowers, uppers, states = random_subdomains(rng, net, 300)
        bounder = cuda_module().GpuSubdomainBounder(net._core)
        # the GPU bounder computes the interval pre-activation bounds only (no linear relaxation)
        intervals = _core.CpuSubdomainBounder(net._core, linear_relaxation=False)
        cpu = _core.bound_subdomains(net._core, lowers, uppers, states, p, q, intervals)
        on_gpu = _core.bound_subdomains(net._core, lowers, uppers, states, p, q, bounder)
        assert sum(c["feasible"] for c in cpu) > 50
        for c, g in zip(cpu, on_gpu):
            assert_bounds_agree(c, g)


@pytest.mark.gpu
@gpu
def test_gpu_spectral_jacobian_norms_match_the_cpu_proof():
    """p = q = 2 is proved on the device up to min(m, n) = 32 (Jacobi estimate, Cholesky proof) and on the
    host beyond; both must give the CPU's certified value, also for a zero Jacobian (every neuron off),
    a Jacobian with one singular value repeated 24 times and single-row or single-column Jacobians."""
    from conftest import random_mlp

    rng = np.random.default_rng(11)
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    nets = [random_mlp(rng, [20, 30, 16]), random_mlp(rng, [40, 24, 36]), random_mlp(rng, [1, 8, 5]),
            random_mlp(rng, [6, 8, 1]), random_mlp(rng, [32, 20, 32]),
            lc.Network([lc.Dense(q, 100 * np.ones(24)), lc.ReLU(), lc.Dense(3 * q.T)], (24,)),  # every neuron on: 3 I
            lc.Network([lc.Dense(rng.normal(size=(8, 4)), -100 * np.ones(8)), lc.ReLU(),  # every neuron off
                        lc.Dense(rng.normal(size=(3, 8)))], (4,))]
    for net in nets:
        lowers, uppers, states = random_subdomains(rng, net, 200)
        bounder = cuda_module().GpuSubdomainBounder(net._core)
        intervals = _core.CpuSubdomainBounder(net._core, linear_relaxation=False)
        cpu = _core.bound_subdomains(net._core, lowers, uppers, states, 2.0, 2.0, intervals)
        on_gpu = _core.bound_subdomains(net._core, lowers, uppers, states, 2.0, 2.0, bounder)
        for c, g in zip(cpu, on_gpu):
            assert c["feasible"] == g["feasible"]
            if c["feasible"]:
                # abs: where J = 0 the CPU rounds the zero radius up to a subnormal (its bound ~1e-162), the GPU not
                assert g["norm_upper"] == pytest.approx(c["norm_upper"], rel=1e-9, abs=1e-150)
                assert g["norm_upper"] >= np.linalg.norm(g["jacobian_center"], 2) * (1 - 1e-14)
        assert all(v >= 0 for v in bounder.last_timing().values()) and bounder.last_timing()["device_s"] > 0


@pytest.mark.gpu
@gpu
def test_gpu_subdomain_bounds_contain_sampled_jacobians():
    from conftest import random_mlp
    from test_subdomain_bounds import pre_activations

    rng = np.random.default_rng(8)
    net = random_mlp(rng, [4, 24, 24, 3])
    lowers, uppers, _ = random_subdomains(rng, net, 50)
    bounder = cuda_module().GpuSubdomainBounder(net._core)
    for lo, hi, b in zip(lowers, uppers, _core.bound_subdomains(net._core, lowers, uppers, [], 2.0, 2.0, bounder)):
        x = lo + (hi - lo) * rng.random((200, net.input_size))
        for z, zl, zu in zip(pre_activations(net, x), b["pre_lower"], b["pre_upper"]):
            assert np.all(z >= zl) and np.all(z <= zu)
        assert np.all(np.abs(net.jacobian(x) - b["jacobian_center"]) <= b["jacobian_radius"])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("p", [1.0, 2.0, np.inf])
def test_bab_on_the_gpu_finds_the_cpu_value(p):
    from conftest import random_mlp

    rng = np.random.default_rng(9)
    net = random_mlp(rng, [3, 20, 20, 2])
    domain = lc.Box(-np.ones(3), np.ones(3))
    cpu = lc.lipschitz(net, method="bab", norm=p, domain=domain, tol=1e-9, device="cpu")
    on_gpu = lc.lipschitz(net, method="bab", norm=p, domain=domain, tol=1e-9, device="cuda")
    assert cpu.exact and on_gpu.exact and on_gpu.stats["device"] == "cuda"
    assert on_gpu.upper == pytest.approx(cpu.upper, rel=1e-8)
    assert on_gpu.lower <= cpu.upper * (1 + 1e-12) and cpu.lower <= on_gpu.upper * (1 + 1e-12)


@pytest.mark.gpu
@gpu
def test_gpu_bounder_rejects_smooth_activations():
    net = lc.Network([lc.Dense(np.eye(2)), lc.Tanh(), lc.Dense(np.eye(2))], (2,))
    with pytest.raises(ValueError, match="elementwise piecewise-linear"):
        cuda_module().GpuSubdomainBounder(net._core)


@pytest.mark.gpu
@gpu
def test_lipcert_bench_on_the_gpu_matches_the_cpu(tmp_path):
    import json
    import subprocess

    from conftest import random_mlp
    from test_network_file import bench_binary

    random_mlp(np.random.default_rng(6), [4, 16, 16, 2]).save(tmp_path / "net.npz")
    results = {}
    for device in ("cpu", "cuda"):
        done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--radius", "0.2", "--norm", "2",
                               "--device", device], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        results[device] = json.loads(done.stdout)
    assert results["cuda"]["device"] == "cuda" and results["cuda"]["exact"]
    assert results["cuda"]["upper"] == pytest.approx(results["cpu"]["upper"], rel=1e-5)

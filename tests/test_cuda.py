"""Optional CUDA kernels: loaded lazily, compared with the CPU path where a GPU exists."""
import numpy as np
import pytest

import lipcert as lc
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
    rng = np.random.default_rng(0)
    mats = [rng.normal(size=(m, n)) for m, n in [(64, 32), (300, 500), (1, 7), (128, 128)]]
    sigmas = cuda_module().batched_power_iteration(mats, 500, 0)
    for a, s in zip(mats, sigmas):
        true = np.linalg.svd(a, compute_uv=False)[0]
        assert s <= true * (1 + 1e-12) and s >= true * (1 - 1e-4)


@pytest.mark.gpu
@gpu
def test_autolip_on_cuda_matches_cpu():
    rng = np.random.default_rng(1)
    net = lc.Network([lc.Dense(rng.normal(size=(200, 100))), lc.ReLU(), lc.Dense(rng.normal(size=(10, 200)))], (100,))
    cpu = lc.lipschitz(net, method="autolip", device="cpu")
    gpu_bound = lc.lipschitz(net, method="autolip", device="cuda")
    assert gpu_bound.upper == pytest.approx(cpu.upper, rel=1e-8)

"""lipcert's network file read by the C++ core (what lipcert-bench and embedders use), `lipcert export`,
and the lipcert-bench binary against the Python API."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import numpy as np
import pytest

import lipcert as lc
from lipcert import _core
from conftest import brute_force_global_constant, random_cnn, random_mlp


def networks():
    rng = np.random.default_rng(0)
    cnn = random_cnn(rng, activation=lambda: lc.LeakyReLU(0.1))
    # A Fortran-ordered weight and a per-element convolution bias (both written as such by numpy).
    cnn.layers[0].weight = np.asfortranarray(cnn.layers[0].weight)
    conv = lc.Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 3, 3)), padding=0)
    smooth = lc.Network([conv, lc.Tanh(), lc.Flatten(), lc.Dense(np.asfortranarray(rng.normal(size=(18, 4)).T)),
                         lc.Sigmoid()], (1, 5, 5))
    group_sorted = lc.Network([lc.Conv2d(rng.normal(size=(4, 1, 3, 3))), lc.MaxMin(), lc.Flatten(),
                               lc.Dense(rng.normal(size=(6, 36))), lc.MaxMin()], (1, 5, 5))
    return [random_mlp(rng, [3, 7, 5, 2]), lc.Network(cnn.layers, (2, 7, 7)), smooth, group_sorted]


@pytest.mark.parametrize("index", range(4))
def test_the_cpp_reader_rebuilds_the_same_network(tmp_path, index):
    net = networks()[index]
    path = tmp_path / "net.npz"
    net.save(path)
    core = _core.load_network_file(str(path))
    x = np.random.default_rng(1).normal(size=(5, net.input_size))
    assert core.input_size == net.input_size and core.output_size == net.output_size
    np.testing.assert_array_equal(core.forward(x), net(x.reshape(5, *net.input_shape)))


def test_the_cpp_reader_rejects_what_it_cannot_read(tmp_path):
    net = networks()[0]
    arrays = dict(np.load(_saved(net, tmp_path)))
    np.savez_compressed(tmp_path / "compressed.npz", **arrays)
    with pytest.raises(ValueError, match="compressed"):
        _core.load_network_file(str(tmp_path / "compressed.npz"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a ZIP"):
        _core.load_network_file(str(tmp_path / "text.npz"))
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match="missing array 'format'"):
        _core.load_network_file(str(tmp_path / "other.npz"))
    del arrays["layer2.bias"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(ValueError, match="layer2.bias"):
        _core.load_network_file(str(tmp_path / "partial.npz"))
    arrays["layer2.bias"] = np.array([np.nan] * 5)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(ValueError, match="NaN"):
        _core.load_network_file(str(tmp_path / "nan.npz"))
    with pytest.raises(ValueError, match="cannot open"):
        _core.load_network_file(str(tmp_path / "missing.npz"))


def _saved(net, tmp_path):
    path = tmp_path / "saved.npz"
    net.save(path)
    with zipfile.ZipFile(path) as z:  # np.savez stores members uncompressed, which the reader needs
        assert all(info.compress_type == zipfile.ZIP_STORED for info in z.infolist())
    return path


def test_export_writes_lipcert_format_from_another_format(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(5)
    weights = [rng.normal(size=(7, 3)), rng.normal(size=(5, 7)), rng.normal(size=(2, 5))]
    cell = np.empty(3, dtype=object)
    cell[:] = weights
    mat = tmp_path / "net.mat"
    savemat(mat, {"weights": cell})  # LipSDP's layout: a cell array of weights, ReLU between, no biases
    net = lc.Network([lc.Dense(weights[0]), lc.ReLU(), lc.Dense(weights[1]), lc.ReLU(), lc.Dense(weights[2])], (3,))
    out = tmp_path / "exported.npz"
    done = subprocess.run([sys.executable, "-m", "lipcert", "export", str(mat), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(2).normal(size=(4, 3))
    np.testing.assert_allclose(lc.load(out)(x), net(x), rtol=1e-12)
    np.testing.assert_allclose(_core.load_network_file(str(out)).forward(x), net(x), rtol=1e-12)
    bad = subprocess.run([sys.executable, "-m", "lipcert", "export", str(mat), str(tmp_path / "x.onnx")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and ".npz" in bad.stderr


def bench_binary():
    found = shutil.which("lipcert-bench", path=sysconfig.get_path("scripts")) or shutil.which("lipcert-bench")
    assert found, "lipcert-bench is installed with the package (next to the lipcert script)"
    return found


@pytest.mark.parametrize("norm,p", [("2", 2.0), ("inf", np.inf), ("1,inf", (1.0, np.inf))])
def test_lipcert_bench_agrees_with_the_python_api(tmp_path, norm, p):
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [3, 8, 8, 2])
    net.save(tmp_path / "net.npz")
    center = rng.normal(size=3)
    np.save(tmp_path / "center.npy", center)
    done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--radius", "0.3", "--center",
                           str(tmp_path / "center.npy"), "--norm", norm, "--tol", "1e-9"],
                          capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["method"] == "bab" and result["exact"] and result["status"] == "converged"
    reference = lc.lipschitz(net, method="bab", norm=p, domain=lc.Ball(center, 0.3), tol=1e-9)
    assert reference.exact
    assert result["lower"] <= reference.upper and reference.lower <= result["upper"]
    assert result["upper"] == pytest.approx(reference.upper, rel=1e-8)
    witness = np.array(result["witness"])
    assert np.all(np.abs(witness - center) <= 0.3)


def test_lipcert_bench_without_a_radius_gives_the_exact_global_constant(tmp_path):
    net = random_mlp(np.random.default_rng(6), [3, 6, 5, 2], lambda: lc.LeakyReLU(0.2))
    net.save(tmp_path / "net.npz")
    done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--norm", "inf", "--tol", "1e-9"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["exact"] and result["radius"] is None
    reference = lc.lipschitz(net, method="bab", norm=np.inf, tol=1e-9)
    assert result["upper"] == pytest.approx(reference.upper, rel=1e-9)
    assert result["upper"] == pytest.approx(brute_force_global_constant(net, np.inf, np.inf), rel=1e-9)


def test_lipcert_bench_caps_an_unfinished_search_by_the_naive_bound(tmp_path):
    rng = np.random.default_rng(8)
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))  # orthogonal layers: naive = 1, wide intervals
    net = lc.Network([lc.Dense(q, np.zeros(16)), lc.ReLU(), lc.Dense(q.T, np.zeros(16))], (16,))
    net.save(tmp_path / "net.npz")
    done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--radius", "1", "--max-nodes", "3"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    naive = lc.lipschitz(net, method="naive").upper
    assert result["search_upper"] > naive and result["upper"] == naive and result["upper_from"] == "naive"
    assert result["lower"] <= result["upper"]


@pytest.mark.parametrize("method,norm,p", [("sdp", "2", 2.0), ("sdp-layer", "inf,1", (np.inf, 1.0)),
                                           ("seqlip", "1,2", (1.0, 2.0))])
def test_lipcert_bench_global_bounds_agree_with_the_python_api(tmp_path, method, norm, p):
    rng = np.random.default_rng(5)
    net = lc.Network([lc.Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1), lc.LeakyReLU(0.1), lc.Flatten(),
                      lc.Dense(rng.normal(size=(6, 32))), lc.Tanh(), lc.Dense(rng.normal(size=(6, 6))), lc.MaxMin(),
                      lc.Dense(rng.normal(size=(3, 6)))],
                     input_shape=(1, 4, 4))
    net.save(tmp_path / "net.npz")
    done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--method", method, "--norm", norm],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["method"] == method and result["certified"]
    reference = lc.lipschitz(net, method=method, norm=p)
    assert result["upper"] == pytest.approx(reference.upper, rel=1e-12)


def test_lipcert_bench_sdp_takes_a_convolutional_network_too_large_to_unroll_channel_wise(tmp_path):
    rng = np.random.default_rng(7)
    net = lc.Network([lc.Conv2d(rng.normal(size=(8, 1, 3, 3)) * 0.5, padding=1), lc.ReLU(),
                      lc.Conv2d(rng.normal(size=(8, 8, 3, 3)) * 0.2, padding=1), lc.ReLU(), lc.AvgPool2d((24, 24)),
                      lc.Flatten(), lc.Dense(rng.normal(size=(3, 8)))], input_shape=(1, 24, 24))
    net.save(tmp_path / "net.npz")
    done = subprocess.run([bench_binary(), str(tmp_path / "net.npz"), "--method", "sdp"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["formulation"] == "channel" and result["certified"]
    reference = lc.lipschitz(net, method="sdp")
    assert reference.stats["formulation"] == "channel"
    assert result["upper"] == pytest.approx(reference.upper, rel=1e-12)


@pytest.mark.parametrize("args,message", [
    (["missing.npz", "--radius", "0.1"], "cannot open"),
    (["{net}", "--method", "lipsdp"], "--method"),
    (["{net}", "--radius", "-1"], "--radius"),
    (["{net}", "--radius", "0.1", "--norm", "3"], "--norm"),
    (["{net}", "--radius", "0.1", "--bogus", "1"], "unknown option"),
    (["{net}", "--center", "c.npy"], "--center needs --radius"),
    (["{net}", "--device", "cuda"], "runs on the CPU"),
])
def test_lipcert_bench_bad_input_exits_2_with_a_message(tmp_path, args, message):
    random_mlp(np.random.default_rng(4), [2, 3, 1]).save(tmp_path / "net.npz")
    args = [a.format(net=tmp_path / "net.npz") for a in args]
    done = subprocess.run([bench_binary(), *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and done.stdout == ""

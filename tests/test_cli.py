"""The lipcert command line, run as a user would (a subprocess)."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import lipcert as lc
from conftest import random_mlp


def run(*args):
    return subprocess.run([sys.executable, "-m", "lipcert", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.npz"
    random_mlp(np.random.default_rng(0), [4, 8, 3]).save(path)
    return path


def test_bound_json_prints_one_object_with_the_bound_fields(model):
    out = run("bound", str(model), "--method", "autolip", "--norm", "2", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"upper", "lower", "certified", "exact", "method", "norm", "time_s", "witness", "stats"}
    assert data["certified"] and data["method"] == "autolip" and data["lower"] <= data["upper"]
    again = lc.lipschitz(lc.load(model), method="autolip")
    assert data["upper"] == pytest.approx(again.upper)


def test_bound_accepts_mixed_norms_and_human_output(model):
    out = run("bound", str(model), "--method", "naive", "--norm", "inf,1")
    assert out.returncode == 0, out.stderr
    assert "naive" in out.stdout and "linf->l1" in out.stdout


def test_bound_method_sdp_prints_a_verifiable_certificate(model):
    out = run("bound", str(model), "--method", "sdp", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["method"] == "sdp" and data["certified"]
    net = lc.load(model)
    b = lc.Bound(**{**data, "norm": (2.0, 2.0), "witness": None})
    assert lc.verify_certificate(net, b)
    assert data["upper"] <= lc.lipschitz(net, method="naive").upper * (1 + 1e-12)


def test_bound_method_bab_gives_the_exact_global_constant(model):
    out = run("bound", str(model), "--method", "bab", "--tol", "1e-9", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["method"] == "bab" and data["exact"] and data["stats"]["status"] == "converged"
    net = lc.load(model)
    jac = net.jacobian(np.asarray(data["witness"])[None])[0]
    assert data["lower"] == pytest.approx(np.linalg.norm(jac, 2), rel=1e-9)
    assert data["upper"] <= lc.lipschitz(net, method="sdp").upper * (1 + 1e-9)


def test_demo_runs_on_the_shipped_networks():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    assert "LipSDP random" in out.stdout and "autolip" in out.stdout


@pytest.mark.parametrize("args,message", [
    (("bound", "/nonexistent.onnx"), "no such file"),
    (("bound", "{model}", "--method", "nope"), "unknown method"),
    (("bound", "{model}", "--norm", "3"), "norm"),
])
def test_errors_print_one_line_and_exit_non_zero(model, args, message):
    out = run(*(a.format(model=model) for a in args))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_malformed_model_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    out = run("bound", str(bad))
    assert out.returncode == 2 and "not a readable" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("ball_norm", ["inf", "1"])
def test_local_runs_branch_and_bound_on_a_ball(tmp_path, ball_norm):
    net = random_mlp(np.random.default_rng(1), [3, 6, 6, 2])
    model = tmp_path / "net.npz"
    net.save(model)
    center = tmp_path / "x.npy"
    np.save(center, np.array([0.1, -0.2, 0.3]))
    out = run("local", str(model), "--center", str(center), "--radius", "0.1", "--norm", "2", "--tol", "1e-9",
              "--time-limit", "60", "--ball-norm", ball_norm, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["method"] == "bab" and data["exact"] and data["certified"]
    ball = lc.Ball(np.array([0.1, -0.2, 0.3]), 0.1, p=math.inf if ball_norm == "inf" else 1)
    again = lc.lipschitz(net, method="bab", domain=ball, tol=1e-9)
    assert data["upper"] == pytest.approx(again.upper, rel=1e-9)
    assert ball.contains(np.array(data["witness"]))


def test_local_rejects_a_centre_of_the_wrong_size(model, tmp_path):
    center = tmp_path / "x.npy"
    np.save(center, np.zeros(7))
    out = run("local", str(model), "--center", str(center), "--radius", "0.1")
    assert out.returncode == 2 and "--center has 7 values" in out.stderr

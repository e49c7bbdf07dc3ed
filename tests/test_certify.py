"""certify: radii against attacks, accuracies, the per-pair bounds, and the command line."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import lipcert as lc
from conftest import random_mlp


def _data(net, n, rng):
    x = rng.normal(size=(n, net.input_size))
    y = net(x).argmax(axis=1)
    y[::4] = (y[::4] + 1) % net.output_size  # some misclassified points
    return x, y


@pytest.mark.parametrize("method", ["naive", "sdp", "auto"])
def test_certified_accuracy_is_at_most_clean_and_radii_are_nonnegative(method):
    rng = np.random.default_rng(0)
    net = random_mlp(rng, [4, 12, 12, 3])
    x, y = _data(net, 40, rng)
    r = lc.certify(net, x, y, eps=0.05, method=method)
    assert r.certified and r.margins_certified
    assert 0 <= r.certified_accuracy <= r.clean_accuracy <= 1
    assert np.all(r.radii >= 0) and np.all(r.radii[net(x).argmax(1) != y] == 0)
    assert r.certified_accuracy == pytest.approx(np.mean(r.radii > 0.05))
    assert r.certified_accuracy_at(0.0) <= r.clean_accuracy


def test_pairwise_radius_is_at_least_margin_over_sqrt2_l():
    rng = np.random.default_rng(1)
    net = random_mlp(rng, [5, 10, 4])
    x, y = _data(net, 30, rng)
    r = lc.certify(net, x, y, eps=0.0, method="naive")
    big_l = lc.lipschitz(net, method="naive").upper
    logits = net(x)
    for k in np.flatnonzero(r.radii > 0):
        top = np.sort(logits[k])[::-1]
        assert r.radii[k] >= (top[0] - top[1]) / (math.sqrt(2) * big_l) * (1 - 1e-9)


@pytest.mark.parametrize("p", [2, math.inf])
def test_no_attack_within_a_certified_radius_flips_the_prediction(p):
    rng = np.random.default_rng(2)
    net = random_mlp(rng, [3, 16, 16, 3], scale=2.0)
    x, y = _data(net, 12, rng)
    r = lc.certify(net, x, y, eps=0.0, norm=p, method="auto")
    for k in np.flatnonzero(r.radii > 0):
        c, radius = y[k], r.radii[k] * 0.999
        for j in range(net.output_size):
            if j == c:
                continue
            # projected gradient ascent on f_j - f_c inside the ball, from several starts
            for start in range(4):
                delta = rng.normal(size=net.input_size)
                delta *= radius / np.linalg.norm(delta, p) * rng.uniform()
                for _ in range(60):
                    g = net.jacobian((x[k] + delta)[None])[0]
                    grad = g[j] - g[c]
                    step = grad / (np.linalg.norm(grad) + 1e-300) if p == 2 else np.sign(grad)
                    delta = delta + 0.1 * radius * step
                    norm = np.linalg.norm(delta, p)
                    if norm > radius:
                        delta = delta * radius / norm if p == 2 else np.clip(delta, -radius, radius)
                assert net((x[k] + delta)[None])[0].argmax() == c


def test_smooth_networks_are_reported_with_estimated_margins():
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [3, 8, 3], activation=lc.Tanh)
    x, y = _data(net, 10, rng)
    r = lc.certify(net, x, y, eps=0.01, method="naive")
    assert not r.margins_certified and not r.certified
    assert r.certified_accuracy <= r.clean_accuracy


def test_bad_arguments_are_rejected():
    net = random_mlp(np.random.default_rng(4), [3, 5, 2])
    x = np.zeros((2, 3))
    with pytest.raises(ValueError):
        lc.certify(net, x, [0, 2], eps=0.1)
    with pytest.raises(ValueError):
        lc.certify(net, x, [0, 1], eps=-1)
    with pytest.raises(ValueError):
        lc.certify(net, np.zeros((2, 4)), [0, 1], eps=0.1)
    with pytest.raises(ValueError):
        lc.certify(net, x, [0, 1], eps=0.1, method="bab")


def test_cli_certify_prints_json(tmp_path):
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [4, 8, 3])
    x, y = _data(net, 20, rng)
    net.save(tmp_path / "net.npz")
    np.savez(tmp_path / "data.npz", X=x, y=y)
    out = subprocess.run([sys.executable, "-m", "lipcert", "certify", str(tmp_path / "net.npz"), "--data",
                          str(tmp_path / "data.npz"), "--eps", "0.02", "--json"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    expected = lc.certify(net, x, y, eps=0.02)
    assert data["certified_accuracy"] == pytest.approx(expected.certified_accuracy)
    assert data["clean_accuracy"] == pytest.approx(expected.clean_accuracy)
    bad = subprocess.run([sys.executable, "-m", "lipcert", "certify", str(tmp_path / "net.npz"), "--data",
                          str(tmp_path / "net.npz"), "--eps", "0.02"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "X and y" in bad.stderr

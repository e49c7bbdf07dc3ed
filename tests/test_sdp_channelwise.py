"""Channel-wise LipSDP (sdp on convolutional networks too large to unroll): the per-frequency LMIs
against the torus LMI they block-diagonalise, the solve against cvxpy on that LMI, the bound against
sampled Jacobians, the certificate, and the architectures it refuses."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lipcert
from lipcert import _core
from lipcert.errors import UnsupportedLayerError
from lipcert.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, ReLU, Tanh
from lipcert.methods.sdp import sdp_bound

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "glipsdp" / "mnist"


def cnn(rng, input_shape, convs, activation=LeakyReLU, outputs=2, scale=0.5):
    """Convolutions (out_channels, (kh, kw), (pad_h, pad_w)), each followed by `activation`, then a
    global average pool and a dense layer."""
    layers, channels = [], input_shape[0]
    for out, kernel, padding in convs:
        layers += [Conv2d(rng.normal(size=(out, channels, *kernel)) * scale, padding=padding), activation()]
        channels = out
    _, last = lipcert.Network(layers, input_shape).layer_shapes()[-1]
    layers += [AvgPool2d(last[1:]), Flatten(), Dense(rng.normal(size=(outputs, channels)))]
    return lipcert.Network(layers, input_shape)


def torus_size(net):
    """The torus the core uses: no input position of any convolution wraps onto a valid one."""
    sizes = [(i[1] + c.padding[0], i[2] + c.padding[1], o[1], o[2])
             for c, (i, o) in zip(net.layers, net.layer_shapes()) if isinstance(c, Conv2d)]
    return max(max(s[0], s[2]) for s in sizes), max(max(s[1], s[3]) for s in sizes)


def circular_conv(weight, padding, torus):
    """The convolution on the torus as a dense matrix (channel-major, row-major positions)."""
    out_ch, in_ch, kh, kw = weight.shape
    nh, nw = torus
    n = nh * nw
    m = np.zeros((out_ch * n, in_ch * n))
    for y in range(nh):
        for x in range(nw):
            for a in range(kh):
                for b in range(kw):
                    source = ((y + a - padding[0]) % nh) * nw + (x + b - padding[1]) % nw
                    for o in range(out_ch):
                        m[o * n + y * nw + x, np.arange(in_ch) * n + source] += weight[o, :, a, b]
    return m


def lipsdp_matrix(weights, alpha, beta, multipliers, rho):
    """LipSDP-Neuron's M(rho, lambda) for weights W_0..W_l (dense, independent of the core)."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights[:-1]]
    offsets = np.cumsum([0] + sizes)
    m = np.zeros((offsets[-1], offsets[-1]))
    m[:sizes[0], :sizes[0]] = rho * np.eye(sizes[0])
    for k in range(1, len(sizes)):
        t = np.diag(multipliers[offsets[k] - sizes[0]:offsets[k + 1] - sizes[0]])
        a, c = alpha[k - 1] * beta[k - 1], (alpha[k - 1] + beta[k - 1]) / 2
        prev, here = slice(offsets[k - 1], offsets[k]), slice(offsets[k], offsets[k + 1])
        m[prev, prev] += a * weights[k - 1].T @ t @ weights[k - 1]
        m[here, prev] -= c * t @ weights[k - 1]
        m[prev, here] -= (c * t @ weights[k - 1]).T
        m[here, here] += t
    m[offsets[-2]:, offsets[-2]:] -= weights[-1].T @ weights[-1]
    return m


def torus_lipsdp(net, channel_multipliers, rho):
    """M of the network taken onto the torus (activations' slopes widened to include 0, the pool a sum
    over the torus), with each channel's multiplier at every position."""
    torus = torus_size(net)
    positions = torus[0] * torus[1]
    convs = [layer for layer in net.layers if isinstance(layer, Conv2d)]
    dense = [layer for layer in net.layers if isinstance(layer, Dense)][0]
    pooled = [i for layer, (i, _) in zip(net.layers, net.layer_shapes()) if isinstance(layer, AvgPool2d)][0]
    weights = [circular_conv(np.asarray(c.weight), c.padding, torus) for c in convs]
    pool = np.kron(np.eye(pooled[0]), np.ones((1, positions))) / (pooled[1] * pooled[2])
    weights.append(np.asarray(dense.weight) @ pool)
    activations = [layer for layer in net.layers if layer.is_activation]
    alpha = [min(slopes(a)[0], 0.0) for a in activations]
    beta = [max(slopes(a)[1], 0.0) for a in activations]
    multipliers = np.concatenate([np.repeat(lam, positions) for lam in channel_multipliers])
    return lipsdp_matrix(weights, alpha, beta, multipliers, rho)


def slopes(activation):
    if isinstance(activation, LeakyReLU):
        return (min(activation.negative_slope, 1.0), max(activation.negative_slope, 1.0))
    return (0.0, 1.0)  # ReLU, Tanh


NETS = [
    ((1, 4, 3), [(2, (3, 2), (1, 0)), (3, (3, 2), (1, 0))]),  # odd torus, valid padding along the width
    ((2, 4, 4), [(3, (3, 3), (1, 1)), (2, (1, 1), (0, 0))]),  # even torus: four self-conjugate frequencies
    ((1, 3, 5), [(2, (2, 2), (1, 1)), (2, (2, 2), (0, 0)), (2, (3, 3), (1, 1))]),
]


@pytest.mark.parametrize("shape, convs", NETS)
def test_frequency_lmis_are_the_torus_lmi_block_diagonalised(shape, convs):
    rng = np.random.default_rng(1)
    net = cnn(rng, shape, convs)
    parts, groups, n = _core.channelwise_lipsdp(net._core)
    lam = rng.uniform(0.5, 2.0, size=n)
    rho = 3.0
    from_parts = np.sort(np.concatenate([
        np.linalg.eigvalsh(lipsdp_matrix([np.asarray(w) for w in weights], alpha, beta, lam[np.asarray(g)], rho))
        for (weights, alpha, beta, _), g in zip(parts, groups)]))
    offsets = np.cumsum([0] + [c[0] for c in convs])
    torus = torus_lipsdp(net, [lam[offsets[k]:offsets[k + 1]] for k in range(len(convs))], rho)
    eigenvalues = np.sort(np.linalg.eigvalsh(torus))
    # Conjugate frequencies share a part whose real form has both their eigenvalues.
    assert eigenvalues.shape == from_parts.shape
    np.testing.assert_allclose(from_parts, eigenvalues, atol=1e-10 * np.abs(eigenvalues).max())


def test_channelwise_solve_equals_cvxpy_on_the_torus_lmi():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(2)
    net = cnn(rng, (1, 3, 3), [(2, (2, 2), (1, 1)), (2, (2, 2), (0, 0))])
    result = _core.lipsdp_channelwise_solve(net._core)
    assert result["status"] == "optimal"
    n = len(result["multipliers"])

    def matrix(rho, lam):
        return torus_lipsdp(net, [lam[:2], lam[2:]], rho)

    base = matrix(0.0, np.zeros(n))
    rho = cp.Variable()
    lam = cp.Variable(n)
    m = base + rho * (matrix(1.0, np.zeros(n)) - base)
    for g in range(n):
        m = m + lam[g] * (matrix(0.0, np.eye(n)[g]) - base)
    problem = cp.Problem(cp.Minimize(rho), [(m + m.T) / 2 >> 0, lam >= 0])
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == "optimal"
    assert result["certified_upper"] == pytest.approx(math.sqrt(rho.value), rel=1e-4)
    assert result["certified_upper"] >= math.sqrt(rho.value) * (1 - 1e-6)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), activation=st.sampled_from([ReLU, LeakyReLU, Tanh]),
       pad=st.sampled_from([(0, 0), (1, 1), (1, 0)]), channels=st.integers(1, 3))
def test_channelwise_bound_is_above_every_sampled_jacobian(seed, activation, pad, channels):
    rng = np.random.default_rng(seed)
    net = cnn(rng, (channels, 5, 4), [(channels + 1, (3, 3), pad), (2, (2, 3), (1, 1))], activation, outputs=3,
              scale=1.0)
    upper, certified, stats = sdp_bound(net, 2.0, 2.0, formulation="channel")
    assert certified and stats["formulation"] == "channel"
    x = rng.normal(size=(300, *net.input_shape)) * 3
    sampled = max(np.linalg.norm(j, 2) for j in net.jacobian(x))
    assert upper >= sampled


def wide_cnn(seed=3):
    """Too large to unroll (8 x 24 x 24 neurons into an 8 x 24 x 24 convolution)."""
    return cnn(np.random.default_rng(seed), (1, 24, 24), [(8, (3, 3), (1, 1)), (8, (3, 3), (1, 1))], outputs=4)


def test_sdp_falls_back_to_channelwise_and_its_certificate_verifies():
    net = wide_cnn()
    b = lipcert.lipschitz(net, method="sdp")
    assert b.certified and b.stats["formulation"] == "channel"
    assert b.stats["frequencies"] == (25 * 25 + 1) // 2
    assert b.upper <= lipcert.lipschitz(net, method="autolip").upper
    assert lipcert.verify_certificate(net, b)
    tampered = b.stats["multipliers"].copy()
    tampered[8:] = [0.5 * v for v in tampered[8:]]  # the second layer's channels
    b.stats["multipliers"] = tampered
    assert not lipcert.verify_certificate(net, b)


def test_auto_takes_channelwise_sdp_where_its_estimate_fits():
    net = wide_cnn()
    b = lipcert.lipschitz(net, method="auto")
    assert "sdp" in b.stats["candidates"] and b.upper <= b.stats["candidates"]["sdp"]
    assert b.upper < lipcert.lipschitz(net, method="autolip").upper
    assert "sdp" not in lipcert.lipschitz(net, method="auto", time_limit=1e-3).stats["candidates"]


@pytest.mark.parametrize("build, message", [
    (lambda rng: lipcert.Network([Conv2d(rng.normal(size=(2, 1, 3, 3)), stride=2), ReLU(), AvgPool2d((3, 3)),
                                  Flatten(), Dense(rng.normal(size=(2, 2)))], (1, 7, 7)), "stride"),
    (lambda rng: lipcert.Network([Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1), ReLU(), Flatten(),
                                  Dense(rng.normal(size=(2, 98)))], (1, 7, 7)), "global average pool"),
    (lambda rng: lipcert.Network([Conv2d(rng.normal(size=(2, 1, 3, 3)), padding=1),
                                  Conv2d(rng.normal(size=(2, 2, 3, 3)), padding=1), ReLU(), AvgPool2d((7, 7)),
                                  Flatten(), Dense(rng.normal(size=(2, 2)))], (1, 7, 7)), "activation"),
])
def test_channelwise_refuses_what_it_cannot_split(build, message):
    net = build(np.random.default_rng(4))
    with pytest.raises(UnsupportedLayerError, match=message):
        sdp_bound(net, 2.0, 2.0, formulation="channel")


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/glipsdp/mnist")
@pytest.mark.parametrize("name", ["cnn_C3_CH8", "cnn_C5_CH8"])
def test_glipsdp_mnist_cnn_bound_between_sampled_and_autolip(name):
    net = lipcert.load(MNIST / f"{name}.onnx")
    b = lipcert.lipschitz(net, method="sdp")
    assert b.certified and b.stats["formulation"] == "channel"
    autolip = lipcert.lipschitz(net, method="autolip")
    assert autolip.lower <= b.upper <= autolip.upper
    assert lipcert.verify_certificate(net, b)

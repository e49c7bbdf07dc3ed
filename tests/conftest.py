"""Shared fixtures and independent reference implementations (numpy only, no lipcert internals)."""
import itertools
import math
import os
from pathlib import Path

import numpy as np
import pytest

import lipcert as lc

SHARED_DATA = Path(os.environ.get("LIPCERT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set LIPCERT_SHARED_DATA)")
    return SHARED_DATA


# ---- reference forward pass ------------------------------------------------------------------

def ref_conv2d(x, w, b, stride, padding):
    """x (N, C, H, W), w (O, C, kh, kw): direct cross-correlation with zero padding."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.einsum("ncab,ocab->no", patch, w)
    b = np.asarray(b)
    return y + (b[None, :, None, None] if b.ndim == 1 else b[None])


def ref_avgpool(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]].mean(axis=(2, 3))
    return y


def ref_forward(net: lc.Network, x):
    x = np.asarray(x, dtype=np.float64)
    for layer in net.layers:
        if isinstance(layer, lc.Dense):
            x = x @ layer.weight.T + layer.bias
        elif isinstance(layer, lc.Conv2d):
            x = ref_conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding)
        elif isinstance(layer, lc.AvgPool2d):
            x = ref_avgpool(x, layer.kernel_size, layer.stride)
        elif isinstance(layer, lc.Flatten):
            x = x.reshape(x.shape[0], -1)
        elif isinstance(layer, lc.ReLU):
            x = np.maximum(x, 0)
        elif isinstance(layer, lc.LeakyReLU):
            x = np.where(x > 0, x, layer.negative_slope * x)
        elif isinstance(layer, lc.Tanh):
            x = np.tanh(x)
        elif isinstance(layer, lc.Sigmoid):
            x = 1 / (1 + np.exp(-x))
        elif isinstance(layer, lc.MaxMin):
            a, b = np.split(x, 2, axis=1)
            x = np.concatenate([np.maximum(a, b), np.minimum(a, b)], axis=1)
        else:
            raise AssertionError(layer)
    return x


# ---- random networks --------------------------------------------------------------------------

ACTIVATIONS = [lc.ReLU, lambda: lc.LeakyReLU(0.1), lc.Tanh, lc.Sigmoid]


def random_mlp(rng, sizes, activation=lc.ReLU, scale=1.0):
    layers = []
    for i in range(len(sizes) - 1):
        w = rng.normal(size=(sizes[i + 1], sizes[i])) * scale / math.sqrt(sizes[i])
        layers.append(lc.Dense(w, rng.normal(size=sizes[i + 1]) * 0.5))
        if i < len(sizes) - 2:
            layers.append(activation())
    return lc.Network(layers, (sizes[0],))


def random_cnn(rng, activation=lc.ReLU):
    layers = [
        lc.Conv2d(rng.normal(size=(3, 2, 3, 3)) / 3, rng.normal(size=3) * 0.1, stride=1, padding=1),
        activation(),
        lc.Conv2d(rng.normal(size=(4, 3, 3, 2)) / 4, rng.normal(size=4) * 0.1, stride=(2, 1), padding=(1, 0)),
        activation(),
        lc.AvgPool2d(2, stride=1),
        lc.Flatten(),
        lc.Dense(rng.normal(size=(3, 4 * 3 * 5)) / 8, rng.normal(size=3)),
    ]
    return lc.Network(layers, (2, 7, 7))


# ---- exact norms and brute-force Lipschitz constants -----------------------------------------

def exact_matrix_norm(a, p, q):
    """||A||_{p->q} exactly for small matrices by enumerating the extreme points of the p-ball."""
    a = np.atleast_2d(a)
    m, n = a.shape
    if p == 1:
        return max(np.linalg.norm(a[:, j], q) for j in range(n))
    if p == math.inf:
        return max(np.linalg.norm(a @ np.array(s), q) for s in itertools.product([-1.0, 1.0], repeat=n))
    if q == 2:
        return np.linalg.svd(a, compute_uv=False)[0]
    if q == math.inf:
        return np.linalg.norm(a, axis=1).max()
    return max(np.linalg.norm(a.T @ np.array(s)) for s in itertools.product([-1.0, 1.0], repeat=m))


def affine_stages(net):
    """(stages, slopes): a Dense/ReLU/LeakyReLU network as alternating affine maps (consecutive Dense
    layers multiplied out, identities where an activation starts or ends it) and activation slopes."""
    stages, slopes, pending = [], [], lc.Dense(np.eye(net.input_size), np.zeros(net.input_size))
    for layer in net.layers:
        if isinstance(layer, lc.Dense):
            pending = lc.Dense(layer.weight @ pending.weight, layer.weight @ pending.bias + layer.bias)
        elif layer.is_activation:
            stages.append(pending)
            slopes.append(layer.negative_slope if isinstance(layer, lc.LeakyReLU) else 0.0)
            pending = lc.Dense(np.eye(pending.weight.shape[0]), np.zeros(pending.weight.shape[0]))
    return stages + [pending], slopes


def brute_force_global_constant(net, p, q, lower=None, upper=None, l1_ball=None):
    """Exact Lipschitz constant of a small ReLU/LeakyReLU MLP on R^n (or on the box [lower, upper], or on the l1
    ball l1_ball = (center, radius)): the max of ||J|| over all activation patterns whose region has
    non-empty interior there (checked with scipy's LP, independent of lipcert)."""
    from scipy.optimize import linprog

    dense, slopes = affine_stages(net)
    n = net.input_size
    hidden = [d.weight.shape[0] for d in dense[:-1]]
    best = 0.0
    for pattern in itertools.product([0.0, 1.0], repeat=sum(hidden)):
        # Pre-activations are affine in x for a fixed pattern: z_k = A_k x + c_k.
        a, c = np.eye(n), np.zeros(n)
        rows, rhs = [], []
        offset = 0
        for layer, h, slope in zip(dense[:-1], hidden, slopes):
            za, zc = layer.weight @ a, layer.weight @ c + layer.bias
            s = np.array(pattern[offset:offset + h])
            offset += h
            sign = 2 * s - 1  # active: z > 0  ->  -z < 0
            rows.append(-sign[:, None] * za)
            rhs.append(sign * zc)
            d = s + (1 - s) * slope
            a, c = d[:, None] * za, d * zc
        jac = dense[-1].weight @ a
        if best >= exact_matrix_norm(jac, p, q):
            continue
        g, h_ = np.vstack(rows), np.concatenate(rhs)
        if lower is not None:  # x + r <= upper and -x + r <= -lower
            g = np.vstack([g, np.eye(n), -np.eye(n)])
            h_ = np.concatenate([h_, upper, -np.asarray(lower)])
        norms = np.linalg.norm(g, axis=1)
        # max r s.t. g x + r ||g_i|| <= h, r <= 1: interior exists iff r > 0.
        a_ub, b_ub, extra = np.c_[g, norms], h_, 0
        if l1_ball is not None:  # t >= |x - c|, sum t + sqrt(n) r <= radius, over (x, r, t)
            c, radius = np.asarray(l1_ball[0], dtype=float), float(l1_ball[1])
            eye, zero = np.eye(n), np.zeros((n, 1))
            a_ub = np.vstack([np.c_[a_ub, np.zeros((len(a_ub), n))], np.c_[eye, zero, -eye], np.c_[-eye, zero, -eye],
                              np.r_[np.zeros(n), math.sqrt(n), np.ones(n)][None]])
            b_ub, extra = np.r_[b_ub, c, -c, radius], n
        res = linprog(np.r_[np.zeros(n), -1.0, np.zeros(extra)], A_ub=a_ub, b_ub=b_ub,
                      bounds=[(None, None)] * n + [(0, 1)] + [(0, None)] * extra, method="highs")
        if res.status == 0 and -res.fun > 1e-9:
            best = exact_matrix_norm(jac, p, q)
    return best

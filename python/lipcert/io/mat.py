"""MATLAB weight files of the LipSDP and GLipSDP benchmarks (read with scipy.io).

- LipSDP: a cell array `weights` of (out, in) matrices; ReLU between layers, zero biases.
- GLipSDP digits: `fcK_weight` (in, out), `fcK_bias`, `convK_weight` (kh, kw, in, out), `convK_bias`,
  convolutions with 'same' padding and stride 1, ReLU after every layer but the last, a flatten (C, H, W)
  before the first fc layer. The network is returned on the normalised input (x - input_mean) /
  input_scale, which is what the published constants refer to; mean and scale are kept in
  `net.metadata`.
"""
from __future__ import annotations

import re

import numpy as np

from ..errors import InvalidNetworkError
from ..layers import Conv2d, Dense, Flatten, ReLU
from ..network import Network


def _interleave_relu(affine):
    layers = []
    for i, layer in enumerate(affine):
        layers.append(layer)
        if i < len(affine) - 1:
            layers.append(ReLU())
    return layers


def _lipsdp(path, weights) -> Network:
    mats = [np.asarray(w, dtype=np.float64) for w in np.asarray(weights, dtype=object).ravel()]
    if not mats or any(m.ndim != 2 for m in mats):
        raise InvalidNetworkError(f"{path}: 'weights' must be a cell array of matrices")
    layers = _interleave_relu([Dense(m, np.zeros(m.shape[0])) for m in mats])
    return Network(layers, (mats[0].shape[1],), {"source": str(path)})


def _glipsdp(path, data) -> Network:
    def index(key):
        return int(re.match(r"[a-z]+(\d+)_", key).group(1))

    convs = sorted((k for k in data if re.fullmatch(r"conv\d+_weight", k)), key=index)
    fcs = sorted((k for k in data if re.fullmatch(r"fc\d+_weight", k)), key=index)
    mean = np.asarray(data.get("input_mean", np.zeros(1)), dtype=np.float64).ravel()
    scale = np.asarray(data.get("input_scale", np.ones(1)), dtype=np.float64).ravel()
    affine = []
    for key in convs:
        w = np.asarray(data[key], dtype=np.float64)
        if w.ndim == 3:  # a single input channel squeezed away by MATLAB
            w = w[:, :, None, :]
        w = w.transpose(3, 2, 0, 1)
        b = np.asarray(data[key.replace("weight", "bias")], dtype=np.float64).ravel()
        affine.append(Conv2d(w, b, 1, (w.shape[2] // 2, w.shape[3] // 2)))
    for key in fcs:
        w = np.asarray(data[key], dtype=np.float64).T
        b = np.asarray(data[key.replace("weight", "bias")], dtype=np.float64).ravel()
        affine.append(Dense(w, b))
    layers = _interleave_relu(affine)
    if convs:
        side = int(round(np.sqrt(mean.size)))
        layers.insert(2 * len(convs), Flatten())
        input_shape = (affine[0].weight.shape[1], side, side)
    else:
        input_shape = (affine[0].weight.shape[1],)
    return Network(layers, input_shape, {"source": str(path), "input_mean": mean.tolist(),
                                         "input_scale": scale.tolist()})


def load_mat(path) -> Network:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise ImportError("reading .mat files needs scipy: pip install scipy") from None
    try:
        data = loadmat(str(path))
    except Exception as e:  # scipy raises several error types for corrupt files
        raise InvalidNetworkError(f"{path}: not a readable MATLAB file ({e})") from None
    if "weights" in data:
        return _lipsdp(path, data["weights"])
    if any(re.fullmatch(r"fc\d+_weight", k) for k in data):
        return _glipsdp(path, data)
    raise InvalidNetworkError(f"{path}: no 'weights' cell array (LipSDP) and no 'fcK_weight' keys (GLipSDP) found")

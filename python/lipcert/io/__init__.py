"""Importers: every format becomes a `Network`."""
from __future__ import annotations

import os

from ..errors import InvalidNetworkError
from ..network import Network
from .sklearn import from_sklearn
from .torch import from_torch

__all__ = ["load", "from_torch", "from_sklearn"]


def load(path) -> Network:
    """Loads a network from lipcert's .npz, an ONNX model (.onnx) or a MATLAB weight file (.mat)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        from .npz import load_npz

        return load_npz(path)
    if ext == ".onnx":
        from .onnx import load_onnx

        return load_onnx(path)
    if ext == ".mat":
        from .mat import load_mat

        return load_mat(path)
    raise InvalidNetworkError(f"{path}: unknown model format {ext!r}; expected .npz, .onnx or .mat")

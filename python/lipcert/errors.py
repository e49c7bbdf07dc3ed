"""Exceptions raised by lipcert. Messages name the layer or node at fault and how to fix it."""


class LipcertError(Exception):
    """Base class of lipcert's own errors."""


class InvalidNetworkError(LipcertError, ValueError):
    """The network is malformed: shapes do not chain, weights are NaN/inf, a file is corrupt."""


class UnsupportedLayerError(LipcertError):
    """A layer or ONNX operator that lipcert (or the chosen method) does not handle."""

"""Folds elementwise affine maps (BatchNorm, input normalisation, Mul/Add/Sub/Div by constants) into
neighbouring Dense/Conv2d layers, so that the IR has only the layer kinds the methods know."""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import UnsupportedLayerError
from ..layers import Conv2d, Dense, Flatten, Layer


class ElementwiseAffine:
    """x -> scale * x + shift, broadcast over a sample of shape `shape` (import-time only)."""

    def __init__(self, scale, shift, shape, source: str):
        self.scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), shape).copy()
        self.shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), shape).copy()
        self.shape = tuple(shape)
        self.source = source

    def then(self, other: "ElementwiseAffine") -> "ElementwiseAffine":
        return ElementwiseAffine(other.scale * self.scale, other.scale * self.shift + other.shift, self.shape,
                                 f"{self.source}, {other.source}")

    def is_identity(self) -> bool:
        return bool(np.all(self.scale == 1.0) and np.all(self.shift == 0.0))


def _per_channel(values: np.ndarray):
    """The per-channel vector of a (C, H, W) array constant over H, W, or None."""
    per = values[:, :1, :1]
    return per[:, 0, 0] if np.all(values == per) else None


def _fold_after(layer: Layer, ea: ElementwiseAffine) -> Layer:
    """ea(layer(x)) as one layer."""
    if isinstance(layer, Dense):
        s, t = ea.scale.ravel(), ea.shift.ravel()
        return Dense(layer.weight * s[:, None], layer.bias * s + t)
    scale = _per_channel(ea.scale)
    if scale is None:
        raise UnsupportedLayerError(f"{ea.source}: a position-dependent scale after a convolution cannot be folded")
    bias = layer.bias if layer.bias.ndim == 3 else layer.bias[:, None, None]
    bias = bias * ea.scale + ea.shift
    per = _per_channel(bias)
    return Conv2d(layer.weight * scale[:, None, None, None], per if per is not None else bias, layer.stride, layer.padding)


def _fold_before(ea: ElementwiseAffine, layer: Layer, input_shape) -> Layer:
    """layer(ea(x)) as one layer."""
    if isinstance(layer, Dense):
        s, t = ea.scale.ravel(), ea.shift.ravel()
        return Dense(layer.weight * s[None, :], layer.bias + layer.weight @ t)
    scale = _per_channel(ea.scale.reshape(input_shape))
    if scale is None:
        raise UnsupportedLayerError(f"{ea.source}: a position-dependent scale before a convolution cannot be folded")
    weight = layer.weight * scale[None, :, None, None]
    # The shift passes through zero padding, so its contribution is computed by running the conv on it.
    from ..network import Network

    shift_net = Network([Conv2d(layer.weight, None, layer.stride, layer.padding)], input_shape)
    contribution = shift_net(ea.shift.reshape((1,) + tuple(input_shape)))[0]
    bias = (layer.bias if layer.bias.ndim == 3 else layer.bias[:, None, None]) + contribution
    per = _per_channel(bias)
    return Conv2d(weight, per if per is not None else bias, layer.stride, layer.padding)


def fold_affine(items: List, input_shape) -> List[Layer]:
    """items: layers and ElementwiseAffine maps in order; returns layers only. input_shape is needed to
    fold into a convolution that follows."""
    from ..network import Network

    out: List = []
    for item in items:
        if isinstance(item, ElementwiseAffine) and out and isinstance(out[-1], ElementwiseAffine):
            out[-1] = out[-1].then(item)
        else:
            out.append(item)
    out = [x for x in out if not (isinstance(x, ElementwiseAffine) and x.is_identity())]
    layers: List[Layer] = []
    i = 0
    while i < len(out):
        item = out[i]
        if not isinstance(item, ElementwiseAffine):
            layers.append(item)
            i += 1
            continue
        if layers and isinstance(layers[-1], (Dense, Conv2d)):
            layers[-1] = _fold_after(layers[-1], item)
            i += 1
            continue
        # Fold forward into the next affine layer, possibly through a Flatten (a pure reshape).
        j = i + 1
        through_flatten = j < len(out) and isinstance(out[j], Flatten)
        if through_flatten:
            j += 1
        if j < len(out) and isinstance(out[j], (Dense, Conv2d)):
            shape = Network(layers, input_shape).output_shape if layers else tuple(input_shape)
            if through_flatten:
                layers.append(out[i + 1])
            layers.append(_fold_before(item, out[j], shape))
            i = j + 1
            continue
        raise UnsupportedLayerError(f"{item.source}: an elementwise scale/shift that is neither after nor before a "
                                    "Dense/Conv2d layer cannot be represented")
    return layers

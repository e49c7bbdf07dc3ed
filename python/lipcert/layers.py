"""Layer classes of the network IR. Each knows its parameters, how to save them and its core twin."""
from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from . import _core
from .errors import InvalidNetworkError


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    try:
        a, b = int(a), int(b)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    return a, b


def _array(value, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array") from None
    if arr.ndim != ndim:
        raise InvalidNetworkError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


class Layer:
    """Base class. Subclasses are small value objects; Network validates how they chain."""

    #: Lipschitz constant bounds of an elementwise activation: alpha <= slope <= beta.
    slope_bounds: Tuple[float, float] = (1.0, 1.0)
    is_affine = False
    is_activation = False
    #: Activations that act on each neuron alone (all but MaxMin).
    is_elementwise = True
    #: Activations whose Jacobian is constant on each activation region.
    is_piecewise_linear = False

    @property
    def lipschitz_constant(self) -> float:
        """Lipschitz constant of an activation in every p-norm (elementwise: max |slope|)."""
        alpha, beta = self.slope_bounds
        return max(abs(alpha), abs(beta))

    def params(self) -> Dict[str, np.ndarray]:
        """Arrays that describe the layer (what `Network.save` writes)."""
        return {}

    @classmethod
    def from_params(cls, params: Dict[str, np.ndarray]) -> "Layer":
        return cls()

    def to_core(self):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """y = W x + b with W of shape (out, in)."""

    is_affine = True

    def __init__(self, weight, bias=None):
        self.weight = _array(weight, "Dense weight", 2)
        self.bias = np.zeros(self.weight.shape[0]) if bias is None else _array(bias, "Dense bias", 1)

    def params(self):
        return {"weight": self.weight, "bias": self.bias}

    @classmethod
    def from_params(cls, params):
        return cls(params["weight"], params["bias"])

    def to_core(self):
        return _core.Layer.dense(self.weight, self.bias)

    def __repr__(self):
        return f"Dense({self.weight.shape[1]} -> {self.weight.shape[0]})"


class Conv2d(Layer):
    """2-D cross-correlation on (C, H, W) inputs, PyTorch semantics, zero padding.

    weight: (out_channels, in_channels, kh, kw); bias: (out_channels,) or, after folding an input
    shift through zero padding, one value per output element (out_channels, oh, ow).
    """

    is_affine = True

    def __init__(self, weight, bias=None, stride=1, padding=0):
        self.weight = _array(weight, "Conv2d weight", 4)
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if bias is None:
            self.bias = np.zeros(self.weight.shape[0])
        else:
            self.bias = np.array(bias, dtype=np.float64)
            if self.bias.ndim not in (1, 3):
                raise InvalidNetworkError(f"Conv2d bias must be (out_channels,) or (out_channels, oh, ow), got {self.bias.shape}")

    def params(self):
        return {"weight": self.weight, "bias": self.bias, "stride": np.array(self.stride),
                "padding": np.array(self.padding)}

    @classmethod
    def from_params(cls, params):
        return cls(params["weight"], params["bias"], tuple(params["stride"]), tuple(params["padding"]))

    def to_core(self):
        oc, ic, kh, kw = self.weight.shape
        return _core.Layer.conv2d(self.weight.reshape(oc, ic * kh * kw), self.bias.reshape(-1), ic, kh, kw,
                                  *self.stride, *self.padding)

    def __repr__(self):
        oc, ic, kh, kw = self.weight.shape
        return f"Conv2d({ic} -> {oc}, kernel=({kh}, {kw}), stride={self.stride}, padding={self.padding})"


class AvgPool2d(Layer):
    """Average pooling without padding (kernel, stride default to kernel)."""

    is_affine = True

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")

    def params(self):
        return {"kernel_size": np.array(self.kernel_size), "stride": np.array(self.stride)}

    @classmethod
    def from_params(cls, params):
        return cls(tuple(params["kernel_size"]), tuple(params["stride"]))

    def to_core(self):
        return _core.Layer.avg_pool2d(*self.kernel_size, *self.stride)

    def __repr__(self):
        return f"AvgPool2d(kernel={self.kernel_size}, stride={self.stride})"


class Flatten(Layer):
    """(C, H, W) -> (C*H*W,), row-major as in PyTorch."""

    def to_core(self):
        return _core.Layer.flatten()


class ReLU(Layer):
    is_activation = True
    is_piecewise_linear = True
    slope_bounds = (0.0, 1.0)

    def to_core(self):
        return _core.Layer.activation(_core.LayerKind.ReLU)


class LeakyReLU(Layer):
    is_activation = True
    is_piecewise_linear = True

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = float(negative_slope)
        if not math.isfinite(self.negative_slope):
            raise InvalidNetworkError("LeakyReLU negative_slope must be finite")
        self.slope_bounds = (min(self.negative_slope, 1.0), max(self.negative_slope, 1.0))

    def params(self):
        return {"negative_slope": np.array(self.negative_slope)}

    @classmethod
    def from_params(cls, params):
        return cls(float(params["negative_slope"]))

    def to_core(self):
        return _core.Layer.activation(_core.LayerKind.LeakyReLU, self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope:g})"


class Tanh(Layer):
    is_activation = True
    slope_bounds = (0.0, 1.0)

    def to_core(self):
        return _core.Layer.activation(_core.LayerKind.Tanh)


class Sigmoid(Layer):
    is_activation = True
    slope_bounds = (0.0, 0.25)

    def to_core(self):
        return _core.Layer.activation(_core.LayerKind.Sigmoid)


class MaxMin(Layer):
    """GroupSort with groups of two (the activation of AOL networks): pairs feature i with feature
    i + n/2 — for (C, H, W) inputs, channel c with channel c + C/2 — and puts each pair's max in the
    first half and its min in the second. Its Jacobians are permutations: 1-Lipschitz in every p-norm."""

    is_activation = True
    is_elementwise = False
    is_piecewise_linear = True
    lipschitz_constant = 1.0

    def to_core(self):
        return _core.Layer.activation(_core.LayerKind.MaxMin)


LAYER_TYPES = {cls.__name__: cls for cls in (Dense, Conv2d, AvgPool2d, Flatten, ReLU, LeakyReLU, Tanh, Sigmoid,
                                              MaxMin)}

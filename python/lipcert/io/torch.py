"""`from_torch`: walks an nn.Sequential (nested ones included) of supported modules; torch is imported
lazily so that `import lipcert` never needs it. Modules may describe themselves to lipcert with a
`lipcert_layers()` method returning lipcert layers (how the AOL layers of lipcert.torch export)."""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import UnsupportedLayerError
from ..layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from ..network import Network
from .folding import ElementwiseAffine, fold_affine


def _array(t) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _convert(module, name: str, nn) -> List:
    if hasattr(module, "lipcert_layers"):
        return list(module.lipcert_layers())
    if isinstance(module, nn.Sequential):
        out = []
        for child_name, child in module.named_children():
            out += _convert(child, f"{name}.{child_name}" if name else child_name, nn)
        return out
    if isinstance(module, nn.Linear):
        bias = _array(module.bias) if module.bias is not None else None
        return [Dense(_array(module.weight), bias)]
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or tuple(module.dilation) != (1, 1):
            raise UnsupportedLayerError(f"module {name!r} (Conv2d): groups and dilation must be 1")
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise UnsupportedLayerError(f"module {name!r} (Conv2d): only explicit zero padding is supported")
        bias = _array(module.bias) if module.bias is not None else None
        return [Conv2d(_array(module.weight), bias, tuple(module.stride), tuple(module.padding))]
    if isinstance(module, nn.ReLU):
        return [ReLU()]
    if isinstance(module, nn.LeakyReLU):
        return [LeakyReLU(module.negative_slope)]
    if isinstance(module, nn.Tanh):
        return [Tanh()]
    if isinstance(module, nn.Sigmoid):
        return [Sigmoid()]
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise UnsupportedLayerError(f"module {name!r} (Flatten): only start_dim=1, end_dim=-1 is supported")
        return [Flatten()]
    if isinstance(module, nn.AvgPool2d):
        padding = module.padding if isinstance(module.padding, tuple) else (module.padding,) * 2
        if any(padding) or module.ceil_mode:
            raise UnsupportedLayerError(f"module {name!r} (AvgPool2d): padding and ceil_mode are not supported")
        stride = module.stride if module.stride is not None else module.kernel_size
        return [AvgPool2d(module.kernel_size, stride)]
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if module.running_mean is None:
            raise UnsupportedLayerError(f"module {name!r}: BatchNorm without running statistics")
        s = _array(module.running_var)
        s = 1.0 / np.sqrt(s + module.eps)
        if module.weight is not None:
            s = s * _array(module.weight)
        t = -_array(module.running_mean) * s
        if module.bias is not None:
            t = t + _array(module.bias)
        return [_BatchNormPlaceholder(s, t, name, isinstance(module, nn.BatchNorm2d))]
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return []
    raise UnsupportedLayerError(f"module {name!r} ({type(module).__name__}) is not supported; supported: Linear, "
                                "Conv2d, ReLU, LeakyReLU, Tanh, Sigmoid, Flatten, AvgPool2d, BatchNorm1d/2d, "
                                "Identity, Dropout")


class _BatchNormPlaceholder:
    """A BatchNorm whose sample shape is known only once the preceding layers are chained."""

    def __init__(self, scale, shift, name, spatial):
        self.scale, self.shift, self.name, self.spatial = scale, shift, name, spatial


def from_torch(module, input_shape) -> Network:
    """Converts an nn.Sequential (or one supported module) to a lipcert Network on inputs of
    `input_shape` ((n,) or (C, H, W), without the batch dimension). Call it on the model in eval mode:
    BatchNorm uses its running statistics and Dropout is dropped."""
    try:
        import torch.nn as nn
    except ImportError:
        raise ImportError("from_torch needs PyTorch: pip install 'lipcert[torch]'") from None
    items = _convert(module, "", nn)
    resolved, prefix = [], []
    for item in items:
        if isinstance(item, _BatchNormPlaceholder):
            shape = Network(prefix, input_shape).output_shape if prefix else tuple(input_shape)
            shaped = (lambda v: v.reshape(-1, 1, 1)) if item.spatial else (lambda v: v)
            resolved.append(ElementwiseAffine(shaped(item.scale), shaped(item.shift), shape,
                                              f"module {item.name!r} (BatchNorm)"))
        else:
            resolved.append(item)
            prefix.append(item)
    return Network(fold_affine(resolved, tuple(input_shape)), tuple(input_shape))

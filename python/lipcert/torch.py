"""PyTorch layers for training Lipschitz networks (the optional extra: pip install 'lipcert[torch]').

AOL (Prach & Lampert, ECCV 2022): a linear or convolutional layer x -> W D x with
D_jj = (sum_i |W'W|_ij)^(-1/2) (for convolutions, the same sums over the kernel correlated with
itself), so ||W D||_2 <= 1 for every parameter value. `lipcert.from_torch` exports the rescaled weight
(computed in float64), so lipcert certifies each layer exactly as it runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2d, Dense

# Columns (input channels) whose Gram sums are below this get D = 1 / sqrt(_TINY): they are (almost)
# zero, so their rescaled weights stay (almost) zero.
_TINY = 1e-30


def aol_scale(gram_abs_sums: torch.Tensor) -> torch.Tensor:
    return gram_abs_sums.clamp_min(_TINY).rsqrt()


class AOLLinear(nn.Module):
    """y = W D x + b with D from W's Gram matrix: 1-Lipschitz in l2 whatever W is."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.orthogonal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def rescaled_weight(self) -> torch.Tensor:
        gram = self.weight.T @ self.weight
        return self.weight * aol_scale(gram.abs().sum(dim=1))[None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.rescaled_weight(), self.bias)

    def lipcert_layers(self):
        with torch.no_grad():
            w = self.weight.detach().double()
            weight = (w * aol_scale((w.T @ w).abs().sum(dim=1))[None, :]).cpu().numpy()
            bias = None if self.bias is None else self.bias.detach().double().cpu().numpy()
        return [Dense(weight, bias)]


class AOLConv2d(nn.Module):
    """A stride-1 convolution rescaled per input channel: 1-Lipschitz in l2 whatever the kernel is."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True):
        super().__init__()
        if kernel_size < 1 or padding < 0:
            raise ValueError("kernel_size must be >= 1 and padding >= 0")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    @staticmethod
    def _rescale(weight: torch.Tensor) -> torch.Tensor:
        k = weight.shape[-1]
        per_input = weight.transpose(0, 1)  # (in, out, k, k)
        # Correlation of every input channel's kernel with every other's at every offset: the
        # convolutional Gram matrix K'K, whose absolute row sums bound ||K D||_2 <= 1.
        gram = F.conv2d(per_input, per_input, padding=k - 1)
        return weight * aol_scale(gram.abs().sum(dim=(1, 2, 3)))[None, :, None, None]

    def rescaled_weight(self) -> torch.Tensor:
        return self._rescale(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.rescaled_weight(), self.bias, padding=self.padding)

    def lipcert_layers(self):
        with torch.no_grad():
            weight = self._rescale(self.weight.detach().double()).cpu().numpy()
            bias = None if self.bias is None else self.bias.detach().double().cpu().numpy()
        return [Conv2d(weight, bias, stride=1, padding=self.padding)]


class OffsetCrossEntropy(nn.Module):
    """AOL's margin loss: temperature * CE((z - offset * e_y) / temperature, y). The offset asks the
    true logit to win by a margin, which is what certified radii need."""

    def __init__(self, offset: float = 2 * math.sqrt(2), temperature: float = 0.25):
        super().__init__()
        if not (offset >= 0 and temperature > 0):
            raise ValueError("offset must be >= 0 and temperature > 0")
        self.offset, self.temperature = float(offset), float(temperature)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shifted = logits - self.offset * F.one_hot(target, logits.shape[-1]).to(logits.dtype)
        return self.temperature * F.cross_entropy(shifted / self.temperature, target)


__all__ = ["AOLLinear", "AOLConv2d", "OffsetCrossEntropy", "aol_scale"]

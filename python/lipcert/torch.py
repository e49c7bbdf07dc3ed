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

from . import layers
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


class MaxMin(nn.Module):
    """GroupSort with groups of two along dim 1 (features, or channels of (N, C, H, W) inputs): the
    halves a, b become (max(a, b), min(a, b)). Gradient-norm preserving and 1-Lipschitz in every norm;
    exported as lipcert's MaxMin layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] % 2:
            raise ValueError(f"MaxMin needs an even size along dim 1, got shape {tuple(x.shape)}")
        a, b = x.chunk(2, dim=1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)

    def lipcert_layers(self):
        return [layers.MaxMin()]


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


class CLIPRegularizer(nn.Module):
    """CLIP (Bungert et al. 2021): lam * an estimate of the model's Lipschitz constant, as a loss term.

    It keeps `n_pairs` input pairs (x, x') and, at every call, moves them by `ascent_steps` steps of
    normalised gradient ascent on ||f(x) - f(x')|| / ||x - x'|| with per-pair step lengths (grown by 1.2
    after an improving step, halved and undone after a worsening one); before that, the pair with the
    smallest ratio restarts from the batch. The loss is lam times the largest ratio.
    The estimate is a LOWER bound of the Lipschitz constant (it is attained by real pairs), not a
    certificate: certify the trained model with lipcert.lipschitz. With `target_accuracy`,
    `update_lambda(accuracy)` raises lam while the training accuracy is above the target and lowers it
    otherwise, as in the paper.
    """

    def __init__(self, model: nn.Module, n_pairs: int = 32, lam: float = 0.1, ascent_steps: int = 1,
                 step_size: float = 1e-2, init_distance: float = 1e-2, target_accuracy: float | None = None,
                 lam_factor: float = 1.05):
        super().__init__()
        if n_pairs < 1 or ascent_steps < 0 or not (lam >= 0 and step_size > 0 and init_distance > 0):
            raise ValueError("need n_pairs >= 1, ascent_steps >= 0, lam >= 0, step_size > 0, init_distance > 0")
        if target_accuracy is not None and not 0 <= target_accuracy <= 1:
            raise ValueError("target_accuracy must lie in [0, 1]")
        self.model, self.n_pairs, self.lam = model, n_pairs, float(lam)
        self.ascent_steps, self.step_size, self.init_distance = ascent_steps, step_size, init_distance
        self.target_accuracy, self.lam_factor = target_accuracy, lam_factor
        self.x = self.x_prime = self.steps = None

    def _ratios(self, x: torch.Tensor, x_prime: torch.Tensor) -> torch.Tensor:
        difference = (self.model(x) - self.model(x_prime)).flatten(1).norm(dim=1)
        return difference / (x - x_prime).flatten(1).norm(dim=1).clamp_min(1e-12)

    def _fresh_pairs(self, batch: torch.Tensor, count: int):
        index = torch.randint(0, batch.shape[0], (count,), device=batch.device)
        x = batch[index].detach().clone()
        return x, x + self.init_distance * torch.randn_like(x)

    def _initialise(self, batch: torch.Tensor) -> None:
        self.x, self.x_prime = self._fresh_pairs(batch, self.n_pairs)
        self.steps = torch.full((self.n_pairs,), self.step_size, device=batch.device, dtype=batch.dtype)

    def _refresh_weakest(self, batch: torch.Tensor) -> None:
        """Restarts the pair with the smallest ratio from the batch: once the model is flat where a
        pair sits, ascent cannot find the steep regions elsewhere."""
        if self.n_pairs < 2:
            return
        with torch.no_grad():
            weakest = int(self._ratios(self.x, self.x_prime).argmin())
            x, x_prime = self._fresh_pairs(batch, 1)
            self.x[weakest], self.x_prime[weakest] = x[0], x_prime[0]
            self.steps[weakest] = self.step_size

    def _ascend(self) -> None:
        shape = (-1,) + (1,) * (self.x.dim() - 1)
        for _ in range(self.ascent_steps):
            x, x_prime = self.x.clone().requires_grad_(), self.x_prime.clone().requires_grad_()
            ratios = self._ratios(x, x_prime)
            gx, gxp = torch.autograd.grad(ratios.sum(), (x, x_prime))
            with torch.no_grad():
                # Steps of length `steps` along the pair's normalised gradient: where the ratio is flat
                # (an untrained network) the raw gradient would not move the pair at all.
                length = (gx.flatten(1).square().sum(1) + gxp.flatten(1).square().sum(1)).sqrt().clamp_min(1e-30)
                scale = (self.steps / length).view(shape)
                new_x, new_xp = x + scale * gx, x_prime + scale * gxp
                better = self._ratios(new_x, new_xp) > ratios
                keep = better.view(shape)
                self.x = torch.where(keep, new_x, self.x)
                self.x_prime = torch.where(keep, new_xp, self.x_prime)
                # Bounded, so that a pair whose steps failed for a while can still move again.
                self.steps = torch.where(better, self.steps * 1.2, self.steps * 0.5).clamp(
                    self.step_size * 1e-3, self.step_size * 1e3)

    def estimate(self) -> float:
        """The current largest ratio over the pairs (a lower bound of the Lipschitz constant)."""
        if self.x is None:
            return 0.0
        with torch.no_grad():
            return float(self._ratios(self.x, self.x_prime).max())

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.x is None or self.x.shape[1:] != batch.shape[1:]:
            self._initialise(batch)
        else:
            self._refresh_weakest(batch)
        self._ascend()
        return self.lam * self._ratios(self.x.detach(), self.x_prime.detach()).max()

    def update_lambda(self, accuracy: float) -> float:
        if self.target_accuracy is not None:
            self.lam *= self.lam_factor if accuracy > self.target_accuracy else 1 / self.lam_factor
        return self.lam


__all__ = ["AOLLinear", "AOLConv2d", "MaxMin", "OffsetCrossEntropy", "CLIPRegularizer", "aol_scale"]

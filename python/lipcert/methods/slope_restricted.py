"""The view of a network that sdp and seqlip share: W_0, phi_1, W_1, ..., phi_l, W_l.

The core splits the network at its activations (lipcert::slope_restricted_network: convolutions and
pooling unrolled, consecutive linear layers multiplied with the rounding of that product carried as a
bound on each weight's error, MaxMin rotated into an activation with slopes [-1, 1]). Both methods bound
the l2 -> l2 constant; other norms go through norm equivalence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from ..errors import UnsupportedLayerError
from ..layers import Dense
from ..network import Network
from ._rounding import mul_up, product_up


@dataclass
class SlopeRestrictedProblem:
    """The network as W_0, phi_1, W_1, ..., phi_l, W_l (what the core's LipSDP and SeqLip take)."""

    weights: list[np.ndarray] = field(default_factory=list)
    alpha: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    weight_error: list[float] = field(default_factory=list)

    def core_args(self):
        return self.weights, self.alpha, self.beta, self.weight_error

    @property
    def neurons(self) -> int:
        return sum(w.shape[0] for w in self.weights[:-1])

    def linear_l2_bound(self) -> float:
        """Certified ||W||_2 of a network without activations (its one matrix, error included)."""
        (weight,), (error,) = self.weights, self.weight_error
        l2 = _core.certified_spectral_norm(weight, float(np.linalg.norm(weight, 2))) + error
        return math.nextafter(l2, math.inf)


def slope_restricted_problem(net: Network) -> SlopeRestrictedProblem:
    """Splits `net` at its activations; each linear stretch becomes one matrix (the core's split)."""
    try:
        weights, alpha, beta, weight_error = _core.slope_restricted_network(net._core)
    except _core.CoreUnsupportedLayerError as e:
        raise UnsupportedLayerError(str(e)) from None
    return SlopeRestrictedProblem([np.asarray(w) for w in weights], list(alpha), list(beta), list(weight_error))


def splits_at_activations(net: Network) -> bool:
    """Whether slope_restricted_problem applies: every convolution and pooling layer can be unrolled."""
    return all(not layer.is_affine or isinstance(layer, Dense) or _core.linear_layer_is_unrollable(net._core, i)
               for i, layer in enumerate(net.layers))


def l2_to_norm(l2: float, net: Network, p_in: float, p_out: float, stats: dict) -> float:
    """A certified l2 -> l2 bound turned into a (p_in -> p_out) one; the factors go into stats."""
    if (p_in, p_out) == (2.0, 2.0):
        return l2
    factors = (_core.norm_conversion_factor(net.input_size, p_in, 2.0),
               _core.norm_conversion_factor(net.output_size, 2.0, p_out))
    stats["norm_conversion"] = factors
    return mul_up(l2, product_up(factors))

"""`sdp`: LipSDP-Neuron (and -Layer) for networks with slope-restricted activations.

The core splits the network at its activations (lipcert::slope_restricted_network: convolutions and
pooling unrolled, consecutive linear layers multiplied with the rounding of that product carried into
the proof as a bound on the weight's error), solves the LMI by a barrier method that works block by
block on its block-tridiagonal structure, then proves it: the reported upper bound is the one the
core's Cholesky proof establishes from the multipliers (floating-point errors included), never the
solver's objective. Norms other than l2 -> l2 go through norm equivalence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List

import numpy as np

from .. import _core
from ..errors import UnsupportedLayerError
from ..layers import Dense
from ..network import Network
from ._rounding import mul_up, product_up

FORMULATIONS = ("neuron", "layer")
CROSS_CHECK_DEPTH = 5  # from this many hidden layers, sdp also solves LipSDP-Layer and keeps the better


@dataclass
class SlopeRestrictedProblem:
    """The network as W_0, phi_1, W_1, ..., phi_l, W_l (what the core's LipSDP takes)."""

    weights: List[np.ndarray] = field(default_factory=list)
    alpha: List[float] = field(default_factory=list)
    beta: List[float] = field(default_factory=list)
    weight_error: List[float] = field(default_factory=list)

    def core_args(self):
        return self.weights, self.alpha, self.beta, self.weight_error

    @property
    def neurons(self) -> int:
        return sum(w.shape[0] for w in self.weights[:-1])


def slope_restricted_problem(net: Network) -> SlopeRestrictedProblem:
    """Splits `net` at its activations; each linear stretch becomes one matrix (the core's split)."""
    try:
        weights, alpha, beta, weight_error = _core.slope_restricted_network(net._core)
    except _core.CoreUnsupportedLayerError as e:
        raise UnsupportedLayerError(str(e)) from None
    return SlopeRestrictedProblem([np.asarray(w) for w in weights], list(alpha), list(beta), list(weight_error))


def sdp_bound(net: Network, p_in: float, p_out: float, formulation: str = "neuron", tol: float = 1e-7):
    """(upper, certified, stats). Upper is proved from the multipliers in stats["multipliers"]."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}")
    problem = slope_restricted_problem(net)
    stats = {"formulation": formulation, "neurons": problem.neurons}
    if not problem.alpha:  # a linear network: the norm of its one matrix
        (weight,), (error,) = problem.weights, problem.weight_error
        l2 = _core.certified_spectral_norm(weight, float(np.linalg.norm(weight, 2))) + error
        l2 = math.nextafter(l2, math.inf)
        stats.update(l2_bound=l2, multipliers=[])
        return _convert(l2, net, p_in, p_out, stats), True, stats
    result = _core.lipsdp_solve(*problem.core_args(), per_layer=formulation == "layer", tol=tol)
    if formulation == "neuron" and (result["status"] != "optimal" or len(problem.alpha) >= CROSS_CHECK_DEPTH):
        # The barrier method can stop short, or end falsely centred, on deep networks (measured on the
        # ECLipsE grid: 20 layers of 60, 19x above LipSDP-Layer); LipSDP-Layer's multipliers are
        # feasible for LipSDP-Neuron too, so the better proved bound of the two is kept.
        layer = _core.lipsdp_solve(*problem.core_args(), per_layer=True, tol=tol)
        stats["neuron_solve"] = {"status": result["status"], "certified_upper": result["certified_upper"]}
        if layer["certified_upper"] < result["certified_upper"]:
            result = layer
    l2 = result["certified_upper"]
    certified = math.isfinite(l2)
    if not certified:  # the proof failed: report the solver's value as an estimate
        l2 = math.sqrt(max(result["rho"], 0.0))
    stats.update(l2_bound=l2, rho=result["rho"], newton_steps=result["newton_steps"],
                 relative_gap=result["relative_gap"], solver_status=result["status"],
                 multipliers=np.asarray(result["multipliers"]).tolist())
    return _convert(l2, net, p_in, p_out, stats), certified, stats


def certified_bound_from_multipliers(net: Network, multipliers, p_in: float, p_out: float) -> float:
    """The bound the core proves from given multipliers (+inf if they prove nothing)."""
    problem = slope_restricted_problem(net)
    lam = np.asarray(multipliers, dtype=np.float64).ravel()
    if lam.size != problem.neurons:
        return math.inf
    if not problem.alpha:
        return math.inf
    l2 = _core.lipsdp_certified_bound(*problem.core_args(), lam)
    return _convert(l2, net, p_in, p_out, {}) if math.isfinite(l2) else math.inf


def _convert(l2: float, net: Network, p_in: float, p_out: float, stats: dict) -> float:
    if (p_in, p_out) == (2.0, 2.0):
        return l2
    factors = (_core.norm_conversion_factor(net.input_size, p_in, 2.0),
               _core.norm_conversion_factor(net.output_size, 2.0, p_out))
    stats["norm_conversion"] = factors
    return mul_up(l2, product_up(factors))


# Rough cost model of one solve on these machines (flops per Newton step, steps, flop rate), used by
# method="auto" to leave sdp out where it would not fit the time limit.
_NEWTON_STEPS = 60
_FLOPS_PER_SECOND = 5e9
_AUTO_DEFAULT_SECONDS = 30.0


def sdp_worthwhile(net: Network, time_limit) -> bool:
    """Whether sdp applies (every convolution and pooling unrollable) and its estimated time fits."""
    shapes = net.layer_shapes()
    if any(layer.is_affine and not isinstance(layer, Dense) and not _core.linear_layer_is_unrollable(net._core, i)
           for i, layer in enumerate(net.layers)):
        return False
    hidden = [math.prod(out) for layer, (_, out) in zip(net.layers, shapes) if layer.is_activation]
    if not hidden:
        return True
    n = sum(hidden)
    dimension = n + min(net.input_size, hidden[0])
    seconds = _NEWTON_STEPS * (n ** 3 / 3 + 4 * dimension ** 2 * max(hidden)) / _FLOPS_PER_SECOND
    return seconds <= (time_limit if time_limit is not None else _AUTO_DEFAULT_SECONDS)

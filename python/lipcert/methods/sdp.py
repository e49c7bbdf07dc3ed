"""`sdp`: LipSDP-Neuron (and -Layer) for networks with slope-restricted activations.

On the network split at its activations (slope_restricted.py), the core solves the LMI by a barrier
method that works block by block on its block-tridiagonal structure, then proves it: the reported
upper bound is the one the core's Cholesky proof establishes from the multipliers (floating-point
errors included), never the solver's objective.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..errors import UnsupportedLayerError
from ..layers import Conv2d
from ..network import Network
from .slope_restricted import l2_to_norm, slope_restricted_problem, splits_at_activations

FORMULATIONS = ("neuron", "layer", "channel")
CROSS_CHECK_DEPTH = 5  # from this many hidden layers, sdp also solves LipSDP-Layer and keeps the better


def sdp_bound(net: Network, p_in: float, p_out: float, formulation: str = "neuron", tol: float = 1e-7):
    """(upper, certified, stats). Upper is proved from the multipliers in stats["multipliers"].

    formulation "channel" (one multiplier per channel, the convolutions split by frequency) is also
    what "neuron" and "layer" fall back to for convolutional networks too large to unroll."""
    if formulation not in FORMULATIONS:
        raise ValueError(f"formulation must be one of {FORMULATIONS}")
    if formulation == "channel":
        return channelwise_sdp_bound(net, p_in, p_out, tol)
    if not splits_at_activations(net):
        try:
            return channelwise_sdp_bound(net, p_in, p_out, tol)
        except UnsupportedLayerError as channelwise:
            try:
                slope_restricted_problem(net)
            except UnsupportedLayerError as unrolled:
                raise UnsupportedLayerError(f"{unrolled}; {channelwise}") from None
            raise
    problem = slope_restricted_problem(net)
    stats = {"formulation": formulation, "neurons": problem.neurons}
    if not problem.alpha:  # a linear network: the norm of its one matrix
        l2 = problem.linear_l2_bound()
        stats.update(l2_bound=l2, multipliers=[])
        return l2_to_norm(l2, net, p_in, p_out, stats), True, stats
    result = _core.lipsdp_solve(*problem.core_args(), per_layer=formulation == "layer", tol=tol)
    # An optimal end of the primal-dual method alone is a primal-dual pair within tol of the optimum,
    # which LipSDP-Layer's (above LipSDP-Neuron's) cannot beat.
    primal_dual_optimum = result["status"] == "optimal" and result["primal_dual_steps"] == result["newton_steps"]
    if formulation == "neuron" and not primal_dual_optimum and (
            result["status"] != "optimal" or len(problem.alpha) >= CROSS_CHECK_DEPTH):
        # The barrier method can stop short, or end falsely centred, on deep networks (measured on the
        # ECLipsE grid before its exact step in rho: 20 layers of 60 came out 19x, 30 of 20 390x above
        # LipSDP-Layer; none is known since); LipSDP-Layer's multipliers are feasible for LipSDP-Neuron
        # too, so the better proved bound of the two is kept. The Layer solve stops once its path
        # shows that its optimum lies above the neuron solve's proved bound.
        layer = _core.lipsdp_solve(*problem.core_args(), per_layer=True, tol=tol,
                                   stop_above=result["certified_upper"] ** 2)
        stats["neuron_solve"] = {"status": result["status"], "certified_upper": result["certified_upper"]}
        stats["layer_solve"] = {"status": layer["status"], "certified_upper": layer["certified_upper"],
                                "newton_steps": layer["newton_steps"]}
        if layer["certified_upper"] < result["certified_upper"]:
            result = layer
    return solved_bound(result, net, p_in, p_out, stats)


def solved_bound(result: dict, net: Network, p_in: float, p_out: float, stats: dict):
    """(upper, certified, stats) from a core LipSDP solve: its proved l2 bound, or the solver's value as
    an estimate where the proof failed; the solve's figures and multipliers go into stats."""
    l2 = result["certified_upper"]
    certified = math.isfinite(l2)
    if not certified:
        l2 = math.sqrt(max(result["rho"], 0.0))
    stats.update(l2_bound=l2, rho=result["rho"], newton_steps=result["newton_steps"],
                 primal_dual_steps=result["primal_dual_steps"],
                 relative_gap=result["relative_gap"], solver_status=result["status"],
                 multipliers=np.asarray(result["multipliers"]).tolist())
    return l2_to_norm(l2, net, p_in, p_out, stats), certified, stats


def channelwise_sdp_bound(net: Network, p_in: float, p_out: float, tol: float = 1e-7):
    """(upper, certified, stats) of channel-wise LipSDP (lipcert::channelwise_lipsdp): convolutions
    circular on a torus, their zero padding taken into the activations, one LMI per frequency."""
    try:
        result = _core.lipsdp_channelwise_solve(net._core, tol=tol)
    except _core.CoreUnsupportedLayerError as e:
        raise UnsupportedLayerError(str(e)) from None
    return solved_bound(result, net, p_in, p_out, {"formulation": "channel", "frequencies": result["frequencies"]})


def certified_bound_from_multipliers(net: Network, multipliers, p_in: float, p_out: float,
                                     formulation: str = "neuron") -> float:
    """The bound the core proves from given multipliers (+inf if they prove nothing); "channel"
    multipliers are one per channel (channelwise_sdp_bound's), the others one per neuron."""
    lam = np.asarray(multipliers, dtype=np.float64).ravel()
    if formulation == "channel":
        try:
            l2 = _core.lipsdp_channelwise_certified_bound(net._core, lam)
        except (_core.CoreUnsupportedLayerError, ValueError):
            return math.inf
        return l2_to_norm(l2, net, p_in, p_out, {}) if math.isfinite(l2) else math.inf
    problem = slope_restricted_problem(net)
    if lam.size != problem.neurons:
        return math.inf
    if not problem.alpha:  # no multipliers: the certificate is the proof of the one matrix's norm
        return l2_to_norm(problem.linear_l2_bound(), net, p_in, p_out, {})
    l2 = _core.lipsdp_certified_bound(*problem.core_args(), lam)
    return l2_to_norm(l2, net, p_in, p_out, {}) if math.isfinite(l2) else math.inf


# Rough cost model of sdp on these machines, used by method="auto" to leave sdp out where it would not
# fit the time limit: per Newton step, the factorisation of the n x n Newton system (n^3 / 3 flops at
# _FACTOR_FLOPS_PER_SECOND) and forming it (4 D^2 w flops, D = n + input dimension, w the widest layer,
# at _FORM_FLOPS_PER_SECOND, with the line search's eliminations), plus _SECONDS_PER_STEP; 40 + 2 l
# Newton steps for l hidden layers, and from CROSS_CHECK_DEPTH layers 20 + l / 2 steps of the
# LipSDP-Layer cross-check, which forms its system the same way. Measured on 2 cores (sdp's whole time):
# random MLPs 784-1000-1000-10, 784-1500-10, 784-500x4-10, 100-300x6-10, 20-100x20-1, 50-64x40-10 took
# 63 / 47 / 27 / 17 / 11 / 23 s, GLipSDP's MNIST W64 with 8 / 16 / 32 / 64 weights 1.7 / 3.4 / 16 / 95 s;
# the model gives 0.8-1.4x those, and 0.68x on the demo's unrolled CNN (864 neurons, 57 steps, 8.5 s).
# The model before (60 steps at 7e9 flop/s for both parts) gave 0.8-5.9x, and 2.6x on the CNN.
_FACTOR_FLOPS_PER_SECOND = 5e10
_FORM_FLOPS_PER_SECOND = 2e10
_SECONDS_PER_STEP = 0.01
_AUTO_DEFAULT_SECONDS = 30.0


def sdp_seconds(net: Network) -> float:
    """method="auto"'s estimate of sdp_bound's time on a network that splits at its activations."""
    shapes = net.layer_shapes()
    hidden = [math.prod(out) for layer, (_, out) in zip(net.layers, shapes) if layer.is_activation]
    if not hidden:
        return 0.0
    n, depth = sum(hidden), len(hidden)
    dimension = n + min(net.input_size, hidden[0])
    if depth >= _core.lipsdp_primal_dual_from_layers:
        # The primal-dual method: 14 + 0.45 l iterations, a little above those measured (20 / 27 / 25 /
        # 35 / 38 at 24 / 29 / 33 / 49 / 65 hidden layers), each a factorisation and two formations; no
        # cross-check. It gives 1.2x / 0.83x the time of sdp on GLipSDP's MNIST W64 with 64 / 32
        # weights (34 / 6.8 s).
        iterations = 14 + 0.45 * depth
        return iterations * (n ** 3 / 3 / _FACTOR_FLOPS_PER_SECOND
                             + 2 * 4 * dimension ** 2 * max(hidden) / _FORM_FLOPS_PER_SECOND + _SECONDS_PER_STEP)
    neuron_steps = 40 + 2 * depth
    formed = neuron_steps + (20 + depth / 2 if depth >= CROSS_CHECK_DEPTH else 0)
    return (neuron_steps * n ** 3 / 3 / _FACTOR_FLOPS_PER_SECOND
            + formed * (4 * dimension ** 2 * max(hidden) / _FORM_FLOPS_PER_SECOND + _SECONDS_PER_STEP))


# The same for channel-wise LipSDP (convolutional networks too large to unroll): seconds of about
# _CHANNELWISE_SECONDS * convolutions^2 * channels^3 * (positions / 784), plus _CHANNELWISE_BASE.
# Measured on GLipSDP's twelve MNIST CNNs (3-17 convolutions of 8-32 channels on 28 x 28, 0.25-181 s):
# the model gives 1.4-3.4x the real time, never less.
_CHANNELWISE_SECONDS = 4e-5
_CHANNELWISE_BASE = 0.2


def channelwise_seconds(net: Network) -> float:
    """method="auto"'s estimate of channelwise_sdp_bound's time."""
    convs = [(layer, shapes) for layer, shapes in zip(net.layers, net.layer_shapes()) if isinstance(layer, Conv2d)]
    channels = max(out[0] for _, (_, out) in convs)
    positions = convs[0][1][0][1] * convs[0][1][0][2]
    return _CHANNELWISE_BASE + _CHANNELWISE_SECONDS * len(convs) ** 2 * channels ** 3 * positions / 784


def sdp_worthwhile(net: Network, time_limit) -> bool:
    """Whether sdp applies (the network splits at its activations, or takes channel-wise LipSDP) and
    its estimated time fits."""
    limit = time_limit if time_limit is not None else _AUTO_DEFAULT_SECONDS
    if not splits_at_activations(net):
        return _core.channelwise_lipsdp_applies(net._core) and channelwise_seconds(net) <= limit
    return sdp_seconds(net) <= limit

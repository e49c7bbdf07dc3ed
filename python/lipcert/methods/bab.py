"""`bab`: exact Lipschitz constants of ReLU / LeakyReLU / MaxMin networks by branch and bound over activation
patterns (the C++ engine): local ones on a bounded domain (lipcert::lipschitz_bab) and, for small
networks of Dense and Conv2d layers, global ones on all of R^n (lipcert::lipschitz_bab_global, which
searches activation patterns alone, with LPs over R^n and emptiness proved on the faces of a cube;
ReLU and LeakyReLU only).

A short unseeded search runs first: small problems close in it, in a fraction of the time the seed
search takes. The others start again from the lower bound of the sampling search of `lower.py` (or
the first search's, if higher); the engine raises it with certified witnesses at interior points of
leaf regions. Both bounds are certified; `exact` means they agree to `tol`.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .. import _core
from .._cuda_loader import cuda_available, cuda_module
from ..domain import polyhedral_box
from ..errors import UnsupportedLayerError
from ..layers import AvgPool2d, MaxMin
from ..network import Network
from .lower import certify_point, inside_domain, lower_bound

DEFAULT_TIME_LIMIT = 60.0
MAX_NODES = 10_000_000
# Inputs of at most this many dimensions are searched with input bisection: a node with more than
# INPUT_BISECTION unstable neurons has its box halved instead of a neuron split. On LipMIP's 2-D nets
# with l-inf balls of radius 1 that is 6-27x faster (benchmarks/bench_bab.py); from 4 dimensions up
# the halvings multiply faster than they fix neurons.
INPUT_BISECTION_DIMENSIONS = 2
INPUT_BISECTION = 4
# The unseeded first search: at most this many nodes and this share of the time limit (and
# PROBE_SECONDS). LipBaB's iris net closes in 13 nodes and under a millisecond, where the seed search
# takes about 12 ms; a search that needs more repeats at most this much work.
PROBE_NODES = 300
PROBE_SHARE, PROBE_SECONDS = 0.05, 0.5


def domain_box(domain):
    """(lower, upper, l1_ball): the box bab searches, and for an l1 Ball the (center, radius) that
    restricts it; l2 balls are not supported by this version."""
    box = polyhedral_box(domain)
    if box is None:
        raise NotImplementedError(f"method 'bab' supports Box and Ball(p=inf or p=1) domains in this version, not {domain!r}")
    return box


def check_global_search(net: Network, device: str) -> None:
    """The global search (domain=None) takes Dense and Conv2d layers (the engine unrolls convolutions,
    exactly), average pooling over 2^k elements (whose weights 2^-k are exact), on the CPU."""
    for i, layer in enumerate(net.layers):
        if isinstance(layer, MaxMin):
            raise UnsupportedLayerError(f"layer {i} (MaxMin): method 'bab' with domain=None (the global constant) "
                                        "takes ReLU and LeakyReLU activations only; bound on a lipcert.Box, or use "
                                        "autolip or sdp for a global upper bound")
        window = layer.kernel_size[0] * layer.kernel_size[1] if isinstance(layer, AvgPool2d) else 1
        if window & (window - 1):
            raise UnsupportedLayerError(f"layer {i} (AvgPool2d): method 'bab' with domain=None (the global "
                                        f"constant) takes average pooling over 2^k elements only (1/{window} is not "
                                        "exact in binary); bound on a lipcert.Box, or use autolip or sdp for a "
                                        "global upper bound")
    if device == "cuda":
        raise ValueError("method 'bab' with domain=None runs on the CPU; use device='cpu' or 'auto'")


def terminal_progress(lower, upper, seconds, nodes, open_nodes) -> bool:
    gap = (upper - lower) / upper if upper > 0 else 0.0
    sys.stderr.write(f"\r  {seconds:7.1f} s  lower {lower:.10g}  upper {upper:.10g}  gap {gap:.2e}  "
                     f"nodes {nodes}  open {open_nodes}  ({nodes / max(seconds, 1e-9):.0f}/s)   ")
    sys.stderr.flush()
    return True


# Below this many hidden neurons a batch of subdomains is too little work for the GPU to gain much
# (bounding on an H100 vs 2 CPU cores: 2-7x at 90-130 neurons, 5-22x at 512; benchmarks/bench_gpu_bounds.py).
GPU_MIN_NEURONS = 500


def subdomain_bounder(net: Network, device: str):
    """The C++ object that bounds batches of subdomains: the GPU one for device="cuda" (and for "auto"
    on a network large enough to gain), else None (the CPU threads)."""
    if device == "cuda":
        return cuda_module().GpuSubdomainBounder(net._core)  # its ValueError names the layer it cannot take
    shapes = net.layer_shapes()
    neurons = sum(math.prod(shapes[i][0]) for i, layer in enumerate(net.layers) if layer.is_activation)
    if device == "auto" and cuda_available() and neurons >= GPU_MIN_NEURONS:
        try:
            return cuda_module().GpuSubdomainBounder(net._core)
        except ValueError:  # a layer too large to run densely: the CPU path takes any network
            return None
    return None


def bab_bound(net: Network, p_in: float, p_out: float, domain, tol: float, time_limit, seed: int = 0,
              show_progress: bool = False, device: str = "cpu"):
    """Returns (upper, certified, stats, lower, witness)."""
    for i, layer in enumerate(net.layers):
        if layer.is_activation and not layer.is_piecewise_linear:
            raise UnsupportedLayerError(f"layer {i} ({type(layer).__name__}): method 'bab' needs piecewise-linear "
                                        "activations (ReLU, LeakyReLU, MaxMin); use naive, autolip or sdp "
                                        "for this network")
    if domain is None:
        check_global_search(net, device)
    else:
        lo, hi, l1 = domain_box(domain)
    limit = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    start = time.perf_counter()
    progress = terminal_progress if show_progress else None
    bounder = None if domain is None else subdomain_bounder(net, device)
    if domain is None:
        def search(seconds, max_nodes, initial_lower, initial_witness):
            return _core.lipschitz_bab_global(net._core, p_in, p_out, tol, seconds, max_nodes, initial_lower,
                                              initial_witness, progress)
    else:
        l1_center, l1_radius = l1 if l1 is not None else (None, 0.0)
        bisection = INPUT_BISECTION if net.input_size <= INPUT_BISECTION_DIMENSIONS else 0

        def search(seconds, max_nodes, initial_lower, initial_witness):
            return _core.lipschitz_bab(net._core, lo, hi, p_in, p_out, tol, seconds, max_nodes, initial_lower,
                                       initial_witness, progress, bounder, l1_center=l1_center, l1_radius=l1_radius,
                                       input_bisection=bisection)

    result = search(min(PROBE_SHARE * limit, PROBE_SECONDS), PROBE_NODES, 0.0, np.zeros(net.input_size))
    if result["exact"]:
        seed_lower, witness, seeding = 0.0, None, {"skipped": "the unseeded search closed"}
    else:
        seed_lower, seed_witness, seeding = lower_bound(net, p_in, p_out, domain, seed=seed,
                                                        time_budget=min(2.0, 0.1 * limit))
        witness = np.zeros(net.input_size) if seed_witness is None else np.asarray(seed_witness, dtype=float).ravel()
        # (a witness the engine left an ulp past a ball is not one to fall back on, below)
        if result["lower"] > seed_lower and (domain is None or domain.contains(result["witness"])):
            seed_lower, witness = result["lower"], result["witness"]
        result = search(max(0.0, limit - (time.perf_counter() - start)), MAX_NODES, seed_lower, witness)
    if domain is not None:
        result["input_bisection"] = bisection
    if show_progress:
        sys.stderr.write("\n")
    lower, upper, found = result.pop("lower"), result.pop("upper"), result.pop("witness")
    if lower > 0 and domain is not None and not domain.contains(found):
        # The engine keeps witnesses in its outward-rounded box, which can reach an ulp past a ball.
        inside = inside_domain(domain, found)
        value = certify_point(net, inside, p_in, p_out)
        lower, found = (value, inside) if value is not None and value >= seed_lower else (seed_lower, witness)
    stats = dict(result, lower_search=seeding, device="cuda" if bounder is not None else "cpu")
    return upper, True, stats, lower, (found if lower > 0 else None)

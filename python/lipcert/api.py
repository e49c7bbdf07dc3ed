"""`lipschitz`: one entry point for every bound method."""
from __future__ import annotations

import math
import time

import numpy as np

from ._cuda_loader import cuda_available
from .bound import Bound
from .domain import Ball, Box, check_domain
from .errors import LipcertError
from .methods.autolip import autolip_bound, gpu_worthwhile
from .methods.bab import bab_bound
from .methods.lower import deepened_witness, lower_bound
from .methods.naive import naive_bound
from .methods.sdp import certified_bound_from_multipliers, sdp_bound, sdp_worthwhile
from .methods.seqlip import seqlip_bound
from .methods.slope_restricted import splits_at_activations
from .network import Network
from .norms import parse_norm

METHODS = ("naive", "autolip", "seqlip", "sdp", "sdp-layer", "bab")
DEVICES = ("auto", "cpu", "cuda")


def lipschitz(net: Network, method: str = "auto", norm=2, domain=None, output=None, tol: float = 1e-3,
              time_limit: float | None = None, device: str = "auto", seed: int = 0, progress: bool = False) -> Bound:
    """Bounds the Lipschitz constant of `net` (or of x -> output @ net(x)) on `domain`.

    method: "naive", "autolip", "seqlip" (pairs of layers coupled through their activations, each pair
    solved by branch and bound within `time_limit`), "sdp" (LipSDP-Neuron), "sdp-layer" (LipSDP-Layer:
    one multiplier per layer, faster, looser) — global upper bounds, which hold on any domain; "bab"
    (the exact constant of a ReLU/LeakyReLU network on a Box or an l-inf or l1 Ball, or with
    domain=None on all of R^n for small networks of Dense layers, to `tol`, within `time_limit`) or "auto" (all that apply and fit; the tightest certified upper bound and the
    best lower bound).
    norm: p or (p_in, p_out) with p in {1, 2, inf}. The lower bound's witness lies in the domain.
    progress: show bab's bounds as they tighten on stderr.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a lipcert.Network, not {type(net).__name__}")
    p_in, p_out = parse_norm(norm)
    if not isinstance(method, str):
        raise TypeError("method must be a string")
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from auto, {', '.join(METHODS)}")
    if not (isinstance(tol, (int, float)) and tol >= 0 and math.isfinite(tol)):
        raise ValueError("tol must be a finite number >= 0")
    if time_limit is not None and not (time_limit > 0):
        raise ValueError("time_limit must be positive (seconds) or None")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}")
    if device == "cuda" and not cuda_available():
        raise LipcertError("device='cuda' was asked for but no CUDA device is available "
                           "(lipcert.cuda_available() is False)")
    if output is not None:
        net = net.with_output(output)
    domain = check_domain(domain, net.input_size)

    start = time.perf_counter()
    if method == "auto":
        with_bab = net.piecewise_linear and _bab_takes(domain)
        names = auto_global_methods(net, time_limit) + (["bab"] if with_bab else [])
    else:
        names = [method]
    results, lower, witness = {}, 0.0, None
    for name in names:
        t0 = time.perf_counter()
        if name == "bab":
            remaining = None if time_limit is None else max(0.1, time_limit - (time.perf_counter() - start))
            upper, certified, stats, bab_lower, bab_witness = bab_bound(net, p_in, p_out, domain, tol, remaining, seed,
                                                                        show_progress=progress, device=device)
            if method == "bab" and upper - bab_lower > tol * upper:
                # A global bound holds on every domain: it caps bab's anytime bound where the search is
                # still far from closing (high-dimensional balls in l2). method="auto" compares them anyway.
                caps = {n: global_upper_bound(net, n, p_in, p_out, device=device, seed=seed) for n in ("naive", "autolip")}
                cap = tightest(caps)
                if caps[cap][1] and caps[cap][0] < upper:
                    stats.update(search_upper=upper, upper_from=cap)
                    upper = caps[cap][0]
            if bab_lower > lower:
                lower, witness = bab_lower, bab_witness
        else:
            limit = auto_time_limit(name, time_limit) if method == "auto" else time_limit
            upper, certified, stats = global_upper_bound(net, name, p_in, p_out, device=device, seed=seed,
                                                         time_limit=limit)
            if name in ("sdp", "sdp-layer") and output is not None:
                stats["output"] = np.asarray(output, dtype=np.float64).tolist()
        stats["time_s"] = time.perf_counter() - t0
        results[name] = (upper, certified, stats)
    chosen = tightest(results)
    upper, certified, stats = results[chosen]
    if method == "auto":
        stats = dict(stats, candidates={n: r[0] for n, r in results.items()})

    if "bab" not in results:
        # Its work comes from time_limit alone (reproducible); the clock stops it at what is left.
        budget = 10.0 if time_limit is None else time_limit
        left = max(0.1, budget - (time.perf_counter() - start))
        lower, witness, lower_stats = lower_bound(net, p_in, p_out, domain, seed=seed, time_budget=budget,
                                                  deadline_s=left)
        stats["lower_search"] = lower_stats
    lower, witness = deepened_witness(net, p_in, p_out, domain, lower, witness)
    if lower > upper and certified:
        raise LipcertError(f"internal error: certified lower bound {lower!r} exceeds certified upper bound {upper!r}")
    exact = bool(certified and (upper - lower) <= tol * upper)
    witness_out = None if witness is None else np.asarray(witness).reshape(net.input_shape)
    return Bound(upper=float(upper), lower=float(lower), certified=bool(certified), exact=exact, method=chosen,
                 norm=(p_in, p_out), time_s=time.perf_counter() - start, witness=witness_out, stats=stats)


GLOBAL_METHODS = ("naive", "autolip", "seqlip", "sdp", "sdp-layer")
# method="auto" gives seqlip's pair searches this share of time_limit (or AUTO_SEQLIP_SECONDS without one).
AUTO_SEQLIP_SHARE = 0.2
AUTO_SEQLIP_SECONDS = 2.0


def auto_global_methods(net: Network, time_limit) -> list:
    """The global methods method="auto" runs: naive, autolip, and sdp where it fits `time_limit`, else
    seqlip where the network splits at its activations (sdp is the tighter of the two where both run)."""
    if sdp_worthwhile(net, time_limit):
        return ["naive", "autolip", "sdp"]
    return ["naive", "autolip"] + (["seqlip"] if splits_at_activations(net) else [])


def auto_time_limit(name: str, time_limit):
    """The time method="auto" gives one of its methods: only seqlip's search takes a limit."""
    if name != "seqlip":
        return time_limit
    return AUTO_SEQLIP_SECONDS if time_limit is None else AUTO_SEQLIP_SHARE * time_limit


def tightest(results: dict) -> str:
    """The method whose (upper, certified, stats) is the smallest certified upper bound (estimates last)."""
    return min(results, key=lambda n: (not results[n][1], results[n][0]))


def global_upper_bound(net: Network, name: str, p_in: float, p_out: float, device: str = "auto", seed: int = 0,
                       time_limit: float | None = None):
    """(upper, certified, stats) of one global upper-bound method, without a lower-bound search."""
    if name == "autolip":
        use_cuda = device == "cuda" or (device == "auto" and cuda_available() and gpu_worthwhile(net))
        return autolip_bound(net, p_in, p_out, use_cuda=use_cuda, seed=seed)
    if name in ("sdp", "sdp-layer"):
        return sdp_bound(net, p_in, p_out, formulation="layer" if name == "sdp-layer" else "neuron")
    if name == "seqlip":
        return seqlip_bound(net, p_in, p_out, time_limit=time_limit)
    if name == "naive":
        return naive_bound(net, p_in, p_out)
    raise ValueError(f"{name!r} is not a global upper-bound method ({', '.join(GLOBAL_METHODS)})")


def _bab_takes(domain) -> bool:
    return isinstance(domain, Box) or (isinstance(domain, Ball) and domain.p in (1.0, math.inf))


def verify_certificate(net: Network, bound: Bound) -> bool:
    """Re-proves an sdp bound from the multipliers in `bound.stats`: True when they establish
    `bound.upper` for `net` (and the output map and norm the bound was computed for)."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a lipcert.Network, not {type(net).__name__}")
    stats = bound.stats
    if bound.method not in ("sdp", "sdp-layer") or "multipliers" not in stats:
        raise ValueError(f"bound has no LipSDP certificate to verify (method {bound.method!r})")
    if stats.get("output") is not None:
        net = net.with_output(stats["output"])
    p_in, p_out = bound.norm
    proved = certified_bound_from_multipliers(net, stats["multipliers"], p_in, p_out,
                                              stats.get("formulation", "neuron"))
    return bool(bound.certified and proved <= bound.upper)

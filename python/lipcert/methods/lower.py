"""Certified lower bounds: the norm of a Jacobian attained at a point of the domain.

Search (a heuristic, so any strategy is sound): sample points, keep the best, then climb ||J(x)||
with gradient steps on u^T J(x) v (its gradient is a finite difference of two vector-Jacobian
products along v) and random perturbations, which also move piecewise-linear networks across
activation regions. The best point found is then certified by the core: J(x) v is recomputed in
extended precision with a bound on every rounding error, the activation pattern is proved (no
pre-activation within its error of a kink, so the network is differentiable there), and the error is
subtracted. Where no precision suffices (deep MLPs), J(x) v is computed exactly (exact_jvp).
"""
from __future__ import annotations

import math
import time
from typing import Optional, Tuple

import numpy as np

from .. import _core
from ..domain import polyhedral_box
from ..network import Network
from .exact_jvp import exact_directional_lower, exact_jvp_applies


def jacobian_norms(jacobians: np.ndarray, p: float, q: float) -> np.ndarray:
    """Approximate ||J_b||_{p->q} for a batch (exact formulas where cheap), used only to rank points."""
    if p == 1.0:
        return np.linalg.norm(jacobians, ord=q, axis=1).max(axis=1)
    if q == math.inf:
        dual = {1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[p]
        return np.linalg.norm(jacobians, ord=dual, axis=2).max(axis=1)
    if p == q == 2.0:
        return np.linalg.svd(jacobians, compute_uv=False)[:, 0]
    return np.array([_core.operator_norm(j, p, q)[0] for j in jacobians])


def _top_directions(jacobian: np.ndarray, p: float, q: float) -> Tuple[np.ndarray, np.ndarray]:
    """(u, v) with u^T J v ~ ||J||_{p->q}: v maximises, u is a subgradient of ||.||_q at J v."""
    _, _, _, v = _core.operator_norm(jacobian, p, q)
    w = jacobian @ v
    if q == 2.0:
        u = w / max(np.linalg.norm(w), 1e-300)
    elif q == 1.0:
        u = np.sign(w)
    else:
        u = np.zeros_like(w)
        k = int(np.argmax(np.abs(w)))
        u[k] = np.sign(w[k])
    return u, v


# The search's work is counted in multiply-adds against its time budget at this rate, not by the
# clock, so that the same network, domain, seed and budget give the same lower bound on every run and
# machine (on GLipSDP's MNIST CNNs, two runs stopped by the clock sampled 184 and 248 points and found
# 12.02 and 12.61). Measured here (2 cores), Jacobian batches sustained 0.7-1.8e10 multiply-adds/s
# on MLPs of 784-1000x3-10 and smaller and on GLipSDP's MNIST CNNs.
MULTIPLY_ADDS_PER_SECOND = 1e10
# Shares of the budget's work: sampling, then the local ascents (certification takes the rest).
SAMPLING_SHARE = 0.4
CLIMBING_SHARE = 0.4
# Jacobians per ascent step: its own, and the norms of its 8 random and one gradient candidates (the
# gradient's two vector-Jacobian products cost less than one more).
JACOBIANS_PER_CLIMB_STEP = 11


class _Search:
    def __init__(self, net: Network, p: float, q: float, domain, rng: np.random.Generator, deadline: float):
        self.net, self.p, self.q, self.domain, self.rng = net, p, q, domain, rng
        self.scale = domain.scale() if domain is not None else 1.0
        # The clock only stops a search that runs far slower than its work estimate, and says so.
        self.deadline, self.stopped_by_clock = deadline, False

    def past_deadline(self) -> bool:
        self.stopped_by_clock |= time.perf_counter() > self.deadline
        return self.stopped_by_clock

    def project(self, x: np.ndarray) -> np.ndarray:
        return x if self.domain is None else self.domain.project(x)

    def sample(self, n: int) -> np.ndarray:
        if self.domain is not None:
            return self.domain.sample(n, self.rng)
        # All of R^n: inputs at a few scales so that many activation regions are visited.
        scales = self.rng.choice([0.3, 1.0, 3.0], size=(n, 1))
        return self.rng.normal(size=(n, self.net.input_size)) * scales

    def norms(self, x: np.ndarray) -> np.ndarray:
        return jacobian_norms(self.net.jacobian(x), self.p, self.q)

    def climb(self, x: np.ndarray, value: float, steps: int) -> Tuple[np.ndarray, float]:
        step = 0.1 * self.scale
        for _ in range(steps):
            if self.past_deadline():
                break
            jac = self.net.jacobian(x[None])[0]
            u, v = _top_directions(jac, self.p, self.q)
            h = 1e-4 * self.scale / max(np.linalg.norm(v), 1e-300)
            pair = np.stack([x + h * v, x - h * v])
            g = self.net.vjp(pair, np.stack([u, u]))
            grad = (g[0] - g[1]) / (2 * h)
            candidates = [x + step * self.rng.normal(size=(8, x.size)) / math.sqrt(x.size)]
            gnorm = np.linalg.norm(grad)
            if gnorm > 0:
                candidates.append((x + step * grad / gnorm)[None])
            cand = self.project(np.concatenate(candidates))
            values = self.norms(cand)
            best = int(np.argmax(values))
            if values[best] > value:
                x, value = cand[best], float(values[best])
                step *= 1.5
            else:
                step *= 0.5
            if step < 1e-9 * self.scale:
                break
        return x, value


def certify_point(net: Network, x: np.ndarray, p: float, q: float) -> Optional[float]:
    """Certified lower bound ||J(x) v||_q / ||v||_p at x, for the v that maximises the computed
    Jacobian's norm; None when the activation pattern at x cannot be proved."""
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    jac = net.jacobian(x[None])[0]
    v = _core.operator_norm(jac, p, q)[3]
    lower, verified, _, _ = _core.certified_directional_lower(net._core, x, v, p, q)
    if verified:
        return lower
    return exact_directional_lower(net, x, v, p, q) if exact_jvp_applies(net) else None


def lower_bound(net: Network, p: float, q: float, domain=None, seed: int = 0, samples: int = 256,
                climb_steps: int = 30, starts: int = 4, time_budget: float = 10.0,
                deadline_s: Optional[float] = None):
    """(lower, witness, stats): a certified lower bound attained at `witness` (None when none found).

    time_budget sets the work (MULTIPLY_ADDS_PER_SECOND), so the result depends on the arguments
    alone; the clock stops the search only past deadline_s seconds (time_budget by default), and then
    stats["stopped_by_clock"] says so."""
    rng = np.random.default_rng(seed)
    deadline = time.perf_counter() + (time_budget if deadline_s is None else deadline_s)
    search = _Search(net, p, q, domain, rng, deadline)
    work = time_budget * MULTIPLY_ADDS_PER_SECOND
    jacobian_work = max(1.0, net._core.multiply_adds) * (1 + net.output_size)  # (activations alone: 0)
    samples = min(samples, max(1, int(SAMPLING_SHARE * work / jacobian_work)))
    chunks, values = [], []
    if domain is not None:
        chunks.append(domain.center.ravel()[None])
        values.append(search.norms(chunks[-1]))
    # Jacobians are (output_size x input_size) each: keep a chunk of them within ~200 MB.
    chunk_cap = max(1, int(2.5e7 // max(1, net.input_size * net.output_size)))
    chunk = min(8, chunk_cap)
    while (taken := sum(len(c) for c in chunks)) < samples and not (chunks and search.past_deadline()):
        chunks.append(search.sample(min(chunk, samples - taken)))
        values.append(search.norms(chunks[-1]))
        chunk = min(2 * chunk, 64, chunk_cap)
    x, values = np.concatenate(chunks), np.concatenate(values)
    order = np.argsort(values)[::-1][:starts]
    steps = min(climb_steps, int(CLIMBING_SHARE * work / (len(order) * JACOBIANS_PER_CLIMB_STEP * jacobian_work)))
    found = []
    for k in order:
        xk, vk = search.climb(x[k], float(values[k]), steps)
        found.append((vk, xk))
    for k in order:
        found.append((float(values[k]), x[k]))
    found.sort(key=lambda t: -t[0])
    stats = {"samples": int(len(x)), "climb_starts": int(len(order)), "climb_steps": steps}
    # Certify the best candidates in turn until one is certified (the clock stops after the first).
    lower, witness = 0.0, None
    for attempt, (value, xk) in enumerate(found):
        if attempt > 0 and search.past_deadline():
            break
        xk = inside_domain(domain, xk)
        certified = certify_point(net, xk, p, q)
        if certified is None:  # on a kink: nudge into a nearby region of the domain
            nudged = inside_domain(domain, search.project(xk + 1e-6 * search.scale * rng.normal(size=xk.size)))
            certified = certify_point(net, nudged, p, q)
            xk = nudged
        if certified is not None:
            lower, witness, stats["search_estimate"] = certified, xk, value
            break
    stats["stopped_by_clock"] = search.stopped_by_clock
    return lower, witness, stats


# A certified witness this close to a kink (in the 2-norm, relative to max(1, ||x||_inf)) is exact, but
# a finite difference across the kink is not, and that is how users check a witness: it is moved
# deeper into its activation region (the same Jacobian). The searches leave witnesses about 1e-6
# inside their regions: on 150 random small ReLU/LeakyReLU nets, central differences of step 1e-6
# disagreed with `lower` (by up to 40%) at 80 of 444 bab witnesses on boxes, l1 balls and R^n, and at
# 4 of 60 on MaxMin nets and small CNNs; moved, at none.
KINK_CLEARANCE = 1e-4


def deepened_witness(net: Network, p: float, q: float, domain, lower: float, witness):
    """(lower, witness): for a piecewise-linear network, the witness moved deeper into its activation
    region (core deeper_region_point) where it lay within KINK_CLEARANCE of a kink and the new point
    certifies at least `lower`; else as given."""
    if witness is None or not net.piecewise_linear:
        return lower, witness
    x = np.ascontiguousarray(witness, dtype=np.float64).ravel()
    box = polyhedral_box(domain) if domain is not None else (np.full(x.size, -np.inf), np.full(x.size, np.inf), None)
    if box is None:  # an l2 ball: the largest box around x inside it
        half = max(0.0, domain.radius - float(np.linalg.norm(x - domain.center.ravel()))) / math.sqrt(x.size)
        box = (x - half, x + half, None)
    lo, hi, l1 = box
    l1_center, l1_radius = l1 if l1 is not None else (None, 0.0)
    point = _core.deeper_region_point(net._core, x, lo, hi, l1_center, l1_radius,
                                      min_depth=KINK_CLEARANCE * max(1.0, float(np.abs(x).max(initial=0.0))))
    if point is None:
        return lower, witness
    point = inside_domain(domain, point)
    value = certify_point(net, point, p, q)
    return (value, point) if value is not None and value >= lower else (lower, witness)


def inside_domain(domain, x: np.ndarray) -> np.ndarray:
    """x, pulled towards the domain's centre until it provably lies in the domain (a projection
    computed in floating point can land a rounding error outside)."""
    if domain is None or domain.contains(x):
        return x
    center = domain.center.ravel()
    for k in range(1, 60):
        y = center + (x - center) * (1 - 2.0 ** (k - 52))
        if domain.contains(y):
            return y
    return center

"""Input domains: all of R^n (None), boxes and norm balls."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .norms import _parse_p


class Box:
    """{x : lower <= x <= upper}, elementwise; shapes of the network input (or flat)."""

    def __init__(self, lower, upper):
        self.lower = np.array(lower, dtype=np.float64)
        self.upper = np.array(upper, dtype=np.float64)
        if self.lower.shape != self.upper.shape:
            raise ValueError(f"Box lower {self.lower.shape} and upper {self.upper.shape} differ in shape")
        if not (np.all(np.isfinite(self.lower)) and np.all(np.isfinite(self.upper))):
            raise ValueError("Box bounds must be finite")
        if np.any(self.lower > self.upper):
            raise ValueError("Box lower bound exceeds the upper bound")

    @property
    def size(self) -> int:
        return self.lower.size

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.lower.ravel(), self.upper.ravel()
        return lo + (hi - lo) * rng.random((n, lo.size))

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.lower.ravel(), self.upper.ravel())

    def contains(self, x) -> bool:
        x = np.ravel(x)
        return bool(np.all(self.lower.ravel() <= x) and np.all(x <= self.upper.ravel()))

    def scale(self) -> float:
        return float(np.max(self.upper - self.lower)) or 1.0

    def __repr__(self):
        return f"Box(size={self.size})"


class Ball:
    """{x : ||x - center||_p <= radius}, p in {1, 2, inf}."""

    def __init__(self, center, radius: float, p=math.inf):
        self.center = np.array(center, dtype=np.float64)
        self.radius = float(radius)
        self.p = _parse_p(p)
        if not np.all(np.isfinite(self.center)):
            raise ValueError("Ball center must be finite")
        if not (math.isfinite(self.radius) and self.radius >= 0):
            raise ValueError("Ball radius must be finite and non-negative")

    @property
    def size(self) -> int:
        return self.center.size

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = self.center.size
        if self.p == math.inf:
            u = rng.uniform(-1, 1, (n, d))
        elif self.p == 2:
            g = rng.normal(size=(n, d))
            u = g / np.linalg.norm(g, axis=1, keepdims=True) * rng.random((n, 1)) ** (1 / d)
        else:  # uniform in the l1 ball: exponential magnitudes with random signs, scaled
            e = rng.exponential(size=(n, d + 1))
            u = (e[:, :d] / e.sum(axis=1, keepdims=True)) * rng.choice([-1.0, 1.0], (n, d))
        return self.center.ravel() + self.radius * u

    def project(self, x: np.ndarray) -> np.ndarray:
        c = self.center.ravel()
        d = x - c
        if self.p == math.inf:
            return c + np.clip(d, -self.radius, self.radius)
        if self.p == 2:
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            return c + d * np.minimum(1.0, self.radius / np.maximum(n, 1e-300))
        n = np.abs(d).sum(axis=-1, keepdims=True)  # l1: shrink radially (stays inside; not the exact projection)
        return c + d * np.minimum(1.0, self.radius / np.maximum(n, 1e-300))

    def contains(self, x) -> bool:
        """Exactly, in rational arithmetic (a witness must lie in the ball, rounding included)."""
        d = [abs(Fraction(float(a)) - Fraction(float(b))) for a, b in zip(np.ravel(x), self.center.ravel())]
        r = Fraction(self.radius)
        if self.p == math.inf:
            return max(d, default=Fraction(0)) <= r
        if self.p == 1:
            return sum(d) <= r
        return sum(t * t for t in d) <= r * r

    def scale(self) -> float:
        return self.radius or 1.0

    def __repr__(self):
        return f"Ball(size={self.size}, radius={self.radius:g}, p={self.p:g})"


def polyhedral_box(domain):
    """(lower, upper, l1_ball) for a Box or an l-inf or l1 Ball: the box (a ball's rounded outward, so
    that it holds every point of the ball) and, for an l1 Ball, the (center, radius) that cuts it down
    to the ball; None for an l2 Ball, which is not a polytope."""
    if isinstance(domain, Box):
        return domain.lower.ravel().astype(float), domain.upper.ravel().astype(float), None
    if domain.p == 2:
        return None
    c, r = domain.center.ravel(), domain.radius
    return np.nextafter(c - r, -np.inf), np.nextafter(c + r, np.inf), (c, r) if domain.p == 1.0 else None


def check_domain(domain, input_size: int):
    if domain is None:
        return None
    if not isinstance(domain, (Box, Ball)):
        raise TypeError(f"domain must be None, lipcert.Box or lipcert.Ball, not {type(domain).__name__}")
    if domain.size != input_size:
        raise ValueError(f"domain has {domain.size} coordinates but the network input has {input_size}")
    return domain

"""The result object of every bound method."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .norms import norm_label


@dataclass
class Bound:
    """Lipschitz bounds of a network for one pair of norms.

    upper: a certified upper bound when `certified`, otherwise an estimate.
    lower: ||J(witness)||, the norm of a Jacobian attained at `witness` (a point of the domain where
        the network is differentiable), with rounding errors subtracted; 0.0 when there is no witness.
    exact: certified and upper - lower <= tol * upper.
    """

    upper: float
    lower: float
    certified: bool
    exact: bool
    method: str
    norm: Tuple[float, float]
    time_s: float
    witness: Optional[np.ndarray] = None
    stats: Dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Relative gap (upper - lower) / upper."""
        return (self.upper - self.lower) / self.upper if self.upper > 0 else 0.0

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict with the fields of the CLI's --json output."""
        return {
            "upper": _json_float(self.upper),
            "lower": _json_float(self.lower),
            "certified": bool(self.certified),
            "exact": bool(self.exact),
            "method": self.method,
            "norm": [norm_label(p) for p in self.norm],
            "time_s": self.time_s,
            "witness": None if self.witness is None else self.witness.ravel().tolist(),
            "stats": _jsonable(self.stats),
        }

    def __str__(self) -> str:
        kind = "certified" if self.certified else "estimate"
        return (f"{self.method}: {self.lower:.6g} <= L <= {self.upper:.6g} ({kind}, "
                f"l{norm_label(self.norm[0])}->l{norm_label(self.norm[1])}, {self.time_s:.3g} s)")


def _json_float(x: float):
    return x if math.isfinite(x) else str(x)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, float)):
        return _json_float(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value

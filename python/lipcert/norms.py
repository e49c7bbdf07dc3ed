"""Parsing of the `norm` argument: p or (p_in, p_out) with p in {1, 2, inf}."""
from __future__ import annotations

import math
from typing import Tuple, Union

NormSpec = Union[int, float, str, Tuple[Union[int, float, str], Union[int, float, str]]]


def _parse_p(p) -> float:
    if isinstance(p, str):
        key = p.strip().lower()
        if key in ("inf", "infinity", "linf", "max"):
            return math.inf
        try:
            p = float(key)
        except ValueError:
            raise ValueError(f"norm {p!r} is not one of 1, 2, inf") from None
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"norm must be 1, 2, inf or a pair of them, not {type(p).__name__}")
    p = float(p)
    if p not in (1.0, 2.0, math.inf):
        raise ValueError(f"norm {p:g} is not supported; use 1, 2 or inf")
    return p


def parse_norm(norm: NormSpec) -> Tuple[float, float]:
    """Returns (p_in, p_out) as floats in {1.0, 2.0, inf}."""
    if isinstance(norm, (tuple, list)):
        if len(norm) != 2:
            raise ValueError("norm as a pair must be (p_in, p_out)")
        return _parse_p(norm[0]), _parse_p(norm[1])
    p = _parse_p(norm)
    return p, p


def norm_label(p: float) -> str:
    return "inf" if math.isinf(p) else str(int(p))

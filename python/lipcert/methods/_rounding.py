"""Outward-rounded scalar arithmetic for combining certified per-layer bounds."""
import math


def mul_up(a: float, b: float) -> float:
    """An upper bound on a * b for a, b >= 0."""
    return math.nextafter(a * b, math.inf)


def product_up(values) -> float:
    result = 1.0
    for v in values:
        result = mul_up(result, v)
    return result

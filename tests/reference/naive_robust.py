"""Plain-Python reference for robust aggregation."""

from __future__ import annotations

import math


def p95_reference(values):
    """NumPy's default ('linear') percentile, written out."""
    v = sorted(values)
    h = (len(v) - 1) * 0.95
    lo = math.floor(h)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (h - lo)


def unit_mean_lognormal_reference(z, sigma):
    """exp(s z - s^2 / 2) one value at a time with Python's math.exp (the C library's)."""
    return [math.exp(s * x - 0.5 * s * s) for x, s in zip(z, sigma, strict=True)]

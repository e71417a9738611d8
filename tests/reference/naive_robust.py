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

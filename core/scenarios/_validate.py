"""Argument checks shared by the scenario generators; failures raise ``SpecError``."""

from __future__ import annotations

import math

from apportion.core.errors import SpecError


def count(name: str, value, *, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (bools and floats are refused: sizes are counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(name, f"must be >= {minimum}, got {value}")
    return value


def number(name: str, value, *, low: float = 0.0, high: float = math.inf, strict: bool = False) -> float:
    """A finite number in [low, high] (``strict``: low excluded)."""
    if isinstance(value, bool):
        raise SpecError(name, f"must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(x) or x < low or x > high or (strict and x == low):
        bounds = f"{'(' if strict else '['}{low:g}, {high:g}]"
        raise SpecError(name, f"must be a finite number in {bounds}, got {value!r}")
    return x

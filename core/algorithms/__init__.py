"""Allocation algorithms behind one interface (``Allocator``), all scored by ``core.evaluate``."""

from core.algorithms.base import ALGORITHMS, AllocationResult, Allocator, get_allocator, register

__all__ = ["ALGORITHMS", "AllocationResult", "Allocator", "get_allocator", "register"]

"""The interface every allocation algorithm implements, NSGA-II and the baselines alike."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from apportion.core.algorithms.registry import get_allocator_class
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan

# Search sizes that fit in memory and time (docs/spec-formats.md, "Limits"): a population of
# 2**31 or a budget of 10**12 evaluations is refused up front, not by a MemoryError hours later.
MAX_POPULATION = 100_000
MAX_EVALUATIONS = 100_000_000  # population x (generations + 1)
MAX_GENES = 1 << 27  # population x (tasks + 1): one generation's chromosomes


def check_budget(population: int, generations: int) -> None:
    """Raise ``SpecError`` for a population or evaluation budget beyond the limits above."""
    if population > MAX_POPULATION:
        raise SpecError("population", f"must be at most {MAX_POPULATION:,}, got {population:,}")
    if population * (generations + 1) > MAX_EVALUATIONS:
        raise SpecError("generations", f"population x (generations + 1) = {population * (generations + 1):,} "
                        f"evaluations exceeds {MAX_EVALUATIONS:,}")


def check_genes(population: int, tasks: int) -> None:
    """Raise ``SpecError`` when one generation's chromosomes would not fit (``MAX_GENES``)."""
    if population * (tasks + 1) > MAX_GENES:
        raise SpecError("population", f"population x (tasks + 1) = {population * (tasks + 1):,} genes exceeds "
                        f"{MAX_GENES:,}; use a smaller population for {tasks:,} tasks")


@dataclass
class AllocationResult:
    """What an algorithm found: its plans (a single one for a constructive baseline, the
    non-dominated set for NSGA-II), their statistics rows (``core.evaluate.STATS``) from the
    shared evaluator, and per-generation history for iterative algorithms."""

    algorithm: str
    plans: list[Plan]
    stats: np.ndarray  # (len(plans), len(STATS))
    evaluations: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    # The baselines' plans (``baseline_plans``) when the algorithm built them with the same seed,
    # e.g. to seed NSGA-II; a caller needing them too (the hypervolume box) reuses them.
    baselines: dict[str, Plan] = field(default_factory=dict)


class Allocator(abc.ABC):
    """An allocation algorithm. Subclasses set ``name`` and implement ``allocate``.

    Randomness comes only from ``seed``: the same seed and instance give the same plans.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def allocate(self, evaluator: Evaluator, *, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None) -> AllocationResult:
        """Find plans for ``evaluator.instance`` and score them with ``evaluator``."""


def get_allocator(name: str, **options) -> Allocator:
    """The allocator registered under ``name``, built with ``options``."""
    return get_allocator_class(name)(**options)

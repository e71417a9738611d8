"""The interface every allocation algorithm implements, NSGA-II and the baselines alike."""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from core.evaluate import Evaluator, Plan


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


class Allocator(abc.ABC):
    """An allocation algorithm. Subclasses set ``name`` and implement ``allocate``.

    Randomness comes only from ``seed``: the same seed and instance give the same plans.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def allocate(self, evaluator: Evaluator, *, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None) -> AllocationResult:
        """Find plans for ``evaluator.instance`` and score them with ``evaluator``."""


ALGORITHMS: dict[str, type[Allocator]] = {}

# Modules that register algorithms when imported; looked up lazily so that importing the
# core does not import pymoo.
_MODULES = ("core.algorithms.baselines", "core.algorithms.nsga")


def register(cls: type[Allocator]) -> type[Allocator]:
    ALGORITHMS[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def get_allocator(name: str, **options) -> Allocator:
    """The allocator registered under ``name``, built with ``options``."""
    _load_all()
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        from core.errors import SpecError

        raise SpecError("algorithm", f"unknown algorithm {name!r}; choose from {sorted(ALGORITHMS)}") from None
    return cls(**options)

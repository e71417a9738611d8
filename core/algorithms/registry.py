"""Which allocation algorithms exist, known without importing them.

The command line's ``--algorithm`` choices, the operator's check and the DAGs' trigger-form
enum all read ``algorithm_names()``; ``get_allocator_class`` imports an algorithm's module only
when it is used. An allocator appears everywhere once it is

* built in (``BUILTIN``: name -> module that defines and registers it),
* registered at run time with ``register`` (a class decorator), or
* published by an installed package under the entry-point group ``apportion.allocators``
  (``name = "package.module:AllocatorClass"``), which is how a DAG's form learns of it.

Standard library only: DAG files call ``algorithm_names()`` while they are parsed.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "apportion.allocators"

# Iterative algorithms first, then the one-plan baselines; the order the forms show.
BUILTIN: dict[str, str] = {
    "nsga2": "apportion.core.algorithms.nsga",
    "nsga3": "apportion.core.algorithms.nsga",
    "heft": "apportion.core.algorithms.heft",
    "cpop": "apportion.core.algorithms.rank_heuristics",
    "bil": "apportion.core.algorithms.rank_heuristics",
    "greedy": "apportion.core.algorithms.baselines",
    "round-robin": "apportion.core.algorithms.baselines",
    "least-loaded": "apportion.core.algorithms.baselines",
    "shortest-first": "apportion.core.algorithms.baselines",
    "weighted-balance": "apportion.core.algorithms.baselines",
    "min-min": "apportion.core.algorithms.baselines",
    "max-min": "apportion.core.algorithms.list_heuristics",
    "duplex": "apportion.core.algorithms.list_heuristics",
    "sufferage": "apportion.core.algorithms.list_heuristics",
    "mct": "apportion.core.algorithms.baselines",
    "met": "apportion.core.algorithms.baselines",
    "olb": "apportion.core.algorithms.baselines",
    "fastest-node": "apportion.core.algorithms.baselines",
    "random": "apportion.core.algorithms.baselines",
}
ITERATIVE: tuple[str, ...] = ("nsga2", "nsga3")

# name -> Allocator subclass, filled as modules register their classes.
REGISTERED: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make an ``Allocator`` subclass available under its ``name``."""
    REGISTERED[cls.name] = cls
    return cls


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def algorithm_names() -> tuple[str, ...]:
    """Every algorithm a user can choose: built in, installed through entry points, registered."""
    names = dict.fromkeys(BUILTIN)
    names.update(dict.fromkeys(_entry_points()))
    names.update(dict.fromkeys(REGISTERED))
    return tuple(names)


def get_allocator_class(name: str) -> type:
    """The ``Allocator`` subclass registered under ``name``, importing its module if need be."""
    if name not in REGISTERED:
        if name in BUILTIN:
            importlib.import_module(BUILTIN[name])
        else:
            ep = _entry_points().get(name)
            if ep is not None:
                REGISTERED.setdefault(name, ep.load())
    try:
        return REGISTERED[name]
    except KeyError:
        from apportion.core.errors import SpecError

        raise SpecError("algorithm", f"unknown algorithm {name!r}; choose from {sorted(algorithm_names())}") from None

"""Island-model NSGA-II: K independent searches of one instance, their fronts merged, and
optional further rounds that start from the merged front (migration).

Everything an island needs is derived from the run's seed and settings (``island_configs``),
so the same seed and inputs give the same islands, the same merged front and the same plan,
bit for bit, whichever worker runs which island and in whatever order. An island is an
ordinary ``core.api.optimize`` run (NSGA-II seeded with the baselines' plans, plus the
migrants in later rounds); migrants travel as a front.json record and are mapped back onto the
instance by ``core.warm_start.carry_front``, the warm start's own path.

The merge keeps the plans of least constraint violation that no other plan dominates, one
plan per objective vector: so it is non-dominated, and it weakly dominates (constrained, as
NSGA-II's archive compares plans) every island's front (``covers``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np

from apportion.core.errors import SpecError
from apportion.core.evaluate import Plan
from apportion.core.model import Instance

MAX_ISLANDS = 64
MAX_ROUNDS = 3  # what the island_search DAG wires (its rounds beyond the Param's are skipped)
# Second entropy word of the islands' seed sequence: island seeds never equal the run's seed stream.
_ISLAND_STREAM = 0x15A1D


@dataclass(frozen=True)
class IslandConfig:
    """One island of one round: its index, its NSGA-II seed and the objectives it searches.

    ``objectives`` is the run's list, or (objective emphasis) the run's list without one
    objective, so the island works on the edge of the front where the others trade off; its
    plans are still scored and merged on all the run's objectives.
    """

    island: int
    round: int
    seed: int
    objectives: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"island": self.island, "round": self.round, "seed": self.seed, "objectives": list(self.objectives)}


def _check_count(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if not 1 <= value <= maximum:
        raise SpecError(name, f"must be between 1 and {maximum}, got {value}")
    return int(value)


def island_seeds(seed: int, islands: int, round: int = 1) -> list[int]:
    """``islands`` NSGA-II seeds (0 .. 2**31-1) for one round, from the run's ``seed`` alone."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError("seed", f"must be an integer >= 0, got {seed!r}")
    islands = _check_count("islands", islands, MAX_ISLANDS)
    round = _check_count("round", round, MAX_ROUNDS)
    words = np.random.SeedSequence([int(seed), _ISLAND_STREAM, round]).generate_state(islands, dtype=np.uint32)
    return [int(w & 0x7FFFFFFF) for w in words]


def island_configs(seed: int, islands: int, objectives: Sequence[str], *, round: int = 1,
                   emphasis: bool = True) -> list[IslandConfig]:
    """The islands of one round. Island 0 always searches every objective; with ``emphasis``
    (and two or more objectives) island i >= 1 leaves out objective ``(i - 1) mod k``."""
    from apportion.core.pareto import check_objectives

    names = check_objectives(objectives)
    seeds = island_seeds(seed, islands, round)
    configs = []
    for i, island_seed in enumerate(seeds):
        searched = names
        if emphasis and i > 0 and len(names) > 1:
            left_out = (i - 1) % len(names)
            searched = names[:left_out] + names[left_out + 1:]
        configs.append(IslandConfig(island=i, round=round, seed=island_seed, objectives=searched))
    return configs


def island_budget(generations: int, islands: int, rounds: int = 1) -> int:
    """Generations per island and round that spend about the evaluations of one search of
    ``generations`` at the same population: each island also scores its initial population,
    so K x R islands of g generations score K R (g + 1) populations against G + 1 (at least
    1 generation)."""
    for name, value in (("generations", generations), ("islands", islands), ("rounds", rounds)):
        _check_count(name, value, 1 << 30)
    return max(1, round((generations + 1) / (islands * rounds)) - 1)


# --- Merging ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergedFront:
    """The merged front: for each kept plan, the island it came from and its row there."""

    island: np.ndarray
    row: np.ndarray
    F: np.ndarray
    violation: np.ndarray

    def __len__(self) -> int:
        return int(self.island.shape[0])


def _as_front(F, violation, name: str) -> tuple[np.ndarray, np.ndarray]:
    F = np.atleast_2d(np.asarray(F, dtype=np.float64))
    v = np.zeros(F.shape[0]) if violation is None else np.asarray(violation, dtype=np.float64).reshape(-1)
    if v.shape[0] != F.shape[0]:
        raise SpecError(name, f"has {F.shape[0]} plans but {v.shape[0]} violation values")
    if np.isnan(F).any() or np.isnan(v).any():
        raise SpecError(name, "holds NaN objective or violation values")
    return F, v


def merge_fronts(fronts: Sequence[np.ndarray], violations: Sequence[np.ndarray] | None = None) -> MergedFront:
    """Merge island fronts (objective matrices in minimisation form, one column per objective,
    and optionally each plan's constraint violation, 0 = feasible): the plans of least
    violation that no other dominates, the first of equal objective vectors kept (island order,
    then row order)."""
    from apportion.core.pareto import non_dominated

    if not fronts:
        raise SpecError("fronts", "give at least one island front")
    violations = [None] * len(fronts) if violations is None else list(violations)
    if len(violations) != len(fronts):
        raise SpecError("violations", f"give one array per front ({len(fronts)}), got {len(violations)}")
    checked = [_as_front(F, v, f"fronts[{i}]") for i, (F, v) in enumerate(zip(fronts, violations, strict=True))]
    widths = {F.shape[1] for F, _ in checked if F.shape[0]}
    if len(widths) > 1:
        raise SpecError("fronts", f"objective counts differ between islands: {sorted(widths)}")
    island = np.concatenate([np.full(F.shape[0], i, dtype=np.int64) for i, (F, _) in enumerate(checked)])
    row = np.concatenate([np.arange(F.shape[0], dtype=np.int64) for F, _ in checked])
    if island.shape[0] == 0:
        raise SpecError("fronts", "every island front is empty")
    F_all = np.concatenate([F for F, _ in checked if F.shape[0]])
    v_all = np.concatenate([v for _, v in checked])
    pool = np.flatnonzero(v_all <= v_all.min())
    keep = pool[non_dominated(F_all[pool], distinct=True)]
    return MergedFront(island=island[keep], row=row[keep], F=F_all[keep], violation=v_all[keep])


def is_non_dominated(F: np.ndarray) -> bool:
    """No row of F dominates another, and no two rows are equal."""
    from apportion.core.pareto import non_dominated

    F = np.atleast_2d(np.asarray(F, dtype=np.float64))
    return F.shape[0] == 0 or non_dominated(F, distinct=True).shape[0] == F.shape[0]


def covers(F: np.ndarray, violation: np.ndarray | None, other_F: np.ndarray,
           other_violation: np.ndarray | None = None) -> bool:
    """Whether every plan of ``other`` is weakly dominated by a plan of this front, as
    constrained domination has it: a plan of less violation dominates; among equal violation,
    no worse in every objective."""
    F, v = _as_front(F, violation, "front")
    G, w = _as_front(other_F, other_violation, "other front")
    if G.shape[0] == 0:
        return True
    if F.shape[0] == 0:
        return False
    less = v[:, None] < w[None, :]
    no_worse = (v[:, None] == w[None, :]) & np.all(F[:, None, :] <= G[None, :, :], axis=2)
    return bool(np.all(np.any(less | no_worse, axis=0)))


# --- Plans, boxes and migrants ------------------------------------------------------------------


def violation_of(instance: Instance, stats: np.ndarray) -> np.ndarray:
    """Each plan's constraint violation (deadlines, unroutable links) from its statistics rows,
    as NSGA-II's archive measures it."""
    from apportion.core.algorithms.pymoo_adapters import constraint_columns

    stats = np.atleast_2d(stats)
    columns = constraint_columns(instance)
    if not columns:
        return np.zeros(stats.shape[0])
    return np.maximum(stats[:, columns], 0.0).sum(axis=1)


def reference_box(instance: Instance, objectives: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ideal, nadir) of the instance's fixed reference box (``core.reference_box``): the box
    every run on this instance reports in, so the hypervolumes of islands, of the merged front
    and of a single search compare with each other and with other runs."""
    from apportion.core.reference_box import reference_box as instance_box

    box = instance_box(instance, objectives)
    return box.ideal, box.nadir


def migrant_indices(F: np.ndarray, limit: int) -> np.ndarray:
    """Which rows of a merged front (objective matrix ``F``) seed the next round, ascending:
    all of them if at most ``limit``, else the ``limit`` most spread out (largest crowding
    distance, ties by row)."""
    from apportion.core.pareto import crowding_distance

    F = np.atleast_2d(np.asarray(F, dtype=np.float64))
    if F.shape[0] <= limit:
        return np.arange(F.shape[0])
    crowd = crowding_distance(F)
    return np.sort(np.lexsort((np.arange(F.shape[0]), -crowd))[:limit])


def carry_migrants(front: Mapping[str, Any] | None, instance: Instance) -> list[Plan]:
    """The plans of a front.json record (the previous round's merged front) as plans for
    ``instance`` (``core.warm_start.carry_front``; HEFT's node for anything unmapped)."""
    if front is None:
        return []
    from apportion.core.algorithms.heft import HeftAllocator
    from apportion.core.warm_start import carry_front

    return carry_front(front, instance, HeftAllocator().build(instance))


def run_island(instance: Instance, settings, config: IslandConfig, initial_plans: Sequence[Plan] = ()):
    """One island's search: ``settings`` with the island's seed and objectives, started from
    the baselines and ``initial_plans``. Returns the ``core.api.RunResult``."""
    from apportion.core.api import optimize

    return optimize(instance, replace(settings, seed=config.seed, objectives=config.objectives),
                    initial_plans=initial_plans)


# --- A whole island search in one process ---------------------------------------------------------


@dataclass(frozen=True)
class IslandFront:
    """What an island hands to the merge: its plans and their statistics rows (all of
    ``core.evaluate.STATS``, so they can be scored on any objectives), and what it cost."""

    config: IslandConfig | None  # None for a previous round's merged front
    plans: tuple[Plan, ...]
    stats: np.ndarray
    evaluations: int
    seconds: float


def island_front(result, config: IslandConfig) -> IslandFront:
    """An ``IslandFront`` from an island's ``RunResult``."""
    return IslandFront(config=config, plans=tuple(result.front), stats=result.front_stats,
                       evaluations=int(result.evaluations), seconds=float(result.seconds))


def merge_islands(instance: Instance, objectives: Sequence[str], fronts: Sequence[IslandFront],
                  ) -> tuple[list[Plan], np.ndarray, MergedFront]:
    """Merge island fronts on ``objectives``: (plans, statistics rows, ``MergedFront``)."""
    from apportion.core.pareto import objective_matrix

    merged = merge_fronts([objective_matrix(f.stats, objectives) for f in fronts],
                          [violation_of(instance, f.stats) for f in fronts])
    plans = [fronts[i].plans[r] for i, r in zip(merged.island.tolist(), merged.row.tolist(), strict=True)]
    stats = np.vstack([fronts[i].stats[r] for i, r in zip(merged.island.tolist(), merged.row.tolist(), strict=True)])
    return plans, stats, merged


@dataclass(frozen=True)
class IslandSearch:
    """An island search's outcome: the merged front after the last round, and every round's
    island fronts (``rounds[r][i]``)."""

    plans: list[Plan]
    stats: np.ndarray
    merged: MergedFront
    rounds: list[list[IslandFront]]

    @property
    def evaluations(self) -> int:
        return sum(f.evaluations for fronts in self.rounds for f in fronts)


def search_islands(instance: Instance, settings, islands: int, rounds: int = 1, *,
                   emphasis: bool = True) -> IslandSearch:
    """Run every island of every round here, one after another (what the island_search DAG
    spreads over workers), merging after each round together with the previous round's merged
    front (so a round never loses a plan); round r + 1 starts from round r's merged front
    (``migrant_indices``: at most one population)."""
    rounds = _check_count("rounds", rounds, MAX_ROUNDS)
    previous: IslandFront | None = None
    seeds: list[Plan] = []
    history: list[list[IslandFront]] = []
    for r in range(1, rounds + 1):
        fronts = [island_front(run_island(instance, settings, config, seeds), config)
                  for config in island_configs(settings.seed, islands, settings.objectives, round=r,
                                               emphasis=emphasis)]
        history.append(fronts)
        plans, stats, merged = merge_islands(instance, settings.objectives, fronts + ([previous] if previous else []))
        previous = IslandFront(config=None, plans=tuple(plans), stats=stats, evaluations=0, seconds=0.0)
        seeds = [plans[i] for i in migrant_indices(merged.F, settings.population)]
    return IslandSearch(plans=plans, stats=stats, merged=merged, rounds=history)


def merged_result(instance: Instance, settings, plans: Sequence[Plan], stats: np.ndarray, *,
                  box: tuple[np.ndarray, np.ndarray], evaluations: int, seconds: float):
    """The merged front as a ``core.api.RunResult`` (the plan ``settings.select`` picks, its
    hypervolume in ``box``), so ``core.api.write_outputs`` writes its plan.json, pareto.csv
    and schedule.csv like any run's."""
    from apportion.core.api import RunResult
    from apportion.core.evaluate import Evaluator
    from apportion.core.metrics import plan_metrics
    from apportion.core.pareto import hypervolume, objective_matrix, select
    from apportion.core.reference_box import ReferenceBox

    chosen_index = int(select(stats, settings.objectives, settings.select))
    chosen = Evaluator(instance).schedule(plans[chosen_index])
    return RunResult(instance=instance, settings=settings, front=list(plans), front_stats=stats,
                     chosen_index=chosen_index, chosen=chosen, metrics=plan_metrics(instance, chosen),
                     hypervolume=float(hypervolume(objective_matrix(stats, settings.objectives), *box)),
                     evaluations=int(evaluations), seconds=float(seconds),
                     reference_box=ReferenceBox(tuple(settings.objectives), *box).record())

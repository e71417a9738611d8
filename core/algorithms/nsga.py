"""NSGA-II (and NSGA-III for many objectives) over allocation plans, on pymoo.

The allocators here set up a run; ``pymoo_adapters`` holds the array-based glue pymoo's loop
runs on, ``variation`` the chromosome and its variation operators.

* the chromosome is a node per task plus the dispatch order (``variation``), so every
  topological order is reachable, every baseline plan is exactly representable and the
  initial population holds them all (``seed_with_baselines``), with each one's insertion
  schedule and the earliest-finish placement of its order (``insertion_seeds``), and the
  same for CPoP, BIL and HEFT under the other mean-transfer reading (``rank_seeds``,
  seeds only, not reported as baselines); random plans share two orders (``order_pool``);
* each generation a short local search (``local_search.MemeticStep``: insertion decoding and
  critical-path moves) improves the archive's fastest plan not improved yet, when makespan
  is an objective; its plan joins the children;
* every evaluated batch updates a ``ParetoArchive`` of the non-dominated feasible plans seen,
  so crowding never loses a good plan: the result is the archive, which therefore weakly
  dominates every seeded baseline plan.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
from pymoo.optimize import minimize

from apportion.core.algorithms.base import AllocationResult, Allocator, check_budget, check_genes
from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.heft import heft_priority
from apportion.core.algorithms.local_search import LocalSearch, MemeticStep
from apportion.core.algorithms.pymoo_adapters import (
    ArrayEvaluator,
    ArrayNSGA2,
    FeasibilityTournament,
    HistoryCallback,
    PlanProblem,
)
from apportion.core.algorithms.rank_heuristics import rank_seeds
from apportion.core.algorithms.registry import register
from apportion.core.algorithms.variation import (
    ArrayMating,
    KeepRepair,
    PlanCodec,
    PlanMutation,
    PlanSampling,
    RowHashDuplicateElimination,
    UniformCrossover,
)
from apportion.core.defaults import GENERATIONS, POPULATION
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator, Plan
from apportion.core.model import Instance
from apportion.core.pareto import DEFAULT_OBJECTIVES, check_objectives, non_dominated


def order_pool(instance: Instance, orders=()) -> np.ndarray:
    """(K, n) distinct dispatch orders random chromosomes start from: ``instance.topo_order``,
    HEFT's upward-rank order, then ``orders`` (e.g. each baseline plan's own), first
    occurrence kept."""
    pool: dict[bytes, np.ndarray] = {}
    for order in (instance.topo_order, heft_priority(instance), *orders):
        order = np.ascontiguousarray(order, dtype=np.int32)
        pool.setdefault(order.tobytes(), order)
    return np.stack(list(pool.values()))


class ParetoArchive:
    """The non-dominated feasible chromosomes seen so far (with their statistics rows).

    While no feasible plan has been seen it holds the non-dominated plans of least constraint
    violation instead. Rows with equal objective vectors are kept once (the earliest).
    """

    def __init__(self):
        self._rows: list[np.ndarray] = []  # the chromosomes; a list, so a change copies only new rows
        self.stats: np.ndarray | None = None
        self.F: np.ndarray | None = None
        self.cv: np.ndarray | None = None
        self.version = 0  # counts the changes, so a caller can tell when to recompute a summary

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def X(self) -> np.ndarray | None:
        return np.array(self._rows) if self._rows else None

    def row(self, i: int) -> np.ndarray:
        """The chromosome of entry ``i`` (without building ``X``)."""
        return self._rows[i]

    @property
    def feasible(self) -> bool:
        return self.cv is not None and bool(self.cv[0] <= 0.0)

    def add(self, X: np.ndarray, stats: np.ndarray, F: np.ndarray, cv: np.ndarray) -> None:
        old = len(self)
        if old:
            F_all, cv_all = np.concatenate((self.F, F)), np.concatenate((self.cv, cv))
        else:
            F_all, cv_all = F, cv
        best_cv = 0.0 if np.any(cv_all <= 0.0) else cv_all.min()
        candidates = np.flatnonzero(cv_all <= best_cv)
        keep = candidates[non_dominated(F_all[candidates], distinct=True)]
        if keep[-1] < old:
            return  # nothing new on the front
        kept_old, kept_new = keep[keep < old], keep[keep >= old] - old
        self._rows = [self._rows[i] for i in kept_old.tolist()] + [X[i].copy() for i in kept_new.tolist()]
        self.stats = np.concatenate((self.stats[kept_old], stats[kept_new])) if old else stats[kept_new]
        self.F, self.cv = F_all[keep], cv_all[keep]
        self.version += 1


# Most pairs cross; the rest give mutation-only children (copies of their parents plus the
# mutation). 0.5 scored a little higher on the ~100-task workflows of bench_quality but lower
# on the 1,000-task reference workload of bench_optimizer (hypervolume 1.45 against 1.57);
# with 0.9 the node-release move still wins all 15 quality instances.
CROSSOVER_PROB = 0.9

# Decodes per generation of the memetic step: at 1,000 tasks about a sixth of a generation's
# time. 24 cost ~10% more CPU for the default run (1,000 tasks, 8 nodes: 0.93-0.96 s against
# 0.84-0.87 s) with no better bench_saga figures (geometric mean over 10 instances 0.934
# against 0.928).
LOCAL_SEARCH_BUDGET = 12


def insertion_seeds(instance: Instance, plans) -> list[Plan]:
    """For each plan, its insertion schedule as a plan and the earliest-finish placement of
    its order (HEFT's rule with that priority list): cheap seeds, often faster than the plan."""
    search = LocalSearch(instance)
    return [search.insertion_plan(plan, choose_nodes=choose)[0] for plan in plans for choose in (False, True)]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(name, f"must be at least {minimum}, got {value}")
    return int(value)


@register
class NSGA2Allocator(Allocator):
    """NSGA-II over plans (see the module docstring); returns the archive's non-dominated set.

    :param population: individuals per generation (the baselines are seeded on top if more).
    :param generations: offspring generations after the initial population.
    :param objectives: names from ``core.pareto.OBJECTIVES``.
    :param seed_with_baselines: put every baseline's plan into the initial population.
    :param parallel: evaluate each batch on Numba threads.
    :param initial_plans: plans to start from as well (a warm start: the previous run's front).
    :param objective_bounds: objective values (minimisation form, ``objectives`` order) every
        returned plan must weakly beat, as constraints; None for none.
    :param local_search: decodes per generation of the memetic step (``local_search``) when
        makespan is an objective; 0 turns it off.
    """

    name = "nsga2"

    def __init__(self, *, population: int = POPULATION, generations: int = GENERATIONS, objectives=DEFAULT_OBJECTIVES,
                 seed_with_baselines: bool = True, parallel: bool = False, initial_plans: Sequence[Plan] = (),
                 objective_bounds: Sequence[float] | None = None, local_search: int = LOCAL_SEARCH_BUDGET):
        self.population = _check_int("population", population, 4)
        self.generations = _check_int("generations", generations, 1)
        check_budget(self.population, self.generations)
        self.objectives = check_objectives(objectives)
        self.seed_with_baselines = bool(seed_with_baselines)
        self.parallel = bool(parallel)
        self.initial_plans = tuple(initial_plans)
        self.local_search = _check_int("local_search", local_search, 0)
        self.objective_bounds = None if objective_bounds is None else np.asarray(objective_bounds, dtype=np.float64)
        if self.objective_bounds is not None and self.objective_bounds.shape != (len(self.objectives),):
            raise SpecError("objective_bounds", f"needs one value per objective {list(self.objectives)}, "
                            f"got {objective_bounds!r}")

    def _algorithm(self, codec: PlanCodec, seeds: np.ndarray, memetic: MemeticStep | None):
        return ArrayNSGA2(
            pop_size=self.population, sampling=PlanSampling(codec, seeds),
            crossover=UniformCrossover(prob=CROSSOVER_PROB),
            mutation=PlanMutation(codec), eliminate_duplicates=RowHashDuplicateElimination(), memetic=memetic,
        )

    def allocate(self, evaluator: Evaluator, *, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None) -> AllocationResult:
        started = time.perf_counter()
        instance = evaluator.instance
        check_genes(self.population, instance.n_tasks)
        evaluations_before = evaluator.evaluations
        seed_plans = list(self.initial_plans)
        baselines = baseline_plans(evaluator, seed=seed) if self.seed_with_baselines else {}
        seed_plans += baselines.values()
        if self.seed_with_baselines:
            seed_plans += insertion_seeds(instance, baselines.values())
            # CPoP, BIL and HEFT's other rank: seeds only (not reported as baselines).
            extra = rank_seeds(instance)
            seed_plans += extra.values()
            seed_plans += insertion_seeds(instance, extra.values())
        # Random plans share two orders: each distinct order costs the evaluator a layout.
        codec = PlanCodec(instance, order_pool(instance))
        seeds = np.array([codec.encode(p) for p in seed_plans]).reshape(len(seed_plans), codec.n_genes)
        seeds = seeds[RowHashDuplicateElimination.keep_mask(seeds)]
        # A plain evaluator is rebuilt for the requested threading; any other kind (robust
        # scenarios) is used as given.
        rebuild = type(evaluator) is Evaluator and evaluator.parallel != self.parallel
        hot = Evaluator(instance, parallel=self.parallel) if rebuild else evaluator
        problem = PlanProblem(hot, codec, self.objectives, ParetoArchive(), self.objective_bounds)
        history = HistoryCallback(problem, self.objectives, progress, baselines)
        memetic = (MemeticStep(codec, problem.archive, STAT_INDEX["makespan"], self.local_search)
                   if self.local_search and "makespan" in self.objectives else None)
        minimize(problem, self._algorithm(codec, seeds, memetic), ("n_gen", self.generations + 1), seed=seed,
                 callback=history, copy_algorithm=False)

        archive = problem.archive
        # Fastest first (then the other objectives), a stable order for reports.
        order = np.lexsort(archive.F.T[::-1])
        X = archive.X[order]
        plans = [codec.decode(row) for row in X]
        assignment, orders = codec.split(X)
        stats = evaluator.stats(assignment, orders, check=True)
        evaluations = evaluator.evaluations - evaluations_before + (hot.evaluations if hot is not evaluator else 0)
        return AllocationResult(algorithm=self.name, plans=plans, stats=stats, evaluations=evaluations,
                                seconds=time.perf_counter() - started, history=history.records,
                                baselines=baselines)


def das_dennis_partitions(objectives: int, population: int) -> int:
    """The most partitions whose Das-Dennis directions (comb(p + k - 1, k - 1) of them for k
    objectives) fit in ``population``, at least 1. One objective has a single direction
    whatever the partitions, so 1."""
    if objectives == 1:
        return 1
    partitions = 1
    while math.comb(partitions + 1 + objectives - 1, objectives - 1) <= population:
        partitions += 1
    return partitions


@register
class NSGA3Allocator(NSGA2Allocator):
    """NSGA-III (reference directions instead of crowding) for four or more objectives; the
    same chromosome, operators, seeds, constraints and archive as ``nsga2``, on pymoo's own
    loop (so without the memetic step). Das-Dennis directions, as many as fit in the
    population."""

    name = "nsga3"

    def _algorithm(self, codec: PlanCodec, seeds: np.ndarray, memetic: MemeticStep | None):
        # Imported here: pymoo's NSGA-III pulls in SciPy, which nsga2 runs do not need.
        from pymoo.algorithms.moo.nsga3 import NSGA3
        from pymoo.util.ref_dirs import get_reference_directions

        k = len(self.objectives)
        ref_dirs = get_reference_directions("das-dennis", k, n_partitions=das_dennis_partitions(k, self.population))
        evaluator = ArrayEvaluator()
        selection = FeasibilityTournament(evaluator)
        crossover, mutation = UniformCrossover(), PlanMutation(codec)
        duplicates = RowHashDuplicateElimination()
        return NSGA3(
            ref_dirs=ref_dirs, pop_size=self.population, sampling=PlanSampling(codec, seeds), selection=selection,
            crossover=crossover, mutation=mutation, repair=KeepRepair(), eliminate_duplicates=duplicates,
            evaluator=evaluator, mating=ArrayMating(selection, crossover, mutation, duplicates),
        )

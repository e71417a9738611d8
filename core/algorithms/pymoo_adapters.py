"""pymoo's loop on chromosome matrices: the glue between pymoo and the allocation problem.

Every part that touches the population is array-based so the loop's own cost stays small next
to plan evaluation:

* ``PlanProblem._evaluate`` scores the whole offspring batch with ONE ``Evaluator.stats``
  call (``check=False``: the variation operators keep every gene eligible and every order
  topological) and feeds every batch to the run's ``ParetoArchive``;
* survival is non-dominated sorting + crowding with Numba kernels (``core.pareto``), parent
  selection a vectorised binary tournament, and ``ArrayEvaluator`` writes results back in one
  pass; ``ArrayNSGA2`` runs generations without per-individual bookkeeping;
* ``HistoryCallback`` records each generation (hypervolume, best objectives, evaluations).

Constraints (pymoo's ``G <= 0``): total lateness when the instance has any deadline, the count
of unroutable edges when the cluster has a pair of nodes without a link.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from pymoo.algorithms.base.genetic import GeneticAlgorithm
from pymoo.core.callback import Callback
from pymoo.core.evaluator import Evaluator as PymooEvaluator
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.selection import Selection
from pymoo.core.survival import Survival
from pymoo.util import default_random_state

from apportion.core.algorithms.variation import (
    ArrayMating,
    KeepRepair,
    PlanCodec,
    PlanMutation,
    RowHashDuplicateElimination,
    UniformCrossover,
    new_population,
    population_matrix,
)
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Instance
from apportion.core.pareto import objective_columns, ranks_and_crowding

if TYPE_CHECKING:
    from apportion.core.algorithms.local_search import MemeticStep
    from apportion.core.algorithms.nsga import ParetoArchive


def constraint_columns(instance: Instance) -> list[int]:
    """STATS columns used as constraints (<= 0) on this instance."""
    columns = []
    if np.isfinite(instance.deadline).any() or np.isfinite(instance.request_deadline).any():
        columns.append(STAT_INDEX["lateness"])
    if not np.isfinite(instance.inv_bandwidth).all():
        columns.append(STAT_INDEX["unroutable"])
    return columns


class PlanProblem(Problem):
    """The allocation problem for pymoo: minimise the objectives subject to the constraints,
    one vectorised evaluation per batch; every batch also feeds ``archive``.

    ``bound`` (objective values, minimisation form) adds one constraint per objective: a
    feasible plan is no worse than ``bound`` in any objective.
    """

    def __init__(self, evaluator: Evaluator, codec: PlanCodec, objectives, archive: ParetoArchive,
                 bound: np.ndarray | None = None):
        self.evaluator = evaluator
        self.codec = codec
        self.columns, self.signs = objective_columns(objectives)
        self.constraints = constraint_columns(evaluator.instance)
        self.bound = None if bound is None else np.asarray(bound, dtype=np.float64)
        self.archive = archive
        self.evaluations = 0
        n = codec.n_tasks
        xu = np.concatenate((np.full(n, evaluator.instance.n_nodes - 1), np.full(n, n - 1)))
        n_bounds = 0 if self.bound is None else len(self.columns)
        super().__init__(n_var=codec.n_genes, n_obj=len(self.columns), n_ieq_constr=len(self.constraints) + n_bounds,
                         xl=0, xu=xu, vtype=int)

    def _evaluate(self, X, out, *args, **kwargs):
        X = np.asarray(X, dtype=np.int32)
        assignment, orders = self.codec.split(X)
        stats = self.evaluator.stats(assignment, orders, check=False)
        self.evaluations += X.shape[0]
        F = stats[:, self.columns] * self.signs
        G = stats[:, self.constraints]
        if self.bound is not None:
            G = np.hstack((G, F - self.bound))
        out["F"] = F
        if G.shape[1]:
            out["G"] = G
        self.archive.add(X, stats, F, np.maximum(G, 0.0).sum(axis=1))


class ArrayEvaluator(PymooEvaluator):
    """pymoo's evaluator on chromosome matrices: every evaluated F, G and CV is kept in arrays,
    a batch is evaluated in one call and known by its rows in them, so survival gathers
    objectives by row. ``eval`` (for pymoo's own loop, as in NSGA-III) also writes the rows
    to the individuals in one pass, each carrying its row (``ind.row``).
    """

    def __init__(self):
        super().__init__()
        self.F = np.empty((0, 0))
        self.G = np.empty((0, 0))
        self.CV = np.empty(0)
        self.size = 0
        self.last_rows = np.empty(0, dtype=np.int64)  # rows of the population last passed to eval

    def evaluate(self, problem, X: np.ndarray, count: bool = True) -> np.ndarray:
        """Evaluate the chromosomes X (one row each); returns their rows."""
        out = problem.evaluate(X, return_values_of=["F", "G"], return_as_dictionary=True)
        F, G = out["F"], out["G"]
        CV = np.maximum(G, 0.0).sum(axis=1)
        end = self.size + F.shape[0]
        if end > self.CV.shape[0]:  # grow by doubling
            capacity = max(2 * self.CV.shape[0], end)
            grown = np.empty((capacity, F.shape[1])), np.empty((capacity, G.shape[1])), np.empty(capacity)
            if self.size:
                for old, new in zip((self.F, self.G, self.CV), grown, strict=True):
                    new[: self.size] = old[: self.size]
            self.F, self.G, self.CV = grown
        self.F[self.size:end], self.G[self.size:end], self.CV[self.size:end] = F, G, CV
        rows, self.size = np.arange(self.size, end), end
        if count:
            self.n_eval += F.shape[0]
        return rows

    def individuals(self, X: np.ndarray, rows: np.ndarray) -> Population:
        """Evaluated individuals for the chromosomes X, whose results are at ``rows``."""
        pop = new_population(X)
        for ind, row in zip(pop, rows.tolist(), strict=True):
            self._set(ind, row)
        return pop

    def _set(self, ind, row: int) -> None:
        state = ind.__dict__  # the plain fields behind pymoo's F, G, CV properties
        state["_F"], state["_G"], state["_CV"] = self.F[row].copy(), self.G[row].copy(), self.CV[row: row + 1].copy()
        state["row"] = row
        state["evaluated"].update(("F", "G", "H"))

    def objectives(self, pop) -> tuple[np.ndarray, np.ndarray]:
        """(F, CV) of the evaluated individuals of ``pop``, in population order."""
        rows = np.fromiter((ind.row for ind in pop), dtype=np.int64, count=len(pop))
        return self.F[rows], self.CV[rows]

    def eval(self, problem, pop, skip_already_evaluated=None, evaluate_values_of=None, count_evals=True, X=None,
             **kwargs):
        """Evaluate the individuals of ``pop`` not evaluated yet; ``X``, if given, is the
        chromosome matrix of ``pop`` (saves reading the rows back from the individuals)."""
        todo = [ind for ind in pop if not ind.evaluated]
        if todo:
            if X is None or len(todo) != len(pop):
                X = population_matrix(todo)
            for ind, row in zip(todo, self.evaluate(problem, X, count_evals).tolist(), strict=True):
                self._set(ind, row)
        self.last_rows = (np.arange(self.size - len(pop), self.size) if len(todo) == len(pop)
                          else np.fromiter((ind.row for ind in pop), dtype=np.int64, count=len(pop)))
        return pop


class RankAndCrowdingSurvival(Survival):
    """NSGA-II survival on arrays: feasible plans by non-domination rank then crowding
    distance (ties at random), then infeasible plans by constraint violation.

    Leaves ``rank`` and ``crowding`` of the survivors (in survivor order) for the tournament;
    infeasible survivors rank after every feasible front, in violation order.
    """

    def __init__(self, evaluator: ArrayEvaluator):
        super().__init__(filter_infeasible=False)
        self.evaluator = evaluator
        self.rank = np.empty(0, dtype=np.int64)
        self.crowding = np.empty(0)

    @staticmethod
    def choose(F: np.ndarray, CV: np.ndarray, n_survive: int, rng: np.random.Generator):
        """(survivor indices, their rank, their crowding distance).

        Sorting feasible plans by (rank, -crowding, random) and cutting at ``n_survive`` keeps
        whole fronts and splits only the last one by crowding, as NSGA-II does."""
        feasible = np.flatnonzero(CV <= 0.0)
        rank, crowd = ranks_and_crowding(F[feasible])
        best = np.lexsort((rng.random(feasible.size), -crowd, rank))[:n_survive]
        if feasible.size == CV.size:  # the common case: no infeasible plan to rank after them
            return best, rank[best], crowd[best]
        infeasible = np.flatnonzero(CV > 0.0)
        extra = infeasible[np.argsort(CV[infeasible], kind="stable")][: n_survive - best.size]
        first_extra_rank = rank[best].max() + 1 if best.size else 0
        return (np.concatenate((feasible[best], extra)),
                np.concatenate((rank[best], first_extra_rank + np.arange(extra.size))),
                np.concatenate((crowd[best], np.zeros(extra.size))))

    @default_random_state
    def do(self, problem, pop, *args, n_survive=None, random_state=None, return_indices=False, **kwargs):
        if len(pop) == 0:
            return pop
        n_survive = len(pop) if n_survive is None else min(n_survive, len(pop))
        F, CV = self.evaluator.objectives(pop)
        index, self.rank, self.crowding = self.choose(F, CV, n_survive, random_state)
        return index.tolist() if return_indices else pop[index]

    def _do(self, problem, pop, *args, n_survive=None, random_state=None, **kwargs):
        raise NotImplementedError("RankAndCrowdingSurvival works in do()")


def _contestants(size: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs of population indices, drawn from concatenated permutations as pymoo's
    tournament does."""
    draws = np.concatenate([rng.permutation(size) for _ in range(math.ceil(2 * count / size))])
    a, b = draws[: 2 * count].reshape(2, -1)
    return a, b


class RankCrowdingTournament(Selection):
    """Binary tournament on the ranks and crowding distances ``survival`` left: lower rank
    wins, then larger crowding distance, then a coin flip."""

    def __init__(self, survival: RankAndCrowdingSurvival):
        super().__init__()
        self.survival = survival

    def _do(self, problem, pop, n_select, n_parents=1, random_state=None, **kwargs):
        rank, crowd = self.survival.rank, self.survival.crowding
        a, b = _contestants(len(pop), n_select * n_parents, random_state)
        coin = random_state.random(a.size) < 0.5
        tie = rank[a] == rank[b]
        a_wins = (rank[a] < rank[b]) | (tie & (crowd[a] > crowd[b])) | (tie & (crowd[a] == crowd[b]) & coin)
        return np.where(a_wins, a, b).reshape(n_select, n_parents)


class FeasibilityTournament(Selection):
    """NSGA-III's binary tournament on arrays: the smaller constraint violation wins, else a
    coin flip (pymoo's ``comp_by_cv_then_random``)."""

    def __init__(self, evaluator: ArrayEvaluator):
        super().__init__()
        self.evaluator = evaluator

    def _do(self, problem, pop, n_select, n_parents=1, random_state=None, **kwargs):
        _, CV = self.evaluator.objectives(pop)
        a, b = _contestants(len(pop), n_select * n_parents, random_state)
        coin = random_state.random(a.size) < 0.5
        a_wins = (CV[a] < CV[b]) | ((CV[a] == CV[b]) & coin)
        return np.where(a_wins, a, b).reshape(n_select, n_parents)


class ArrayNSGA2(GeneticAlgorithm):
    """NSGA-II on pymoo's genetic-algorithm loop with the array-based survival, tournament
    and mating, and without per-individual bookkeeping.

    After the initial population a generation makes no pymoo Individual: the population is
    its chromosomes (``pop_X``) and evaluation rows (``pop_rows``); mating reads ``pop_X``,
    the children's matrix goes straight to the evaluator and survival gathers objectives by
    row. ``pop`` makes the Individuals only when read (the first callback, the result), and
    the optimum is set once, when the run ends (pymoo reads it only then). ``memetic``, if
    given, adds its locally improved plan to each generation's children.
    """

    def __init__(self, *, crossover: UniformCrossover, mutation: PlanMutation,
                 eliminate_duplicates: RowHashDuplicateElimination, memetic: MemeticStep | None = None, **kwargs):
        self._pop = None
        self.memetic = memetic
        evaluator = ArrayEvaluator()
        survival = RankAndCrowdingSurvival(evaluator)
        selection = RankCrowdingTournament(survival)
        super().__init__(survival=survival, selection=selection, crossover=crossover, mutation=mutation,
                         eliminate_duplicates=eliminate_duplicates, repair=KeepRepair(), evaluator=evaluator,
                         mating=ArrayMating(selection, crossover, mutation, eliminate_duplicates),
                         advance_after_initial_infill=True, **kwargs)
        self.pop_X = self.off_X = np.empty((0, 0), dtype=np.int32)
        self.pop_rows = self.off_rows = np.empty(0, dtype=np.int64)

    @property
    def pop(self):
        if self._pop is None and self.pop_rows.size:
            self._pop = self.evaluator.individuals(self.pop_X, self.pop_rows)
        return self._pop

    @pop.setter
    def pop(self, pop):
        self._pop = pop

    def next(self):
        if not self.is_initialized:
            self._initialize()
            infills = self._initialize_infill()
            self.off_X = population_matrix(infills)
            self.evaluator.eval(self.problem, infills, algorithm=self, X=self.off_X)
            self.advance(infills=infills)
            return
        # The tournament reads only the population's size.
        self.off_X = self.mating.children(self.problem, self.pop_X, self.pop_X, self.n_offsprings,
                                          random_state=self.random_state)
        if self.memetic is not None:
            improved = self.memetic.propose(self.random_state)
            if improved.shape[0]:  # most generations wait (local_search.MemeticStep)
                improved = improved[self.eliminate_duplicates.keep_mask(improved, self.pop_X, self.off_X)]
                self.off_X = np.concatenate((self.off_X, improved))
        if self.off_X.shape[0] == 0:
            self.termination.force_termination = True
        else:
            self.off_rows = self.evaluator.evaluate(self.problem, self.off_X)
        self.advance()

    def _survive(self, X: np.ndarray, rows: np.ndarray, n_survive: int) -> None:
        F, CV = self.evaluator.F[rows], self.evaluator.CV[rows]
        index, self.survival.rank, self.survival.crowding = self.survival.choose(F, CV, n_survive,
                                                                                 self.random_state)
        self.pop_X, self.pop_rows, self._pop = X[index], rows[index], None

    def _initialize_advance(self, infills=None, **kwargs):
        self._survive(self.off_X, self.evaluator.last_rows, len(infills))

    def _advance(self, infills=None, **kwargs):
        if self.off_X.shape[0] == 0:  # no new plan could be made (a tiny search space): nothing changes
            return
        self._survive(np.concatenate((self.pop_X, self.off_X)), np.concatenate((self.pop_rows, self.off_rows)),
                      self.pop_size)

    def _set_optimum(self, **kwargs):
        pass  # set in _finalize

    def _finalize(self):
        self.opt = self.pop[self.survival.rank == 0]


class HistoryCallback(Callback):
    """Per generation: hypervolume of the archive, best objective values, evaluations;
    forwards each record to ``progress``.

    The hypervolume is measured in the instance's reference box (``core.reference_box``),
    fixed before the search and the same one the run reports its final hypervolume in: the
    curve compares across generations, runs and algorithms, and its last step is the run's
    hypervolume. While no plan is feasible the archive (and the curve) holds the plans of
    least violation. It is computed when the archive changes: moocore takes ~50 us for the
    archive's ~100 points in 3-D, about 1% of a run.
    """

    def __init__(self, problem: PlanProblem, objectives, progress, baselines=None):
        """``baselines``: the baselines' plans the search was seeded with (``baseline_plans``),
        reused for the box instead of built again."""
        from apportion.core.reference_box import reference_box

        super().__init__()
        self.problem = problem
        self.objectives = objectives
        self.progress = progress
        self.records: list[dict] = []
        self.box = reference_box(problem.evaluator.instance, objectives, baselines)
        self._hypervolume = (-1, 0.0)  # (archive version, its hypervolume)

    def notify(self, algorithm):
        archive = self.problem.archive
        best = archive.F.min(axis=0) * self.problem.signs
        if self._hypervolume[0] != archive.version:  # unchanged archive, unchanged hypervolume
            self._hypervolume = (archive.version, self.box.hypervolume(archive.F))
        record = {
            "generation": len(self.records),
            "evaluations": self.problem.evaluations,
            "hypervolume": self._hypervolume[1],
            "front_size": len(archive),
            "feasible": archive.feasible,
        }
        record.update({f"best_{name}": float(v) for name, v in zip(self.objectives, best, strict=True)})
        self.records.append(record)
        if self.progress is not None:
            self.progress(record["generation"], record)

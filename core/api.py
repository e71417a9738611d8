"""One entry point for the CLI and the Airflow operator: optimise, pick a plan, write it out."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from apportion.core import atomic, defaults
from apportion.core.algorithms.base import check_budget, check_genes
from apportion.core.algorithms.registry import ITERATIVE
from apportion.core.defaults import DEFAULT_OBJECTIVES
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator, Plan, Schedule
from apportion.core.metrics import plan_metrics
from apportion.core.model import Instance

_VALIDATION_STREAM = 0x5A11D  # second entropy word of the validation scenarios' generator


# Robust mode's sizes (docs/spec-formats.md, "Limits"): each scenario is a copy of the instance's
# arrays, held together while searching; validation scenarios are built a chunk at a time.
MAX_ROBUST_SCENARIOS = 1_000
MAX_ROBUST_VALIDATION = 100_000
MAX_SCENARIO_CELLS = 1 << 28  # robust_scenarios x tasks x nodes (about 9 bytes each)


@dataclass(frozen=True)
class Settings:
    """What to run: the algorithm, its budget, the objectives and how to pick one plan."""

    algorithm: str = defaults.ALGORITHM
    population: int = defaults.POPULATION
    generations: int = defaults.GENERATIONS
    seed: int = defaults.SEED
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES
    select: str = defaults.SELECT
    # Robust mode (docs/robust.md): score plans over this many sampled scenarios (0: nominal),
    # aggregated by ``robust_statistic``, with lognormal noise of sigma ``noise_sigma`` on task
    # durations and on transfer data; the front is re-scored on ``robust_validation`` fresh
    # scenarios before a plan is picked.
    robust_scenarios: int = 0
    robust_statistic: str = "p95"
    noise_sigma: float = defaults.NOISE_SIGMA
    robust_validation: int = 1000

    def __post_init__(self):
        object.__setattr__(self, "objectives", tuple(self.objectives))
        self._check_search()
        self._check_robust()

    def _check_search(self) -> None:
        from apportion.core.pareto import OBJECTIVES, parse_policy

        for name in ("population", "generations", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(name, f"must be an integer, got {value!r}")
        if self.population < 4:
            raise SpecError("population", f"must be at least 4, got {self.population}")
        if self.generations < 1:
            raise SpecError("generations", f"must be at least 1, got {self.generations}")
        check_budget(self.population, self.generations)
        if self.seed < 0:
            raise SpecError("seed", f"must be >= 0, got {self.seed}")
        if not self.objectives:
            raise SpecError("objectives", "name at least one objective")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise SpecError("objectives", f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise SpecError("objectives", f"repeated objective in {list(self.objectives)}")
        parse_policy(self.select)

    def _check_robust(self) -> None:
        from apportion.core.robust import STATISTICS
        from apportion.core.simulate import MAX_SIGMA

        if isinstance(self.robust_scenarios, bool) or not isinstance(self.robust_scenarios, int):
            raise SpecError("robust_scenarios", f"must be an integer, got {self.robust_scenarios!r}")
        if self.robust_scenarios < 0:
            raise SpecError("robust_scenarios", f"must be >= 0 (0 = nominal), got {self.robust_scenarios}")
        if self.robust_statistic not in STATISTICS:
            raise SpecError("robust_statistic",
                            f"must be one of {list(STATISTICS)}, got {self.robust_statistic!r}")
        if isinstance(self.noise_sigma, bool) or not isinstance(self.noise_sigma, (int, float)) \
                or not math.isfinite(self.noise_sigma) or self.noise_sigma < 0:
            raise SpecError("noise_sigma", f"must be a finite number >= 0, got {self.noise_sigma!r}")
        if self.noise_sigma > MAX_SIGMA:
            raise SpecError("noise_sigma", f"must be <= {MAX_SIGMA:g}, got {self.noise_sigma:g}")
        if self.robust_scenarios > MAX_ROBUST_SCENARIOS:
            raise SpecError("robust_scenarios", f"must be at most {MAX_ROBUST_SCENARIOS:,}, got {self.robust_scenarios:,}")
        if isinstance(self.robust_validation, bool) or not isinstance(self.robust_validation, int) \
                or self.robust_validation < 1:
            raise SpecError("robust_validation", f"must be an integer >= 1, got {self.robust_validation!r}")
        if self.robust_validation > MAX_ROBUST_VALIDATION:
            raise SpecError("robust_validation",
                            f"must be at most {MAX_ROBUST_VALIDATION:,}, got {self.robust_validation:,}")

    def noise(self):
        """The ``Uncertainty`` robust mode samples its scenarios from."""
        from apportion.core.simulate import Uncertainty

        return Uncertainty(duration_sigma=float(self.noise_sigma), transfer_sigma=float(self.noise_sigma))

    def search_evaluator(self, instance: Instance):
        """The evaluator plans are searched and compared with: the plain one, or in robust mode
        a ``ScenarioEvaluator`` over ``robust_scenarios`` scenarios drawn from ``seed``."""
        if not self.robust_scenarios:
            return Evaluator(instance)
        from apportion.core.robust import ScenarioEvaluator

        return ScenarioEvaluator(instance, self.noise(), scenarios=self.robust_scenarios, seed=self.seed,
                                 statistic=self.robust_statistic)

    def validation_seed(self):
        """The stream the validation scenarios come from: fixed by ``seed``, apart from the
        search scenarios' stream."""
        return np.random.default_rng([self.seed, _VALIDATION_STREAM])

    def allocator_options(self) -> dict:
        if self.algorithm in ITERATIVE:
            return dict(population=self.population, generations=self.generations, objectives=self.objectives)
        return {}


@dataclass
class RunResult:
    """A finished allocation: the front, the chosen plan decoded, and how it was found."""

    instance: Instance
    settings: Settings
    front: list[Plan]
    front_stats: np.ndarray
    chosen_index: int
    chosen: Schedule
    metrics: dict[str, float]
    # Of the front, in the instance's reference box (``core.reference_box``), recorded here.
    hypervolume: float
    reference_box: dict
    evaluations: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    # Robust mode: the chosen plan's aggregated statistics over the scenarios (``metrics`` stay
    # the nominal ones), and the same for the plan a nominal run would have chosen (when robust
    # mode searched from it); None otherwise.
    robust_metrics: dict[str, float] | None = None
    nominal_choice_robust_metrics: dict[str, float] | None = None

    @property
    def pareto_size(self) -> int:
        return len(self.front)

    def summary(self) -> dict:
        """The small record `--json` prints and the operator returns: standard JSON (a value
        with no finite number is None)."""
        summary = {
            "algorithm": self.settings.algorithm,
            "seed": self.settings.seed,
            "objectives": list(self.settings.objectives),
            "select": self.settings.select,
            "tasks": self.instance.n_tasks,
            "nodes": self.instance.n_nodes,
            "makespan": self.metrics["makespan"],
            "utilization": self.metrics["utilization"],
            "imbalance": self.metrics["imbalance"],
            "lateness": self.metrics["lateness"],
            "unroutable_edges": int(self.chosen.stat("unroutable")),
            "hypervolume": self.hypervolume,
            "reference_box": self.reference_box,
            "pareto_size": self.pareto_size,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
        }
        if self.robust_metrics is not None:
            summary.update(robust_scenarios=self.settings.robust_scenarios,
                           robust_statistic=self.settings.robust_statistic, noise_sigma=self.settings.noise_sigma,
                           **{f"robust_{name}": value for name, value in self.robust_metrics.items()})
        if self.nominal_choice_robust_metrics is not None:
            summary.update(robust_validation=self.settings.robust_validation,
                           nominal_choice_robust_makespan=self.nominal_choice_robust_metrics["makespan"])
        return standard_json(summary)


def _check_sizes(instance: Instance, settings: Settings) -> None:
    """Refuse, before any work, a search whose arrays would not fit for this instance."""
    if settings.algorithm in ITERATIVE:
        check_genes(settings.population, instance.n_tasks)
    cells = settings.robust_scenarios * instance.n_tasks * instance.n_nodes
    if cells > MAX_SCENARIO_CELLS:
        raise SpecError("robust_scenarios", f"{settings.robust_scenarios:,} scenarios x {instance.n_tasks:,} tasks x "
                        f"{instance.n_nodes:,} nodes exceeds {MAX_SCENARIO_CELLS:,} cells; use fewer scenarios")


def optimize(instance: Instance, settings: Settings = Settings(), *,
             progress: Callable[[int, dict], None] | None = None, initial_plans: Sequence[Plan] = ()) -> RunResult:
    """Run ``settings.algorithm`` on ``instance`` and pick a plan from its front.

    ``initial_plans`` warm-start the iterative algorithms (e.g. the previous run's front).
    Robust mode with noise and an iterative algorithm runs ``_optimize_robust``.
    """
    _check_sizes(instance, settings)
    if settings.robust_scenarios and settings.noise_sigma > 0 and settings.algorithm in ITERATIVE:
        return _optimize_robust(instance, settings, progress=progress, initial_plans=initial_plans)
    from apportion.core.algorithms import get_allocator
    from apportion.core.pareto import non_dominated, objective_matrix, select
    from apportion.core.reference_box import reference_box
    from apportion.core.robust import robust_metrics

    options = settings.allocator_options()
    if initial_plans and settings.algorithm in ITERATIVE:
        options["initial_plans"] = tuple(initial_plans)
    allocator = get_allocator(settings.algorithm, **options)
    evaluator = settings.search_evaluator(instance)
    started = time.perf_counter()
    result = allocator.allocate(evaluator, seed=settings.seed, progress=progress)
    seconds = time.perf_counter() - started

    F = objective_matrix(result.stats, settings.objectives)
    keep = np.sort(non_dominated(F))
    front = [result.plans[i] for i in keep]
    front_stats = result.stats[keep]
    chosen_index = int(select(front_stats, settings.objectives, settings.select))
    chosen = evaluator.schedule(front[chosen_index])

    box = reference_box(instance, settings.objectives, result.baselines)
    hv = box.hypervolume(objective_matrix(front_stats, settings.objectives))
    return RunResult(
        instance=instance, settings=settings, front=front, front_stats=front_stats, chosen_index=chosen_index,
        chosen=chosen, metrics=plan_metrics(instance, chosen), hypervolume=hv, reference_box=box.record(),
        evaluations=result.evaluations, seconds=seconds, history=result.history,
        robust_metrics=robust_metrics(front_stats[chosen_index]) if settings.robust_scenarios else None,
    )


def _optimize_robust(instance: Instance, settings: Settings, *, progress, initial_plans) -> RunResult:
    """Robust mode: make the plan a nominal run would choose hold up under noise.

    1. A nominal run (1/K of the robust search's cost) gives a front and its choice, the anchor.
    2. The robust search (K scenarios) starts from that front and keeps only plans that weakly
       dominate the anchor's robust objectives (as constraints), so its whole budget goes to
       the region where a plan beats the anchor in every objective under noise.
    3. Both fronts are re-scored on ``robust_validation`` fresh scenarios (K scenarios flatter
       the plans fitted to them); the front is the union's non-dominated set there, equal
       objective rows kept once.
    4. The policy picks among the front's plans that weakly dominate the anchor there (the
       anchor itself, or a plan that dominates it, is always among them); ``sla:`` applies to
       the whole front, on the robust makespan. Deadlines stay constraints: the front holds
       the plans of least (p95) lateness, and when the anchor is later than they are, all of
       them beat it.

    Picking on the robust front alone lands the chosen plan at another trade-off than the
    nominal choice from run to run, which moves its tail by more than robustness does (docs/robust.md).
    """
    from dataclasses import replace

    from apportion.core.algorithms import get_allocator
    from apportion.core.algorithms.pymoo_adapters import constraint_columns
    from apportion.core.pareto import non_dominated, objective_matrix, parse_policy, select
    from apportion.core.reference_box import reference_box
    from apportion.core.robust import robust_metrics, validation_stats

    started = time.perf_counter()
    nominal = optimize(instance, replace(settings, robust_scenarios=0), initial_plans=initial_plans)
    anchor_plan = nominal.front[nominal.chosen_index]
    search = settings.search_evaluator(instance)
    bound = objective_matrix(search.stats(anchor_plan.assignment, anchor_plan.order), settings.objectives)[0]
    allocator = get_allocator(settings.algorithm, **settings.allocator_options(),
                              initial_plans=tuple(nominal.front), objective_bounds=bound)
    searched = allocator.allocate(search, seed=settings.seed, progress=progress)

    plans = list(searched.plans) + list(nominal.front)
    plan_stats = validation_stats(instance, settings.noise(), np.array([p.assignment for p in plans]),
                                  np.array([p.order for p in plans]), scenarios=settings.robust_validation,
                                  seed=settings.validation_seed(), statistic=settings.robust_statistic)
    anchor = len(searched.plans) + nominal.chosen_index  # its row in plans
    F = objective_matrix(plan_stats, settings.objectives)
    # Deadlines (and links) stay constraints, as in the search: the front holds the plans of
    # least violation on the validation scenarios (none, when some plan meets every deadline),
    # a plan found by both searches once.
    violation = np.maximum(plan_stats[:, constraint_columns(instance)], 0.0).sum(axis=1)
    pool = np.flatnonzero(violation <= violation.min())
    keep = pool[non_dominated(F[pool], distinct=True)]
    front, front_stats = [plans[i] for i in keep], plan_stats[keep]
    if parse_policy(settings.select)[0] == "sla":
        chosen_index = int(select(front_stats, settings.objectives, settings.select))
    else:
        # Plans that beat the anchor as NSGA-II's constrained domination has it: all of the
        # front when the anchor violates more, else those no worse in any objective.
        beats_anchor = np.flatnonzero(np.all(F[keep] <= F[anchor], axis=1) | (violation[anchor] > violation.min()))
        chosen_index = int(beats_anchor[select(front_stats[beats_anchor], settings.objectives, settings.select)])
    chosen = Evaluator(instance).schedule(front[chosen_index])
    box = reference_box(instance, settings.objectives)
    hv = box.hypervolume(objective_matrix(front_stats, settings.objectives))
    return RunResult(
        instance=instance, settings=settings, front=front, front_stats=front_stats, chosen_index=chosen_index,
        chosen=chosen, metrics=plan_metrics(instance, chosen), hypervolume=hv, reference_box=box.record(),
        evaluations=nominal.evaluations + searched.evaluations + len(plans),
        seconds=time.perf_counter() - started, history=searched.history,
        robust_metrics=robust_metrics(front_stats[chosen_index]),
        nominal_choice_robust_metrics=robust_metrics(plan_stats[anchor]),
    )


def standard_json(value):
    """``value`` with every float that standard JSON cannot hold (inf, nan) as None (null):
    the throughput of a plan that takes no time, the times of a plan that cannot be routed
    (``Instance.build`` refuses overflowing numbers and most unroutable workloads)."""
    if isinstance(value, dict):
        return {k: standard_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [standard_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def plan_record(result: RunResult) -> dict:
    """plan.json: the chosen plan task by task, with its metrics and how it was chosen; standard
        JSON (``standard_json``)."""
    inst, sched = result.instance, result.chosen
    record = {
        "settings": asdict(result.settings),
        "workload": inst.workload.name,
        "cluster": inst.cluster.name,
        "metrics": result.metrics,
        "order": [inst.task_ids[t] for t in sched.plan.order],
        "tasks": [
            {"task": inst.task_ids[t], "node": inst.node_ids[sched.plan.assignment[t]],
             "start": float(sched.start[t]), "end": float(sched.end[t])}
            for t in range(inst.n_tasks)
        ],
    }
    if result.robust_metrics is not None:
        record["robust_metrics"] = result.robust_metrics
    if result.nominal_choice_robust_metrics is not None:
        record["nominal_choice_robust_metrics"] = result.nominal_choice_robust_metrics
    return standard_json(record)


def write_outputs(result: RunResult, out_dir: str | Path) -> dict[str, Path]:
    """Write plan.json, pareto.csv and schedule.csv into ``out_dir``, each whole or not at all
    (``core.atomic``); return their paths."""
    out = Path(out_dir)
    paths = {"plan": out / "plan.json", "pareto": out / "pareto.csv", "schedule": out / "schedule.csv"}
    atomic.write_json(paths["plan"], plan_record(result))
    atomic.write_text(paths["pareto"], _csv(_pareto_rows(result)))
    atomic.write_text(paths["schedule"], _csv(_schedule_rows(result)))
    return paths


def _csv(rows) -> str:
    from apportion.core.outputs import csv_text

    return csv_text(rows)


def _pareto_rows(result: RunResult):
    """pareto.csv: one row per plan of the front, the chosen one marked."""
    stat_names = [s for s in STAT_INDEX if s != "unroutable"]
    yield ["plan", "chosen", *stat_names]
    for i, row in enumerate(result.front_stats):
        yield [i, int(i == result.chosen_index), *(repr(float(row[STAT_INDEX[s]])) for s in stat_names)]


def _schedule_rows(result: RunResult):
    """schedule.csv: the chosen plan in dispatch order."""
    inst, sched = result.instance, result.chosen
    kinds = {t.id: t for t in inst.workload.tasks}
    yield ["task", "kind", "request", "node", "node_kind", "start", "end", "duration"]
    for t in sched.plan.order:
        j = sched.plan.assignment[t]
        task = kinds[inst.task_ids[t]]
        yield [task.id, task.kind, inst.request_ids[inst.request_of[t]], inst.node_ids[j],
               inst.cluster.nodes[j].kind, repr(float(sched.start[t])), repr(float(sched.end[t])),
               repr(float(sched.end[t] - sched.start[t]))]

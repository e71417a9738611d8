"""Robust objectives: score plans over a fixed set of K sampled scenarios.

The evaluator scores a plan as if everything went to plan. Here each plan is scored on K
perturbed copies of the instance (task work scaled by lognormal factors with mean 1, transfer
data scaled per edge, congested node pairs slowed down), the same K for every plan of a run
(common random numbers: two plans differ only by what they are, never by the luck of their
draws), and each statistic is aggregated over the K scenarios: the mean, or the 95th percentile
for the time-like columns. ``ScenarioEvaluator`` is a drop-in for ``core.evaluate.Evaluator``,
so NSGA-II searches the robust objectives unchanged. Node failures are left to the simulator
(``core.simulate``): when a node fails depends on what it runs and when, so they are not a
perturbation of the instance. ``docs/robust.md`` has the details and the benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from apportion.core._jit import jit
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator, Plan, Schedule
from apportion.core.model import Instance
from apportion.core.simulate import Uncertainty, lognormal_factor

STATISTICS = ("mean", "p95")
# Columns taken at the 95th percentile over the scenarios when statistic="p95"; every other
# column is the mean (utilisation, imbalance, energy, cost: averages are what they cost).
TIME_COLUMNS = ("makespan", "mean_response", "lateness")
_TIME_INDEX = np.array([STAT_INDEX[name] for name in TIME_COLUMNS], dtype=np.intp)


@jit
def _unit_mean_lognormal_kernel(z, sigma, out):
    for i in range(z.size):
        out[i] = lognormal_factor(z[i], sigma[i])


def unit_mean_lognormal(z: np.ndarray, sigma: np.ndarray | float) -> np.ndarray:
    """exp(sigma z - sigma^2 / 2): mean 1 for standard normal z; exactly 1.0 where sigma is 0.

    The simulator's ``lognormal_factor``, one value at a time: NumPy's exp of an array takes its
    own AVX-512 code where the CPU has it, whose last bits differ, and a seed then gave another
    robust plan on another machine."""
    z = np.ascontiguousarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError(f"z must be 1-D, got shape {z.shape}")
    sigma = np.ascontiguousarray(np.broadcast_to(np.asarray(sigma, dtype=np.float64), z.shape))
    out = np.empty_like(z)
    _unit_mean_lognormal_kernel(z, sigma, out)
    return out


def _sigma_per_task(instance: Instance, duration_sigma) -> np.ndarray:
    """(n,) the duration sigma of each task's kind (kinds a mapping does not name get 0)."""
    if isinstance(duration_sigma, Mapping):
        by_kind = np.array([float(duration_sigma.get(k, 0.0)) for k in instance.task_kinds])
        return by_kind[instance.kind_of]
    return np.full(instance.n_tasks, float(duration_sigma))


def _child_order(instance: Instance) -> np.ndarray:
    """For each edge in child CSR order, its index in parent CSR order (so per-edge values
    drawn for ``parent_data`` map onto ``child_data``)."""
    child = np.repeat(np.arange(instance.n_tasks), np.diff(instance.parent_ptr))
    return np.lexsort((child, instance.parent_idx))


def perturbed_instance(instance: Instance, work_factor: np.ndarray, data_factor: np.ndarray,
                       link_factor: np.ndarray) -> Instance:
    """``instance`` with work, edge data and link times scaled.

    :param work_factor: (n,) per task; durations are recomputed as ``Instance.build`` computes them
        (``overhead + work / rate``, the bare division with no overhead).
    :param data_factor: (E,) per edge, in parent CSR order (``instance.parent_data``).
    :param link_factor: (m, m) per node pair, on both latency and 1/bandwidth.
    """
    work = instance.work * work_factor
    runtime = work[:, None] / instance.rate.T[instance.kind_of]
    if instance.overhead.any():
        runtime += instance.overhead
    duration = np.where(instance.eligible, runtime, np.inf)
    parent_data = instance.parent_data * data_factor
    return dataclasses.replace(
        instance,
        work=work,
        duration=duration,
        parent_data=parent_data,
        child_data=parent_data[_child_order(instance)],
        latency=instance.latency * link_factor,
        inv_bandwidth=instance.inv_bandwidth * link_factor,
    )


def scenario_instances(instance: Instance, uncertainty: Uncertainty, scenarios: int,
                       seed: int | np.random.Generator = 0) -> list[Instance]:
    """K perturbed copies of ``instance`` under ``uncertainty``'s noise (its failure fields are
    not used). Per scenario, in this order from ``np.random.default_rng(seed)``:

    * n standard normals: task t's work times ``exp(s Z - s^2/2)``, s the sigma of its kind
      (``duration_sigma``);
    * E standard normals: edge e's data times the same with ``transfer_sigma`` (latency is not
      scaled per edge, unlike the simulator's multiplier on the whole transfer);
    * one uniform per node pair a < b: below ``link_slowdown_probability``, the pair's latency
      and 1/bandwidth are multiplied by ``link_slowdown_factor`` (as the simulator does).

    Every draw is made whatever the sigmas, so the same seed gives the same normals for any
    noise level: scenarios at a larger sigma are the same scenarios, stretched.
    """
    if isinstance(scenarios, bool) or not isinstance(scenarios, (int, np.integer)) or scenarios < 1:
        raise SpecError("scenarios", f"must be an integer >= 1, got {scenarios!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sigma = _sigma_per_task(instance, uncertainty.duration_sigma)
    transfer_sigma = float(uncertainty.transfer_sigma)
    slow_p = float(uncertainty.link_slowdown_probability)
    slow_f = float(uncertainty.link_slowdown_factor)
    m = instance.n_nodes
    upper = np.triu_indices(m, k=1)
    out = []
    for _ in range(int(scenarios)):
        work_factor = unit_mean_lognormal(rng.standard_normal(instance.n_tasks), sigma)
        data_factor = unit_mean_lognormal(rng.standard_normal(instance.n_edges), transfer_sigma)
        congested = rng.random(upper[0].size) < slow_p
        link_factor = np.ones((m, m))
        link_factor[upper] = np.where(congested, slow_f, 1.0)
        link_factor.T[upper] = link_factor[upper]
        out.append(perturbed_instance(instance, work_factor, data_factor, link_factor))
    return out


def aggregate(per_scenario: np.ndarray, statistic: str = "p95") -> np.ndarray:
    """(K, P, len(STATS)) statistics per scenario -> (P, len(STATS)) robust statistics.

    ``mean``: every column is the mean over the scenarios. ``p95``: the ``TIME_COLUMNS`` are the
    95th percentile (NumPy's linear interpolation), the rest the mean. Where all K scenarios
    agree (no noise, or the ``unroutable`` count, which noise never changes) the common value
    is returned exactly, infinite ones included.
    """
    if statistic not in STATISTICS:
        raise SpecError("robust_statistic", f"must be one of {list(STATISTICS)}, got {statistic!r}")
    per_scenario = np.asarray(per_scenario, dtype=float)
    with np.errstate(invalid="ignore"):  # inf - inf in the mean or the interpolation
        out = per_scenario.mean(axis=0)
        if statistic == "p95":
            out[:, _TIME_INDEX] = np.percentile(per_scenario[:, :, _TIME_INDEX], 95, axis=0)
    low, high = per_scenario.min(axis=0), per_scenario.max(axis=0)
    return np.where(low == high, low, out)


class ScenarioEvaluator:
    """A drop-in for ``Evaluator`` whose ``stats`` are robust statistics over K scenarios.

    :param instance: the nominal instance (``self.instance``; algorithms build plans on it).
    :param uncertainty: the noise the scenarios are drawn from (``scenario_instances``).
    :param scenarios: K, drawn once here and shared by every plan this evaluator scores.
    :param seed: the scenarios depend on it only; the same seed, the same scenarios.
    :param statistic: ``mean`` or ``p95`` (``aggregate``).
    :param parallel: spread each scenario's batch over Numba threads.

    ``stats`` costs K plain evaluations per plan; ``evaluations`` counts plans, as the plain
    evaluator's. ``check`` and ``schedule`` are the nominal evaluator's: a schedule is the plan
    as decoded without noise, which is what plan.json and schedule.csv show.
    """

    def __init__(self, instance: Instance, uncertainty: Uncertainty, *, scenarios: int = 16,
                 seed: int | np.random.Generator = 0, statistic: str = "p95", parallel: bool = False):
        if statistic not in STATISTICS:
            raise SpecError("statistic", f"must be one of {list(STATISTICS)}, got {statistic!r}")
        self.instance = instance
        self.uncertainty = uncertainty
        self.statistic = statistic
        self.parallel = parallel
        self.nominal = Evaluator(instance, parallel=parallel)
        self.scenarios = scenario_instances(instance, uncertainty, scenarios, seed)
        self._evaluators = [Evaluator(s, parallel=parallel) for s in self.scenarios]
        self.evaluations = 0

    def scenario_stats(self, assignment: np.ndarray, order: np.ndarray, *, check: bool = True) -> np.ndarray:
        """(K, P, len(STATS)): the plain statistics of each plan on each scenario."""
        if check:
            assign = np.atleast_2d(np.asarray(assignment, dtype=np.int32))
            self.nominal.check(assign, np.broadcast_to(np.asarray(order, dtype=np.int32), assign.shape))
        return np.stack([e.stats(assignment, order, check=False) for e in self._evaluators])

    def stats(self, assignment: np.ndarray, order: np.ndarray, *, check: bool = True) -> np.ndarray:
        """Robust statistics (columns ``STATS``) for a batch of plans, as ``Evaluator.stats``."""
        out = aggregate(self.scenario_stats(assignment, order, check=check), self.statistic)
        self.evaluations += out.shape[0]
        return out

    def check(self, assign: np.ndarray, order: np.ndarray) -> None:
        self.nominal.check(assign, order)

    def schedule(self, plan: Plan) -> Schedule:
        """The plan decoded on the nominal instance (no noise)."""
        return self.nominal.schedule(plan)


def validation_stats(instance: Instance, uncertainty: Uncertainty, assignment: np.ndarray, order: np.ndarray, *,
                     scenarios: int, seed: np.random.Generator, statistic: str = "p95",
                     chunk: int = 64) -> np.ndarray:
    """Robust statistics of a batch of plans over ``scenarios`` scenarios drawn from ``seed``,
    as ``ScenarioEvaluator.stats`` gives over the same scenarios, built ``chunk`` at a time so
    that a thousand scenarios of a large instance never sit in memory together.

    Plans are searched on a few scenarios and re-scored here on many fresh ones before one is
    picked: a front found on K scenarios is partly fitted to their luck.
    """
    per_scenario = []
    for first in range(0, scenarios, chunk):
        for scenario in scenario_instances(instance, uncertainty, min(chunk, scenarios - first), seed):
            per_scenario.append(Evaluator(scenario).stats(assignment, order, check=False))
    return aggregate(np.stack(per_scenario), statistic)


# The columns reported as a plan's robust metrics (the objectives and lateness).
REPORTED = ("makespan", "utilization", "imbalance", "mean_response", "energy", "cost", "lateness")


def robust_metrics(stats_row: np.ndarray) -> dict[str, float]:
    """The ``REPORTED`` columns of one robust statistics row, by name."""
    return {name: float(stats_row[STAT_INDEX[name]]) for name in REPORTED}

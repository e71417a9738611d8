"""The hypervolume's reference box of one instance, fixed before any search (docs/metrics.md).

A hypervolume means something across runs only when every front of an instance is measured in
the same box. The box here depends on the instance and the objectives alone, not on the
algorithm, its budget, its seed or the front it found:

* ideal: a lower bound of each objective that no plan can beat (``_lower_bounds``): the
  makespan and response times of the critical paths on each task's fastest node (and the
  total work over the cluster's total speed), the energy of every task on its most frugal
  node, utilisation 1, imbalance 0, no migrations;
* nadir: the worst value of each objective among the deterministic baseline heuristics
  (HEFT, greedy, round-robin, ...; not ``random``, whose plan depends on the seed).

The hypervolume normalises each objective to [0, 1] by that box and measures from the
reference point ``pareto.HV_REFERENCE`` (1.1): a plan worse than every baseline in one
objective still counts up to 10% beyond the nadir, and beyond that contributes nothing.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from apportion.core._jit import jit
from apportion.core.evaluate import Evaluator, Plan
from apportion.core.model import ROWS_AT_ONCE, Instance


@dataclass(frozen=True, eq=False)
class ReferenceBox:
    """Ideal and nadir of each objective, in minimisation form (``pareto.objective_matrix``)."""

    objectives: tuple[str, ...]
    ideal: np.ndarray
    nadir: np.ndarray

    def hypervolume(self, F: np.ndarray) -> float:
        """Hypervolume of the objective rows F (minimisation form) in this box."""
        from apportion.core.pareto import hypervolume

        return hypervolume(F, self.ideal, self.nadir)

    def record(self) -> dict:
        """The box in natural units (utilisation as a share, not negated), per objective, with
        the reference point and a short id that is equal for equal boxes: what a run records."""
        from apportion.core.pareto import HV_REFERENCE, objective_columns

        _, signs = objective_columns(self.objectives)
        ideal, nadir = self.ideal * signs, self.nadir * signs
        box = {name: {"ideal": float(i), "nadir": float(n)}
               for name, i, n in zip(self.objectives, ideal, nadir, strict=True)}
        text = json.dumps({"box": box, "reference": HV_REFERENCE}, sort_keys=True)
        return {"id": hashlib.sha256(text.encode()).hexdigest()[:12], "reference_point": HV_REFERENCE,
                "objectives": box}


@jit
def _earliest_finish(order, parent_ptr, parent_idx, release, duration, available_from, pinned_node, pinned_end):
    """Per task, the earliest it could finish with every task on its fastest eligible node,
    no transfer times and no queueing: a lower bound of its end in any plan."""
    n, m = duration.shape
    finish = np.empty(n)
    for t in order:
        if pinned_node[t] >= 0:
            finish[t] = pinned_end[t]
            continue
        ready = release[t]
        for e in range(parent_ptr[t], parent_ptr[t + 1]):
            ready = max(ready, finish[parent_idx[e]])
        best = np.inf
        for j in range(m):
            best = min(best, max(ready, available_from[j]) + duration[t, j])
        finish[t] = best
    return finish


def _lower_bounds(instance: Instance) -> dict[str, float]:
    """A value of each STATS column no plan of ``instance`` can beat (for utilisation, which
    is maximised, one no plan can exceed)."""
    inst = instance
    finish = _earliest_finish(inst.topo_order, inst.parent_ptr, inst.parent_idx, inst.release, inst.duration,
                              inst.available_from, inst.pinned_node, inst.pinned_end)
    pinned = inst.pinned_node >= 0
    # Seconds of node time each task takes at least, and the energy of those seconds.
    # (A block of rows at a time: no tasks x nodes temporaries.)
    least_joules = np.empty(inst.n_tasks)
    for lo in range(0, inst.n_tasks, ROWS_AT_ONCE):
        duration = inst.duration[lo:lo + ROWS_AT_ONCE]
        eligible = np.isfinite(duration)
        least_joules[lo:lo + ROWS_AT_ONCE] = np.where(eligible, np.where(eligible, duration, 0.0) * inst.busy_power,
                                                      np.inf).min(axis=1)
    seconds = np.where(pinned, inst.pinned_end - inst.pinned_start, inst.duration.min(axis=1))
    joules = np.where(pinned, seconds * inst.busy_power[np.maximum(inst.pinned_node, 0)], least_joules)
    # Each node does at most its best rate's work per second: W <= makespan x sum of best rates.
    kinds = np.unique(inst.kind_of)
    work_bound = inst.work.sum() / inst.rate[:, kinds].max(axis=1).sum()
    makespan = max(float(finish.max(initial=0.0)), float(work_bound), float(seconds.sum() / inst.n_nodes))
    request_end = np.zeros(len(inst.request_ids))
    np.maximum.at(request_end, inst.request_of, finish)
    weights = inst.request_priority
    response = float(weights @ (request_end - inst.request_release) / weights.sum()) if weights.sum() > 0 else 0.0
    return {"makespan": makespan, "utilization": 1.0, "imbalance": 0.0, "mean_response": response,
            "energy": float(joules.sum()), "cost": makespan * float(inst.cost_rate.min()), "moved": 0.0}


def _baseline_stats(instance: Instance, built: Mapping[str, Plan]) -> np.ndarray:
    """STATS rows of the deterministic baselines' plans on ``instance``; those in ``built``
    (by name, as ``baseline_plans`` returns them) are not built again."""
    from apportion.core.algorithms.baselines import BASELINES

    plans = [built[cls.name] if cls.name in built else cls().build(instance)
             for cls in BASELINES if cls.name != "random"]
    evaluator = Evaluator(instance)
    return np.vstack([evaluator.stats(p.assignment, p.order) for p in plans])


# Boxes already computed, per instance (dropped with it): the search's convergence curve and
# the reported hypervolume of one run share one computation of the baselines.
_BOXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def reference_box(instance: Instance, objectives, baselines: Mapping[str, Plan] | None = None) -> ReferenceBox:
    """The reference box of ``instance`` for ``objectives`` (module docstring); the same
    numbers every time for the same instance. ``baselines``: the baselines' plans already
    built for this instance (``baseline_plans``), reused rather than built again."""
    from apportion.core.pareto import OBJECTIVES, check_objectives, objective_columns

    names = check_objectives(objectives)
    cached = _BOXES.setdefault(instance, {})
    if names not in cached:
        columns, signs = objective_columns(names)
        bounds = _lower_bounds(instance)
        ideal = np.array([bounds[OBJECTIVES[name][0]] for name in names]) * signs
        base_F = _baseline_stats(instance, baselines or {})[:, columns] * signs
        finite = np.where(np.isfinite(base_F), base_F, -np.inf).max(axis=0)
        nadir = np.where(np.isfinite(finite), np.maximum(finite, ideal), ideal)
        cached[names] = ReferenceBox(objectives=names, ideal=ideal, nadir=nadir)
    return cached[names]

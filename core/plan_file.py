"""Reading a ``plan.json`` back: the file ``apportion optimize`` and ``replan`` write (and the
Airflow operators publish), checked against the workload and cluster it is meant for.

One reader for every place that reads a plan, so the checks are the same everywhere: every
task of the workload once with a known node and finite times, ``order`` naming every task
once, parents first, and every node eligible for its task. Anything else is one ``SpecError``
naming the entry (``plan.tasks['x'].node``) and the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from apportion.core.errors import SpecError, excerpt

_NOT_A_PLAN = "not a plan: expected the keys 'tasks' and 'order' of a plan.json written by 'apportion optimize'"


def read_plan(path: str | Path, instance) -> tuple:
    """The plan in ``path`` for ``instance`` (an ``apportion.core.model.Instance``):
    ``(Plan, start, end)``, the start and end per task as recorded there (index = task index)."""
    from apportion.core.evaluate import Plan
    from apportion.core.io import read_document

    doc = read_document(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), list) or not isinstance(doc.get("order"), list):
        raise SpecError(str(path), _NOT_A_PLAN)
    assignment, start, end = _read_tasks(doc["tasks"], instance)
    plan = Plan(assignment, _read_order(doc["order"], instance))
    _check_feasible(plan, instance)
    return plan, start, end


def _read_tasks(entries: list, instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node index, start and end per task from the ``tasks`` entries; every task exactly once."""
    task_index = {t: i for i, t in enumerate(instance.task_ids)}
    node_index = {nd: j for j, nd in enumerate(instance.node_ids)}
    n = instance.n_tasks
    assignment = np.full(n, -1, dtype=np.int32)
    start, end = np.full(n, math.nan), np.full(n, math.nan)
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str):
            raise SpecError(f"plan.tasks[{k}]", "must be a mapping with 'task', 'node', 'start' and 'end'")
        name = entry["task"]
        where = f"plan.tasks[{excerpt(name)}]"
        t = task_index.get(name)
        if t is None:
            raise SpecError(where, f"unknown task: the workload {excerpt(instance.workload.name)} has no task "
                                   f"{excerpt(name)}")
        if assignment[t] >= 0:
            raise SpecError(where, "listed twice")
        node = entry.get("node")
        if not isinstance(node, str) or node not in node_index:
            raise SpecError(f"{where}.node", f"unknown node {excerpt(node)}; the cluster has "
                                             f"{excerpt(list(instance.node_ids))}")
        assignment[t] = node_index[node]
        start[t] = _time(entry.get("start"), f"{where}.start")
        end[t] = _time(entry.get("end"), f"{where}.end")
        if end[t] < start[t]:
            raise SpecError(f"{where}.end", f"before its start ({end[t]:g} < {start[t]:g})")
    missing = [instance.task_ids[t] for t in np.flatnonzero(assignment < 0)]
    if missing:
        raise SpecError("plan.tasks", f"no entry for {len(missing)} task(s) of the workload: {missing[:5]}")
    return assignment, start, end


def _time(value: object, where: str) -> float:
    """A start or end time: a finite number >= 0 (an integer too large for a float is not)."""
    try:
        time = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        time = math.inf
    if not math.isfinite(time) or time < 0:
        raise SpecError(where, f"must be a finite time >= 0, got {excerpt(value)}")
    return time


def _read_order(names: list, instance) -> np.ndarray:
    """Task indices in dispatch order; the evaluator checks that it is a topological order."""
    task_index = {t: i for i, t in enumerate(instance.task_ids)}
    order = []
    for k, name in enumerate(names):
        if not isinstance(name, str) or name not in task_index:
            raise SpecError(f"plan.order[{k}]", f"unknown task {excerpt(name)}")
        order.append(task_index[name])
    return np.asarray(order, dtype=np.int32)


def _check_feasible(plan, instance) -> None:
    """Every task once in ``order``, parents first, every node eligible: the evaluator's checks."""
    from apportion.core.evaluate import Evaluator

    try:
        Evaluator(instance).check(plan.assignment[None, :], plan.order[None, :])
    except ValueError as error:
        raise SpecError("plan", str(error).removeprefix("plan 0: ")) from None

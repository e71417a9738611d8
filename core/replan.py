"""Re-planning: a plan in progress meets a change (a node fails or joins, urgent requests
arrive); plan what is not finished, keep what ran or runs where it is, start from the old front.

``residual_instance`` states the problem at time ``now``: tasks that finished or are running
are pinned (node and times kept), every other task remembers the node the old plan gave it
(the ``migrations`` objective counts moves), nodes take new work from ``now`` on, a failed
node takes none (the outputs of tasks that finished on it are assumed kept), a repaired node
returns after its repair time, a joining node brings its links. A task running on a node that
fails at ``now`` is lost and planned again. ``replan`` optimises that instance warm-started
from the old plans.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan
from apportion.core.model import Cluster, Instance, Link, Node, Workload


@dataclass(frozen=True)
class NodeFailure:
    """``node`` fails at ``now``; back after ``repair`` seconds, or never (``None``)."""

    node: str
    repair: float | None = None


@dataclass(frozen=True)
class NodeJoin:
    """``node`` joins at ``now`` (or its own ``available_from`` if later), with its ``links``."""

    node: Node
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class UrgentRequests:
    """New tasks, edges and requests; a release before ``now`` counts as ``now``. Edges may
    come from existing tasks (their outputs feed the new work)."""

    workload: Workload


Change = NodeFailure | NodeJoin | UrgentRequests


def _progress(instance: Instance, plan: Plan, start, end) -> tuple[np.ndarray, np.ndarray]:
    """Start and end per task: the given (realised) times, else the plan's decoded schedule."""
    if start is None or end is None:
        schedule = Evaluator(instance).schedule(plan)
        start, end = schedule.start, schedule.end
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    if start.shape != (instance.n_tasks,) or end.shape != (instance.n_tasks,):
        raise SpecError("progress", f"start and end need one time per task ({instance.n_tasks})")
    return start, end


def residual_instance(instance: Instance, plan: Plan, now: float, changes: Sequence[Change] = (), *,
                      start=None, end=None) -> Instance:
    """The problem left at time ``now`` after ``changes`` (see the module docstring)."""
    if not np.isfinite(now) or now < 0:
        raise SpecError("now", f"must be a finite time >= 0, got {now!r}")
    start, end = _progress(instance, plan, start, end)
    node_ids = instance.node_ids
    failures = {c.node: c for c in changes if isinstance(c, NodeFailure)}
    for name in failures:
        if name not in node_ids:
            raise SpecError("changes.node", f"unknown node {name!r}")

    tasks = []
    for t, task in enumerate(instance.workload.tasks):
        node = node_ids[plan.assignment[t]]
        lost = node in failures and start[t] < now < end[t]
        keep = start[t] < now and not lost
        tasks.append(replace(
            task,
            pinned_node=node if keep else None,
            pinned_start=float(start[t]) if keep else None,
            pinned_end=float(end[t]) if keep else None,
            # A task whose node failed has to move: that is no migration.
            previous_node=None if node in failures else node,
        ))

    nodes = [_node_at(nd, failures.get(nd.id), now) for nd in instance.cluster.nodes]
    links = list(instance.cluster.links)
    for change in changes:
        if isinstance(change, NodeJoin):
            nodes.append(replace(change.node, available_from=max(now, change.node.available_from)))
            links.extend(change.links)

    edges, requests = list(instance.workload.edges), list(instance.workload.requests)
    for change in changes:
        if isinstance(change, UrgentRequests):
            tasks.extend(change.workload.tasks)
            edges.extend(change.workload.edges)
            requests.extend(replace(r, release=max(now, r.release)) for r in change.workload.requests)
    workload = replace(instance.workload, tasks=tuple(tasks), edges=tuple(edges), requests=tuple(requests))
    cluster: Cluster = replace(instance.cluster, nodes=tuple(nodes), links=tuple(links))
    return Instance.build(workload, cluster)


def _node_at(node, failure: NodeFailure | None, now: float):
    """``node`` as the residual problem sees it at ``now``: free from then on, failed for good,
    or back after its repair."""
    if failure is None:
        return replace(node, available_from=max(now, node.available_from))
    if failure.repair is None:
        return replace(node, available_from=max(now, node.available_from), failed=True)
    if not np.isfinite(failure.repair) or failure.repair < 0:
        raise SpecError("changes.repair", f"must be a finite time >= 0 or None, got {failure.repair!r}")
    return replace(node, available_from=max(now + failure.repair, node.available_from))


def carry_over(plan: Plan, old: Instance, new: Instance, fallback: Plan) -> Plan:
    """``plan`` (made for ``old``) as a plan for ``new`` (see ``carry_over_all``)."""
    return carry_over_all([plan], old, new, fallback)[0]


def carry_over_all(plans: Sequence[Plan], old: Instance, new: Instance, fallback: Plan) -> list[Plan]:
    """``plans`` (made for ``old``) as plans for ``new``: the same node for every task that kept
    an eligible one, ``fallback``'s node otherwise (new tasks, failed nodes); old tasks in their
    old order, then new tasks in ``fallback``'s order, made topological once per distinct order."""
    new_index = {t: i for i, t in enumerate(new.task_ids)}
    task_map = np.array([new_index[t] for t in old.task_ids], dtype=np.int64)
    node_index = {nd: j for j, nd in enumerate(new.node_ids)}
    node_map = np.array([node_index[nd] for nd in old.node_ids], dtype=np.int32)
    orders: dict[bytes, np.ndarray] = {}
    carried = []
    for plan in plans:
        nodes = node_map[plan.assignment]
        keep = new.eligible[task_map, nodes]
        assignment = fallback.assignment.copy()
        assignment[task_map[keep]] = nodes[keep]
        key = plan.order.tobytes()
        if key not in orders:
            old_order = task_map[plan.order]
            rest = fallback.order[~np.isin(fallback.order, old_order)]
            orders[key] = _topological(new, np.concatenate([old_order, rest]))
        carried.append(Plan(assignment, orders[key]))
    return carried


def _topological(instance: Instance, wanted: np.ndarray) -> np.ndarray:
    """A topological order as close to ``wanted`` as the edges allow (Kahn's algorithm taking
    the ready task that comes first in ``wanted``)."""
    import heapq

    rank = np.empty(instance.n_tasks, dtype=np.int64)
    rank[wanted] = np.arange(len(wanted))
    indegree = np.diff(instance.parent_ptr).copy()
    ready = [(rank[t], t) for t in range(instance.n_tasks) if indegree[t] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, t = heapq.heappop(ready)
        order.append(t)
        for c in instance.child_idx[instance.child_ptr[t]:instance.child_ptr[t + 1]]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, (rank[c], int(c)))
    return np.asarray(order, dtype=np.int32)


def replan(instance: Instance, plan: Plan, now: float, changes: Sequence[Change] = (), *, settings=None,
           previous_plans: Sequence[Plan] = (), start=None, end=None,
           progress: Callable[[int, dict], None] | None = None):
    """Plan the work left at ``now`` after ``changes``; return ``(residual instance, RunResult)``.

    ``previous_plans`` (the old front; ``plan`` is always included) seed the search, carried
    over to the new instance. ``settings`` is a ``core.api.Settings``; its objectives may
    include ``migrations`` to weigh moving tasks against the other objectives.
    """
    from apportion.core.algorithms.heft import HeftAllocator
    from apportion.core.api import Settings, optimize

    residual = residual_instance(instance, plan, now, changes, start=start, end=end)
    fallback = HeftAllocator().build(residual)
    seeds = carry_over_all([plan, *previous_plans], instance, residual, fallback)
    result = optimize(residual, settings or Settings(), progress=progress, initial_plans=seeds)
    return residual, result

"""Carry a published front over to a new run: the plans by task and node id, mapped onto the
new workload and cluster, and each task's previous node.

A front travels between runs as front.json: ``tasks`` and ``nodes`` list the ids once, each
plan's ``assignment`` gives a node index per task and its ``order`` task indices, ``chosen``
names the plan that was picked. ``carry_front`` turns those plans into plans for a new
``Instance`` (over ``replan.carry_over``); ``with_previous_nodes`` records where the chosen
plan put each task, which the ``moved`` statistic and the ``migrations`` objective count from.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from apportion.core.evaluate import Plan
from apportion.core.model import Cluster, Instance, Workload
from apportion.core.replan import carry_over


@dataclass(frozen=True)
class _PlanIds:
    """The task and node ids a carried plan refers to: what ``replan.carry_over`` reads from
    the instance the plan was made for."""

    task_ids: tuple[str, ...]
    node_ids: tuple[str, ...]


def carry_front(front: Mapping[str, Any], instance: Instance, fallback: Plan) -> list[Plan]:
    """The plans of ``front`` as plans for ``instance``, by task and node id: a task keeps its
    node when the node still exists and is eligible (not failed); new tasks and the rest take
    ``fallback``'s node; the order follows the old one where the edges allow."""
    node_index = {n: j for j, n in enumerate(instance.node_ids)}
    present = set(instance.task_ids)
    tasks, nodes = front["tasks"], front["nodes"]
    plans = []
    for entry in front["plans"]:
        kept = [t for t, j in enumerate(entry["assignment"]) if tasks[t] in present and nodes[j] in node_index]
        position = {t: k for k, t in enumerate(kept)}
        old = _PlanIds(tuple(tasks[t] for t in kept), instance.node_ids)
        plan = Plan(np.array([node_index[nodes[entry["assignment"][t]]] for t in kept], dtype=np.int32),
                    np.array([position[t] for t in entry["order"] if t in position], dtype=np.int32))
        plans.append(carry_over(plan, old, instance, fallback))
    return plans


def with_previous_nodes(workload: Workload, cluster: Cluster, front: Mapping[str, Any]) -> Workload:
    """``workload`` with each task's ``previous_node`` set to the node the front's chosen plan
    gave it, when that node is still in ``cluster`` and up (a task off a failed node must move,
    so its move is no migration)."""
    up = {node.id for node in cluster.nodes if not node.failed}
    chosen = front["plans"][front["chosen"]]
    previous = {front["tasks"][t]: front["nodes"][j] for t, j in enumerate(chosen["assignment"])}
    tasks = tuple(replace(task, previous_node=previous[task.id] if previous.get(task.id) in up else None)
                  for task in workload.tasks)
    return replace(workload, tasks=tasks)

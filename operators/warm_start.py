"""Warm start from the previous run: the front a DAG published, and what changed since.

``publish_plan`` publishes front.json beside the plan; ``previous_front`` reads it back for
the next run, whose ``allocate`` carries it over (``core.warm_start``) and logs
``warm_start_record``: where the search started and how the plan moved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.paths import published_front_uri

log = logging.getLogger(__name__)

FRONT_VERSION = 1
# Chosen-plan metrics compared with the previous run's (``warm_start/delta/<name>``, new minus old).
DELTA_METRICS = ("makespan", "utilization", "imbalance", "mean_response", "p95_response", "deadline_misses",
                 "energy", "cost")


def front_record(result, chosen_plan_id: str) -> dict:
    """front.json: every plan of the front by task and node ids (``tasks``/``nodes`` list the
    ids once; a plan's ``assignment`` gives a node index per task, its ``order`` task indices),
    its objective values, which one was chosen and the chosen plan's metrics."""
    from apportion.core.evaluate import STAT_INDEX
    from apportion.core.pareto import OBJECTIVES

    inst = result.instance
    return {
        "version": FRONT_VERSION,
        "plan_id": chosen_plan_id,
        "objectives": list(result.settings.objectives),
        "chosen": result.chosen_index,
        "metrics": result.metrics,
        "tasks": list(inst.task_ids),
        "nodes": list(inst.node_ids),
        "plans": [
            {"assignment": plan.assignment.tolist(), "order": plan.order.tolist(),
             "objectives": {name: float(stats[STAT_INDEX[OBJECTIVES[name][0]]]) for name in result.settings.objectives}}
            for plan, stats in zip(result.front, result.front_stats, strict=True)
        ],
    }


def previous_front(dag_id: str, output_root: str | Path | None = None) -> dict | None:
    """The front the last run of ``dag_id`` published (front.json with its ``source``, read
    from the storage root), or ``None`` when there is none or it cannot be read (the run then
    starts cold)."""
    from apportion.operators.storage import as_path, read_json

    uri = published_front_uri(dag_id, output_root)
    if not as_path(uri).exists():
        return None
    try:
        front = read_json(uri)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", uri, exc)
        return None
    problem = front_problem(front)
    if problem is not None:
        log.warning("ignoring %s: %s", uri, problem)
        return None
    return front


def _indexes(value, size: int) -> bool:
    """Whether ``value`` is a list of whole numbers in ``range(size)``."""
    return isinstance(value, list) and all(type(i) is int and 0 <= i < size for i in value)


def front_problem(front) -> str | None:
    """What makes ``front`` unusable as a front.json (``front_record``'s shape), or ``None``."""
    if not isinstance(front, dict) or front.get("version") != FRONT_VERSION:
        return f"not a front.json of version {FRONT_VERSION}"
    tasks, nodes, plans = front.get("tasks"), front.get("nodes"), front.get("plans")
    if not (isinstance(tasks, list) and isinstance(nodes, list) and all(isinstance(i, str) for i in tasks + nodes)):
        return "tasks and nodes must be lists of ids"
    if not isinstance(plans, list) or not plans or not _indexes([front.get("chosen")], len(plans)):
        return "no plans, or chosen is not one of them"
    for k, plan in enumerate(plans):
        if not isinstance(plan, dict) or len(plan.get("assignment") or ()) != len(tasks) \
                or not _indexes(plan["assignment"], len(nodes)) or not _indexes(plan.get("order"), len(tasks)) \
                or sorted(plan["order"]) != list(range(len(tasks))):
            return f"plans[{k}] does not give every task one node and one place in the order"
    return None


def warm_start_record(front: Mapping[str, Any] | None, instance, result, carried: list) -> tuple[dict, dict]:
    """(params, metrics) saying where the search started and what changed since the last run."""
    import numpy as np

    from apportion.core.evaluate import STAT_INDEX, Evaluator
    from apportion.core.pareto import OBJECTIVES

    if front is None:
        return {"warm_start/enabled": "false"}, {}
    source = front.get("source", {})
    params = {"warm_start/enabled": "true", "warm_start/source": source.get("mlflow_run_id") or "",
              "warm_start/source_plan": front.get("plan_id", "")}
    moved = result.chosen.stat("moved")
    movable = int(np.count_nonzero(instance.previous_node >= 0))
    metrics = {"warm_start/plans": float(len(carried)), "warm_start/moved_tasks": moved,
               "warm_start/moved_share": moved / movable if movable else 0.0}
    old = front.get("metrics", {})
    for name in DELTA_METRICS:
        if name in old and name in result.metrics:
            metrics[f"warm_start/delta/{name}"] = float(result.metrics[name]) - float(old[name])
    # What the previous chosen plan, carried over, is worth on this run's workload and cluster.
    stats = Evaluator(instance).schedule(carried[front["chosen"]]).stats
    for name in result.settings.objectives:
        metrics[f"warm_start/previous_plan_{name}"] = float(stats[STAT_INDEX[OBJECTIVES[name][0]]])
    return params, metrics

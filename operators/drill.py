"""The failure drill: a node fails part-way through the chosen plan, and the plan is revised.

``replan_after_failure`` keeps what finished and what runs elsewhere, plans the rest again with
``core.replan.replan`` seeded with the old front, and logs both plans, Gantt charts before
and after, and what moved.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.chosen_plan import PLAN_FILES, allocation_folder, plan_from_folder
from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.inputs import check_flag
from apportion.operators.paths import FRONT_FILE, PLAN_FILE
from apportion.operators.reuse import plan_id
from apportion.operators.storage import local_files, local_files_in, save_folder, task_folders
from apportion.operators.tracking import AirflowRef
from apportion.operators.warm_start import DELTA_METRICS


def _failure_node(instance, plan, schedule, fail_node: str, now: float, repair: float | None) -> str:
    """``fail_node``; with ``"busiest"`` the node with the most busy time in the plan whose
    failure at ``now`` leaves every unfinished task a node it may run on."""
    import numpy as np

    from apportion.core.errors import SpecError
    from apportion.core.replan import NodeFailure, residual_instance

    if fail_node != "busiest" and fail_node not in instance.node_ids:
        raise SpecError("fail_node", f"unknown node {fail_node!r}; give 'busiest' or one of {list(instance.node_ids)}")
    candidates = ([instance.node_ids[j] for j in np.argsort(-schedule.busy, kind="stable")]
                  if fail_node == "busiest" else [fail_node])
    reasons = []
    for node in candidates:
        try:
            residual_instance(instance, plan, now, [NodeFailure(node, repair)], start=schedule.start, end=schedule.end)
        except SpecError as error:
            reasons.append(f"{node}: {error}")
            continue
        return node
    raise SpecError("fail_node", f"no node can fail at {now:g} s without stranding work ({'; '.join(reasons[:3])})"
                    if fail_node == "busiest" else f"{fail_node} cannot fail at {now:g} s: {reasons[0]}")


def _checked_time(value, field: str, what: str, upper: float = math.inf) -> float:
    """``value`` as a float when it is a finite number in ``[0, upper]``; else a ``SpecError``."""
    from apportion.core.errors import SpecError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= upper \
            or not math.isfinite(value):
        raise SpecError(field, f"must be {what}, got {value!r}")
    return float(value)


def _drill_settings(record: Mapping[str, Any], migration_objective: bool):
    """The settings the plan was made with, plus ``migrations`` when asked."""
    from dataclasses import replace

    from apportion.core.api import Settings

    stored = dict(record["settings"])
    settings = Settings(**{**stored, "objectives": tuple(stored["objectives"])})
    if migration_objective and "migrations" not in settings.objectives:
        settings = replace(settings, objectives=(*settings.objectives, "migrations"))
    return settings


def _task_counts(instance, plan, before, result, node: str, now: float) -> dict[str, int]:
    """Finished, lost (running on the failed node), displaced (planned on it, not finished) and
    moved tasks."""
    import numpy as np

    on_failed = plan.assignment == instance.node_ids.index(node)
    return {
        "finished_tasks": int(np.count_nonzero(before.end <= now)),
        "lost_tasks": int(np.count_nonzero(on_failed & (before.start < now) & (now < before.end))),
        "displaced_tasks": int(np.count_nonzero(on_failed & (before.end > now))),
        "moved_tasks": int(result.chosen.stat("moved")),
    }


def replan_after_failure(allocation: Mapping[str, Any], *, fail_node: str = "busiest", fail_at: float = 0.5,
                         repair: float | None = None, migration_objective: bool = False,
                         tracking_uri: str | None = None, mlflow_conn_id: str | None = DEFAULT_CONN_ID,
                         output_root: str | Path | None = None, context: Mapping[str, Any] | None = None,
                         ref: AirflowRef | None = None) -> dict:
    """Fail ``fail_node`` at ``fail_at`` x the chosen plan's makespan (back after ``repair`` s,
    or never; ``"busiest"``: the busiest node the remaining work can do without) and re-plan
    what is left with ``core.replan.replan``, seeded with the old front: tasks that finished or
    run elsewhere keep their node and times, the task running on the failed node is lost and
    planned again.

    Writes the revised plan (plan.json, schedule.csv, pareto.csv, the residual workload.json
    and cluster.json), drill.json and Gantt charts before and after (the failed node and the
    failure time marked), logs them under ``replan/`` and the metrics ``drill/before/*``,
    ``drill/after/*``, ``drill/moved_tasks``, ``drill/lost_tasks``, ``drill/displaced_tasks``,
    ``drill/finished_tasks``, ``drill/failure_time`` and ``drill/seconds`` to the allocation's
    MLflow run. Everything is stored in the task's folder of the storage root first. Returns an
    allocation-like result (``artifact_uri``, ``plan_uri``, ``workload``, ``cluster``: URIs, ...)
    that ``evaluate_plan`` checks.
    """
    from apportion.core.api import write_outputs
    from apportion.core.atomic import write_json
    from apportion.core.evaluate import Evaluator
    from apportion.core.io import cluster_to_dict, workload_to_dict
    from apportion.core.metrics import plan_metrics
    from apportion.core.replan import NodeFailure, replan
    from apportion.core.warm_start import carry_front
    from apportion.operators.charts import gantt_chart

    folder, store = task_folders(ref, context=context, output_root=output_root)
    fraction = _checked_time(fail_at, "fail_at", "a fraction of the planned makespan in [0, 1]", upper=1.0)
    repair_seconds = None if repair is None else _checked_time(repair, "repair", "a number of seconds >= 0")
    with local_files(allocation_folder(allocation), (*PLAN_FILES, FRONT_FILE, "schedule.csv")) as source:
        instance, plan, record = plan_from_folder(source)
        before = Evaluator(instance).schedule(plan)
        now = fraction * before.stat("makespan")
        node = _failure_node(instance, plan, before, str(fail_node), now, repair_seconds)
        back_at = None if repair_seconds is None else now + repair_seconds
        marks = dict(failed_node=node, failure_time=now, back_at=back_at)
        gantt_chart(source / "schedule.csv", folder / "gantt_before.png", title=f"before: {node} fails at {now:.4g} s",
                    **marks)
        front_file = source / FRONT_FILE
        previous = json.loads(front_file.read_text()) if front_file.exists() else None
    settings = _drill_settings(record, check_flag(migration_objective, "migration_objective"))
    old_front = carry_front(previous, instance, plan) if previous is not None else []

    started = time.perf_counter()
    residual, result = replan(instance, plan, now, [NodeFailure(node, repair_seconds)], settings=settings,
                              previous_plans=old_front)
    replan_seconds = time.perf_counter() - started
    paths = write_outputs(result, folder)
    write_json(folder / "workload.json", workload_to_dict(residual.workload), sort_keys=True)
    write_json(folder / "cluster.json", cluster_to_dict(residual.cluster), sort_keys=True)

    counts = _task_counts(instance, plan, before, result, node, now)
    gantt_chart(paths["schedule"], folder / "gantt_after.png", title=f"after re-planning ({counts['moved_tasks']} moved)",
                **marks)
    after_metrics = result.metrics
    before_metrics = plan_metrics(instance, before)
    metrics = {
        **{f"drill/before/{k}": before_metrics[k] for k in DELTA_METRICS},
        **{f"drill/after/{k}": after_metrics[k] for k in DELTA_METRICS},
        **{f"drill/{k}": v for k, v in counts.items()}, "drill/failure_time": now, "drill/seconds": replan_seconds,
        "drill/search_seconds": result.seconds, "drill/pareto_size": result.pareto_size,
        "drill/seed_plans": float(1 + len(old_front)),
    }
    drill = {"fail_node": node, "fail_at": fraction, "failure_time": now, "repair": repair_seconds,
             "back_at": back_at, "objectives": list(settings.objectives), "metrics": metrics,
             "before_plan_id": allocation.get("plan_id")}
    write_json(folder / "drill.json", drill, sort_keys=True)
    save_folder(folder, store, local_files_in(folder))
    out = {
        "plan_id": plan_id(json.loads(paths["plan"].read_text())), "fail_node": node, "failure_time": now,
        "makespan": after_metrics["makespan"], "before_makespan": before_metrics["makespan"], **counts,
        "replan_seconds": replan_seconds, "artifact_uri": str(store), "plan_uri": str(store / PLAN_FILE),
        "workload": str(store / "workload.json"), "cluster": str(store / "cluster.json"),
        "artifact_path": "replan", "mlflow_run_id": allocation.get("mlflow_run_id"),
        "tracking_uri": allocation.get("tracking_uri"),
    }
    if allocation.get("mlflow_run_id"):
        run_id = allocation["mlflow_run_id"]
        with ApportionMlflowHook(mlflow_conn_id, tracking_uri or allocation.get("tracking_uri")).upload_from(
                str(store)) as tracker:
            tracker.log_params(run_id, {"drill/fail_node": node, "drill/fail_at": fraction,
                                        "drill/repair": repair_seconds, "drill/objectives": ",".join(settings.objectives)})
            tracker.log_metrics(run_id, metrics)
            tracker.set_tags(run_id, {"apportion.replan_plan_id": out["plan_id"]})
            tracker.log_artifacts(run_id, folder, "replan")
    return out

"""Enacting a chosen plan: the workflow's own steps run as Airflow task instances, on the plan's nodes.

Three steps (docs/enactment.md):

* ``prepare_enactment`` reads the verified plan and, for the first ``units`` cases (regions,
  streams) of the workload, gives each step instance its node, pool, queue, declared work and
  predicted times (``assignments``, which the DAG's mapped task group expands over), and the
  record the cluster policy (``operators/placement.py``) places task instances by. It checks
  everything first: a step on a node without a pool fails this task, so no step starts.
* ``run_step`` runs one step instance's stand-in (``operators/steps/``) after checking that
  Airflow placed it on its node, and records when and where it really ran.
* ``observe_enactment`` compares the realised times with the plan's predictions and logs them
  to the DAG run's MLflow run (never a new run, so a retry adds no run).
"""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from apportion.operators import charts
from apportion.operators.chosen_plan import load_chosen_plan
from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.placement import node_pool
from apportion.operators.queues import check_node_workers
from apportion.operators.steps import WORKFLOW_STEPS, load_libraries, run_stand_in
from apportion.operators.steps.kit import OTHER_UNITS
from apportion.operators.storage import save_folder, task_folders
from apportion.operators.tracking import AirflowRef

GROUP = "enact"
WATCH_TASK = "watch_enactment"
DEFAULT_QUEUE = "default"
# A step waiting for another unit's output: polls in its process while that is running, else
# defers this long (a short deferral races Airflow 3.3's stale executor events, apache/airflow#72716).
INPUT_POLL_SECONDS = 0.5
INPUT_RECHECK_SECONDS = 15.0
INPUT_WAIT_LIMIT_SECONDS = 1800.0  # ... and fails when it has not come in this long
INPUT_FINISHING_STATES = frozenset({"running", "success"})  # success: its XCom is there on the next look
INPUT_LOST_STATES = frozenset({"failed", "upstream_failed", "skipped", "removed"})


def node_pools(cluster) -> dict[str, dict[str, Any]]:
    """Pool name -> ``{"node", "slots"}`` for every node of ``cluster`` that is up (a failed
    node takes no work, so it has no pool), with the node's ``slots`` (how many
    steps it runs at once), default 1. Two nodes whose ids give one pool name are refused."""
    from apportion.core.errors import SpecError

    pools: dict[str, dict[str, Any]] = {}
    for node in cluster.nodes:
        if node.failed:
            continue
        name = node_pool(node.id)
        if name in pools:
            raise SpecError(f"cluster.nodes[{node.id!r}].id",
                            f"gives the pool name {name!r} of node {pools[name]['node']!r} too; rename one")
        pools[name] = {"node": node.id, "slots": node.slots}
    return pools


def prepare_enactment(allocation: Mapping[str, Any], *, scenario: str, units: int, scale: float, seed: int = 0,
                      group: str = GROUP) -> dict[str, Any]:
    """What enacting the first ``units`` units of the allocation's chosen plan runs where.

    Returns ``{"assignments": [...], "placement": {...}}``: one assignment per unit
    (its steps, each with task id, node, pool, queue, declared work, predicted start and end,
    and the unit's release), and the placement record (``tasks``: the task id of each step in
    ``group`` -> pool per map index; ``queues`` likewise; ``pools``: every up node's pool and
    slots). ``units`` = 0 enacts nothing. A ``SpecError`` names the first problem: a step on a
    node without a pool, a unit without one of the steps, a workload edge the step graph lacks.
    """
    from apportion.core.errors import SpecError

    if scenario not in WORKFLOW_STEPS:
        raise SpecError("scenario", f"no enactment steps for {scenario!r}; known: {sorted(WORKFLOW_STEPS)}")
    if not isinstance(units, int) or isinstance(units, bool) or units < 0:
        raise SpecError("enact_units", f"must be an integer >= 0, got {units!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise SpecError("enact_scale", f"must be a number > 0, got {scale!r}")
    if units == 0:
        return {"assignments": [], "placement": None}
    check_policy_installed()
    instance, _, record = load_chosen_plan(allocation)
    workload, steps = instance.workload, WORKFLOW_STEPS[scenario]
    planned = {entry["task"]: entry for entry in record["tasks"]}
    tasks = {task.id: task for task in workload.tasks}
    pools = node_pools(instance.cluster)
    pool_of = {spec["node"]: name for name, spec in pools.items()}
    requests = list(workload.requests)[:units]
    _check_step_graph(workload, steps, {r.id for r in requests})
    across = inputs_across_units(workload, [r.id for r in requests])

    assignments = []
    for index, request in enumerate(requests):
        placed = {}
        for step in steps:
            task_id = f"{request.id}.{step}"
            if task_id not in tasks:
                raise SpecError("workload.tasks", f"unit {request.id!r} has no step {step!r} (task {task_id!r})")
            node = planned[task_id]["node"]
            if node not in pool_of:
                raise SpecError(f"plan.tasks[{task_id!r}].node",
                                f"node {node!r} has no pool (not an up node of the cluster snapshot); "
                                "nothing was enacted")
            placed[step] = {"task": task_id, "node": node, "pool": pool_of[node], "queue": pool_of[node],
                            "kind": tasks[task_id].kind, "work": tasks[task_id].work,
                            "predicted_start": planned[task_id]["start"], "predicted_end": planned[task_id]["end"],
                            "after": across.get(task_id, [])}
        assignments.append({"scenario": scenario, "unit": request.id, "index": index, "release": request.release,
                            "seed": seed * 100_003 + index, "scale": float(scale), "steps": placed})
    check_node_workers({placed["node"]: placed["queue"] for a in assignments for placed in a["steps"].values()})
    placement = {
        "tasks": {f"{group}.{step}": [a["steps"][step]["pool"] for a in assignments] for step in steps},
        "queues": {f"{group}.{step}": [a["steps"][step]["queue"] for a in assignments] for step in steps},
        "pools": pools, "plan_id": allocation.get("plan_id"),
    }
    return {"assignments": assignments, "placement": placement}


def check_policy_installed() -> None:
    """Refuse to enact when the placement policy is not installed with this Airflow (an
    ``airflow.policy`` entry point to ``apportion.operators.placement``): the steps would run
    in the default pool, wherever there is room, and the plan would not be enforced."""
    from importlib.metadata import entry_points

    from apportion.core.errors import SpecError

    if not any(ep.value == "apportion.operators.placement" for ep in entry_points(group="airflow.policy")):
        raise SpecError("enact", "the apportion placement policy (entry point group 'airflow.policy') is not "
                                 "installed here; install the apportion package where Airflow runs")


def _check_step_graph(workload, steps: Mapping[str, tuple[str, ...]], units: set[str]) -> None:
    """Every edge between two steps of one enacted unit must be a dependency of the step graph."""
    from apportion.core.errors import SpecError

    owner = {task.id: task.request for task in workload.tasks}
    for edge in workload.edges:
        unit, other = owner.get(edge.source), owner.get(edge.target)
        if unit not in units or other not in units:
            continue  # from or to a unit not enacted
        source, target = edge.source.removeprefix(f"{unit}."), edge.target.removeprefix(f"{other}.")
        if unit != other:
            if source not in steps or target not in steps:
                raise SpecError(f"workload.edges[{edge.source!r} -> {edge.target!r}]",
                                f"joins units {unit!r} and {other!r} at steps this workflow does not have "
                                f"(it has {list(steps)})")
        elif source not in steps.get(target, ()):
            raise SpecError(f"workload.edges[{edge.source!r} -> {edge.target!r}]",
                            f"is not a dependency of the enacted step {target!r} (it takes {list(steps.get(target, ()))})")


def inputs_across_units(workload, units: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Task id -> the inputs it takes from other enacted units (a region's forecast reads its
    neighbours' ingest): each source's task id, step and unit's map index. Edges from units not
    enacted are left out: those steps do not run."""
    owner = {task.id: task.request for task in workload.tasks}
    index = {unit: i for i, unit in enumerate(units)}
    across: dict[str, list[dict[str, Any]]] = {}
    for edge in workload.edges:
        unit, other = owner.get(edge.source), owner.get(edge.target)
        if unit != other and unit in index and other in index:
            across.setdefault(edge.target, []).append(
                {"task": edge.source, "step": edge.source.removeprefix(f"{unit}."), "index": index[unit]})
    return {task: sorted(sources, key=lambda source: source["task"]) for task, sources in across.items()}


def results_of_other_units(placed: Mapping[str, Any], ti, *, waiting_since: float | None = None,
                           group: str = GROUP) -> tuple[dict[str, dict], float | None]:
    """The results (``run_step``'s) of ``placed``'s inputs in other units (``placed["after"]``),
    by task id, and since when (epoch seconds) the step has waited for them (None: it did not).

    Airflow orders a mapped group's steps within one map index only, so the step checks these
    inputs itself. While every missing one is running, it polls for them in its own process
    (``INPUT_POLL_SECONDS``): a running input needs no slot of this step's node, and no state
    change means no race with Airflow's executor events. While one has not started, the step
    defers (``TaskDeferred``: a ``TimeDeltaTrigger`` of ``INPUT_RECHECK_SECONDS``, resumed by
    ``EnactedStepOperator.resume_step`` on the same try), giving its pool slot and worker back.
    ``waiting_since`` carries the first wait over a deferral. It fails without retries
    (``AirflowFailException``, naming the input) when an input can no longer run (failed,
    skipped) or has not come within ``INPUT_WAIT_LIMIT_SECONDS``."""
    from datetime import timedelta

    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from apportion.operators.step_task import RESUME_METHOD

    results, pending, since = {}, list(placed.get("after", ())), waiting_since
    while True:
        missing = []
        for source in pending:
            result = ti.xcom_pull(task_ids=f"{group}.{source['step']}", map_indexes=source["index"])
            if isinstance(result, Mapping):
                results[source["task"]] = result
            else:
                missing.append(source)
        if not missing:
            return results, since
        pending, now = missing, time.time()
        since = now if since is None else since
        names = sorted({f"{group}.{source['step']}" for source in pending})
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=names, run_ids=[ti.run_id]).get(ti.run_id, {})
        state_of = {source["task"]: states.get(f"{group}.{source['step']}_{source['index']}") for source in pending}
        for source in pending:
            if state_of[source["task"]] in INPUT_LOST_STATES:
                raise AirflowFailException(f"{placed['task']}: its input {source['task']} ({group}.{source['step']}"
                                           f"[{source['index']}]) is {state_of[source['task']]}; it cannot run")
        if now - since > INPUT_WAIT_LIMIT_SECONDS:
            raise AirflowFailException(f"{placed['task']}: its input {', '.join(state_of)} from another unit has "
                                       f"not come in {now - since:.0f} s (limit {INPUT_WAIT_LIMIT_SECONDS:.0f} s); "
                                       "it cannot run")
        if not set(state_of.values()) <= INPUT_FINISHING_STATES:
            raise TaskDeferred(trigger=TimeDeltaTrigger(timedelta(seconds=INPUT_RECHECK_SECONDS)),
                               method_name=RESUME_METHOD, kwargs={"waiting_since": since})
        time.sleep(INPUT_POLL_SECONDS)


def run_step(assignment: Mapping[str, Any], step: str, inputs: Mapping[str, Mapping[str, Any]],
             context: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``step`` of one enacted unit where the plan put it, and record where and when.

    ``inputs`` are the upstream steps' results (``run_step``'s return values). Refuses to run
    (``PlacementError``) when Airflow routed it to another node's queue. (A task instance
    cannot see its pool, and ``dag.test()`` hands every task the default queue, so the pool
    itself is checked where the database is: the placement policy and the tests.) Returns ``{"output": the
    stand-in's output, "realised": {task, unit, step, node, pool, queue, hostname, try_number,
    ti_start, start, end (epoch seconds), waited (seconds spent waiting for other units' outputs)}}``.
    A step that waited counts from when it resumed (``ti_start``), and none from before its inputs
    from other units ended.
    """
    placed = assignment["steps"][step]
    ti = context["ti"]
    queue = getattr(ti, "queue", None)
    node = placed["node"]
    if queue not in (placed["queue"], DEFAULT_QUEUE, None):
        node = _rerouted_node(ti, queue)
        if node is None:
            raise PlacementError(f"{ti.task_id}[{ti.map_index}] ({placed['task']}) was routed to queue {queue!r}, "
                                 f"not to node {placed['node']!r}'s {placed['queue']!r} nor by a re-plan")
    own = {name: result["output"] for name, result in inputs.items()}
    waited = getattr(context.get("task"), "waited", None) or {}  # set when resumed after waiting (step_task)
    other_units, waiting_since = results_of_other_units(placed, ti, waiting_since=waited.get("since"))
    waited_seconds = time.time() - waiting_since if waiting_since is not None else 0.0
    # Its start: this attempt's, and never before its inputs from other units had ended.
    starts = [_attempt_start(ti, waited), *(result["realised"]["end"] for result in other_units.values())]
    ti_start = max((start for start in starts if start is not None), default=None)
    load_libraries()
    started = time.time()
    others = {task: result["output"] for task, result in other_units.items()}
    output = run_stand_in(assignment["scenario"], step, work=placed["work"], scale=assignment["scale"],
                          seed=assignment["seed"], inputs={**own, **({OTHER_UNITS: others} if others else {})})
    ended = time.time()
    return {"output": output, "realised": {
        "task": placed["task"], "unit": assignment["unit"], "step": step, "node": node,
        "pool": node_pool(node), "queue": queue, "hostname": getattr(ti, "hostname", None) or socket.gethostname(),
        "try_number": getattr(ti, "try_number", None), "map_index": ti.map_index,
        "ti_start": ti_start if ti_start is not None else started, "start": started, "end": ended,
        "waited": waited_seconds,
    }}


def _attempt_start(ti, waited: Mapping[str, Any]) -> float | None:
    """When this attempt of ``ti`` started (epoch seconds): the task instance's start, or for a
    step resumed after waiting (its ``start_date`` stays its first start's), this process's start,
    not before the triggerer woke it."""
    if waited.get("until") is not None:
        import psutil

        return max(waited["until"], min(psutil.Process().create_time(), time.time()))
    start = getattr(ti, "start_date", None)
    return start.timestamp() if start is not None else None


def _rerouted_node(ti, queue: str) -> str | None:
    """The node a re-plan of this run routed the step instance ``ti`` to on ``queue`` (the
    ``watch_enactment`` task's latest record, ``operators/replanning.py``), or None."""
    from apportion.operators.placement import REPLAN_XCOM

    record = ti.xcom_pull(task_ids=WATCH_TASK, key=REPLAN_XCOM, map_indexes=-1)
    if not isinstance(record, Mapping):
        return None
    routes = record.get("routes", {}).get(ti.task_id, [])
    if ti.map_index >= len(routes) or queue not in routes[ti.map_index]:
        return None
    nodes = {node_pool(node): node for row in record.get("nodes", {}).values() for node in row}
    return nodes.get(queue)


class PlacementError(RuntimeError):
    """A step instance is not running where its plan put it."""


def observations(assignments: Iterable[Mapping[str, Any]], results: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One row per enacted step instance: the plan's prediction beside what happened.

    Times are seconds from the enactment's start (the earliest task instance start) for the
    realised side, from the earliest release of the enacted units for the predicted side.
    ``overhead`` is the executor's share of the step (task instance start to the stand-in's
    start, the libraries' imports included); ``error`` = realised duration - predicted duration;
    ``waited``: seconds the step waited for other units' outputs (polling or deferred) before it started."""
    assignments = list(assignments)
    by_task = {r["realised"]["task"]: r for r in results}
    realised = {task: r["realised"] for task, r in by_task.items()}
    origin = min(r["ti_start"] for r in realised.values())
    release = min(a["release"] for a in assignments)
    rows = []
    for assignment in assignments:
        for step, placed in assignment["steps"].items():
            seen = realised.get(placed["task"])
            if seen is None:
                raise ValueError(f"no realised record of step {placed['task']!r}")
            predicted = placed["predicted_end"] - placed["predicted_start"]
            duration = seen["end"] - seen["ti_start"]
            rows.append({
                "task": placed["task"], "unit": assignment["unit"], "step": step, "kind": placed["kind"],
                "node": seen.get("node", placed["node"]), "planned_node": placed["node"], "pool": seen["pool"], "queue": seen["queue"], "hostname": seen["hostname"],
                "work": placed["work"], "items": by_task[placed["task"]]["output"].get("items"),
                "predicted_start": placed["predicted_start"] - release, "predicted_end": placed["predicted_end"] - release,
                "predicted_duration": predicted, "realised_start": seen["ti_start"] - origin,
                "realised_end": seen["end"] - origin, "realised_duration": duration,
                "work_seconds": seen["end"] - seen["start"], "overhead": seen["start"] - seen["ti_start"],
                "error": duration - predicted, "unit_release": assignment["release"] - release,
                "waited": seen.get("waited", 0.0),
            })
    return rows


def enactment_metrics(rows: list[dict]) -> dict[str, float]:
    """Predicted and realised makespan and response times of the enacted units, the per-step
    error, the executor's per-step overhead and how many steps waited for another unit."""
    import numpy as np

    units = sorted({row["unit"] for row in rows})
    predicted_response = [max(r["predicted_end"] for r in rows if r["unit"] == u)
                          - next(r["unit_release"] for r in rows if r["unit"] == u) for u in units]
    realised_response = [max(r["realised_end"] for r in rows if r["unit"] == u) for u in units]
    error = np.array([r["error"] for r in rows])
    relative = np.array([r["error"] / r["predicted_duration"] for r in rows if r["predicted_duration"] > 0])
    overhead = np.array([r["overhead"] for r in rows])
    return {
        "enact/units": len(units), "enact/steps": len(rows),
        "enact/predicted_makespan": max(r["predicted_end"] for r in rows),
        "enact/realised_makespan": max(r["realised_end"] for r in rows),
        "enact/predicted_mean_response": float(np.mean(predicted_response)),
        "enact/realised_mean_response": float(np.mean(realised_response)),
        "enact/step_error_mean": float(error.mean()), "enact/step_error_median_abs": float(np.median(np.abs(error))),
        "enact/step_relative_error_median": float(np.median(relative)) if relative.size else math.nan,
        "enact/step_abs_relative_error_median": float(np.median(np.abs(relative))) if relative.size else math.nan,
        "enact/overhead_mean": float(overhead.mean()), "enact/overhead_max": float(overhead.max()),
        "enact/work_seconds": float(sum(r["work_seconds"] for r in rows)),
        "enact/rerouted_steps": sum(r["node"] != r["planned_node"] for r in rows),
        "enact/waiting_steps": sum(r["waited"] > 0 for r in rows),
    }


def observe_enactment(allocation: Mapping[str, Any], assignments: Iterable[Mapping[str, Any]],
                      results: Iterable[Mapping[str, Any]], *, replans: Iterable[Mapping[str, Any]] = (),
                      tracking_uri: str | None = None,
                      mlflow_conn_id: str | None = DEFAULT_CONN_ID, output_root: str | Path | None = None,
                      context: Mapping[str, Any] | None = None, ref: AirflowRef | None = None) -> dict[str, Any]:
    """Compare the enacted steps' realised times with the plan's predictions.

    Writes enactment.json (one row per step instance, ``observations``, and the re-plans the
    ``watch_enactment`` task made, ``replans``) and enactment.png
    (predicted against realised duration per step; each unit's predicted and realised
    response) to the task's stored folder, and logs ``enact/*`` metrics (``enactment_metrics``)
    and both files to the allocation's MLflow run. Returns the metrics.
    """
    from apportion.core.atomic import write_json

    results, replans = list(results), list(replans)
    rows = observations(assignments, results)
    metrics = {**enactment_metrics(rows), "enact/replans": len(replans)}
    folder, store = task_folders(ref, context=context, output_root=output_root)
    write_json(folder / "enactment.json", {"plan_id": allocation.get("plan_id"), "metrics": metrics, "steps": rows,
                                           "replans": replans}, sort_keys=True)
    charts.enactment_chart(rows, folder / "enactment.png",
                    title=f"plan {allocation.get('plan_id')}: {metrics['enact/units']} units, "
                          f"{metrics['enact/steps']} step instances enacted")
    save_folder(folder, store, ("enactment.json", "enactment.png"))
    if allocation.get("mlflow_run_id"):
        run_id = allocation["mlflow_run_id"]
        with ApportionMlflowHook(mlflow_conn_id, tracking_uri or allocation.get("tracking_uri")).upload_from(
                str(store)) as tracker:
            tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if math.isfinite(v)})
            tracker.client.log_artifact(run_id, str(folder / "enactment.json"))
            tracker.client.log_artifact(run_id, str(folder / "enactment.png"))
    return {**metrics, "artifact_uri": str(store)}

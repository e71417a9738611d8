"""Publishing a verified plan where others find it, and closing the DAG run's MLflow run.

``publish_plan`` copies plan.json to a stable URI in the storage root (the DAG's Asset names
it) and front.json beside it for the next run's warm start; ``record_run`` tags the MLflow run with the outcome
and ends it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from apportion.operators.chosen_plan import PlanMismatch
from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.paths import FRONT_FILE, current_context, published_plan_uri
from apportion.operators.storage import as_path, read_json, write_bytes, write_json
from apportion.operators.tracking import AirflowRef


def publish_plan(allocation: Mapping[str, Any], evaluation: Mapping[str, Any] | None = None, *,
                 dag_id: str | None = None, target: str | Path | None = None,
                 output_root: str | Path | None = None, context: Mapping[str, Any] | None = None) -> dict:
    """Copy the chosen plan to its stable URI (``published_plan_uri(dag_id)`` unless ``target``,
    a URI or local path), whole or not at all, so an ``Asset`` on it always names a whole,
    verified plan; then its front as front.json beside it, with its ``source`` (MLflow run,
    plan, DAG run, stored folder), which the next run's warm start reads.

    Refuses a plan whose evaluation failed. Returns ``{"uri", "plan_id"}``.
    """
    if evaluation is not None and not evaluation.get("verified", False):
        raise PlanMismatch(f"plan {evaluation.get('plan_id')} was not verified; not publishing it")
    if target is None:
        dag_id = dag_id or AirflowRef.from_context(current_context(context)).dag_id
        target = published_plan_uri(dag_id, output_root)
    target = as_path(target)
    plan = as_path(allocation["plan_uri"])
    uri = write_bytes(target, plan.read_bytes())
    front_source = plan.parent / FRONT_FILE
    if front_source.exists():
        # Written after plan.json: a front.json always names a plan already published.
        front = read_json(front_source)
        front["source"] = {"mlflow_run_id": allocation.get("mlflow_run_id"), "plan_id": allocation["plan_id"],
                           "dag_run_id": AirflowRef.from_context(context).run_id if context is not None else None,
                           "artifact_uri": allocation.get("artifact_uri")}
        write_json(target.parent / FRONT_FILE, front, indent=None)
    return {"uri": uri, "plan_id": allocation["plan_id"]}


def record_run(allocation: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
               evaluation: Mapping[str, Any] | None = None, publication: Mapping[str, Any] | None = None,
               status: str = "FINISHED", tracking_uri: str | None = None,
               mlflow_conn_id: str | None = DEFAULT_CONN_ID) -> dict:
    """Final tags on the DAG run's MLflow run (plan id, verification, published URI) and its
    end status. ``allocation`` may be a list (a benchmark's mapped allocations): their common
    parent run is recorded. Returns ``{"mlflow_run_id", "status"}``."""
    from apportion.core.errors import SpecError

    allocations = [allocation] if isinstance(allocation, Mapping) else list(allocation)
    if not allocations or not all(isinstance(a, Mapping) and a.get("mlflow_run_id") for a in allocations):
        raise SpecError("allocation", "give one or more allocation results with an mlflow_run_id")
    first = allocations[0]
    run_id = first.get("mlflow_parent_run_id") or first["mlflow_run_id"]
    tags = {"apportion.status": status.lower()}
    if len(allocations) == 1:
        tags["apportion.plan_id"] = first["plan_id"]
    else:
        best = min(allocations, key=lambda a: (a["makespan"], a["algorithm"]))  # as comparison.csv ranks them
        tags.update({"apportion.best_algorithm": best["algorithm"], "apportion.best_plan_id": best["plan_id"]})
    if evaluation is not None:
        tags["apportion.verified"] = str(bool(evaluation.get("verified"))).lower()
    if publication is not None:
        tags["apportion.published_uri"] = publication["uri"]
    with ApportionMlflowHook(mlflow_conn_id, tracking_uri or first.get("tracking_uri")).upload_from(
            first.get("artifact_uri")) as tracker:
        tracker.set_tags(run_id, tags)
        tracker.finish(run_id, status)
    return {"mlflow_run_id": run_id, "status": status}

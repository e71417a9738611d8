"""Reading plan.json back, and checking it: the chosen plan re-evaluated from its files alone.

plan.json follows the versioned JSON Schema ``core/schema/plan.schema.json`` (``PLAN_SCHEMA``).
``load_chosen_plan`` rebuilds (instance, plan) from an allocation's stored plan.json and the
workload and cluster specs it was made for (read through the storage root, on any worker); ``load_logged_plan`` does the same from an MLflow
run's artifacts; ``evaluate_plan`` re-computes the plan's metrics and task times independently
of the optimiser and fails on any difference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.paths import PLAN_FILE
from apportion.operators.reuse import plan_id
from apportion.operators.storage import as_path, local_files, put_file

# What re-building the chosen plan reads from an allocation's stored folder.
PLAN_FILES = (PLAN_FILE, "workload.json", "cluster.json")

PLAN_SCHEMA = "urn:apportion:schema:plan:1"  # the $id of core/schema/plan.schema.json


class PlanMismatch(RuntimeError):
    """The chosen plan, re-evaluated from plan.json, does not give the optimiser's numbers."""


def load_chosen_plan(allocation: Mapping[str, Any]):
    """(instance, plan, plan.json) of an allocation result, from its stored folder's plan.json
    and the workload and cluster specs it was made for (``plan_from_folder``)."""
    with local_files(allocation_folder(allocation), PLAN_FILES) as folder:
        return plan_from_folder(folder)


def plan_from_folder(folder: Path):
    """(instance, plan, plan.json) from a local folder's plan.json, workload.json and
    cluster.json. plan.json is checked against its schema, then read by the project's one plan
    reader (``apportion.core.plan_file.read_plan``: every task once on a known, eligible node,
    the order parents first)."""
    from apportion.core.errors import SpecError
    from apportion.core.io import load_cluster, load_workload
    from apportion.core.model import Instance
    from apportion.core.plan_file import read_plan

    try:
        record = json.loads((folder / PLAN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise SpecError("plan.json", f"cannot read {folder / PLAN_FILE}: {error}") from None
    check_plan_record(record)
    instance = Instance.build(load_workload(folder / "workload.json"), load_cluster(folder / "cluster.json"))
    plan, _, _ = read_plan(folder / PLAN_FILE, instance)
    return instance, plan, record


def allocation_folder(allocation: Any) -> str:
    """The URI of the stored folder an allocation result (an upstream XCom) names; a
    ``SpecError`` when it is not such a result."""
    from apportion.core.errors import SpecError

    if not isinstance(allocation, Mapping) or not isinstance(allocation.get("artifact_uri"), str):
        raise SpecError("allocation", f"give an allocation result with an artifact_uri, got {str(allocation)[:80]!r}")
    return allocation["artifact_uri"]


def check_plan_record(plan: Any) -> None:
    """Refuse a plan.json that does not follow ``core/schema/plan.schema.json``: a one-line
    ``SpecError`` naming the first wrong field."""
    from importlib.resources import files

    import jsonschema

    from apportion.core.errors import SpecError

    schema = json.loads(files("apportion.core").joinpath("schema/plan.schema.json").read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(plan))
    if error is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise SpecError(f"plan.json{where}", error.message)


def load_logged_plan(run_id: str, *, artifact_path: str | None = None, tracking_uri: str | None = None,
                     mlflow_conn_id: str | None = DEFAULT_CONN_ID, dst: str | Path | None = None):
    """(instance, plan, plan.json) of the plan an MLflow run logged, from its artifacts
    plan.json, workload.json and cluster.json (under ``artifact_path``, e.g. ``"replan"`` for a
    drill's revised plan), downloaded into ``dst`` (default a temporary folder)."""
    import tempfile

    tracker = ApportionMlflowHook(mlflow_conn_id, tracking_uri).get_conn()
    folder = Path(dst or tempfile.mkdtemp(prefix="apportion-plan-"))
    prefix = f"{artifact_path.strip('/')}/" if artifact_path else ""
    for name in PLAN_FILES:
        tracker.client.download_artifacts(run_id, prefix + name, str(folder))
    return plan_from_folder(folder / prefix)


def evaluate_plan(allocation: Mapping[str, Any], *, tolerance: float = 1e-9, tracking_uri: str | None = None,
                  mlflow_conn_id: str | None = DEFAULT_CONN_ID, metric_prefix: str = "evaluation/") -> dict:
    """Re-evaluate the chosen plan from plan.json and the saved specs, independently of the
    optimiser, and check its claimed metrics and task times (relative ``tolerance``).

    Raises ``PlanMismatch`` naming the differing fields. Logs ``<metric_prefix>verified`` and
    ``<metric_prefix>max_relative_error`` (and the tag ``apportion.<prefix>``) to the
    allocation's MLflow run when it has one. Returns ``{"plan_id", "verified",
    "max_relative_error", "metrics", ...}``.
    """
    stored = allocation_folder(allocation)
    with local_files(stored, PLAN_FILES) as folder:
        return _evaluate(allocation, folder, stored, tolerance=tolerance, tracking_uri=tracking_uri,
                         mlflow_conn_id=mlflow_conn_id, metric_prefix=metric_prefix)


def _evaluate(allocation: Mapping[str, Any], folder: Path, stored: str, *, tolerance: float,
              tracking_uri: str | None, mlflow_conn_id: str | None, metric_prefix: str) -> dict:
    """``evaluate_plan`` on the allocation's files in the local ``folder``; evaluation.json is
    written there and stored beside the plan (``stored``)."""
    from apportion.core.atomic import write_json
    from apportion.core.evaluate import Evaluator
    from apportion.core.metrics import plan_metrics

    instance, chosen, plan = plan_from_folder(folder)
    task_index = {t: i for i, t in enumerate(instance.task_ids)}
    schedule = Evaluator(instance).schedule(chosen)  # checks eligibility and order
    metrics = plan_metrics(instance, schedule)

    errors: dict[str, float] = {}
    for name, claimed in plan["metrics"].items():
        errors[f"metrics.{name}"] = _relative_error(claimed, metrics.get(name))
    for entry in plan["tasks"]:
        t = task_index[entry["task"]]
        errors[f"tasks[{entry['task']}].start"] = _relative_error(entry["start"], schedule.start[t])
        errors[f"tasks[{entry['task']}].end"] = _relative_error(entry["end"], schedule.end[t])
    worst = max(errors.values(), default=0.0)
    bad = sorted(k for k, v in errors.items() if v > tolerance)
    verified = not bad
    outcome = {
        "plan_id": plan_id(plan), "verified": verified, "max_relative_error": worst,
        "checked": len(errors), "metrics": metrics, "mlflow_run_id": allocation.get("mlflow_run_id"),
    }
    # Standard JSON has no infinity: a missing value's error is written as null.
    report = write_json(folder / "evaluation.json",
                        {**outcome, "max_relative_error": worst if math.isfinite(worst) else None}, sort_keys=True)
    put_file(report, as_path(stored) / "evaluation.json")
    if allocation.get("mlflow_run_id"):
        run_id = allocation["mlflow_run_id"]
        with ApportionMlflowHook(mlflow_conn_id, tracking_uri or allocation.get("tracking_uri")).upload_from(
                stored) as tracker:
            tracker.log_metrics(run_id, {f"{metric_prefix}max_relative_error": worst,
                                         f"{metric_prefix}verified": float(verified)})
            tracker.set_tags(run_id, {"apportion." + metric_prefix.strip("/").replace("/", "."):
                                      "verified" if verified else "mismatch"})
            tracker.client.log_artifact(run_id, str(report), allocation.get("artifact_path"))
    if not verified:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise PlanMismatch(f"plan {outcome['plan_id']} re-evaluates differently from the optimiser's claim: "
                           f"{shown} (worst relative error {worst:.3g} > {tolerance:g})")
    return outcome


def _relative_error(claimed, actual) -> float:
    if claimed is None or actual is None:
        return float("inf")
    a, b = float(claimed), float(actual)
    if a == b:  # also equal infinities
        return 0.0
    return abs(a - b) / max(1.0, abs(a))

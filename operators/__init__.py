"""Airflow operators, step functions and MLflow tracking for Apportion.

Nothing heavy is imported here: DAG files import this package at parse time, and the Airflow
API server imports ``operators.links`` to render extra links. Names resolve lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AllocationOperator": "operators.allocation",
    "EvaluatePlanOperator": "operators.allocation",
    "MlflowRunLink": "operators.links",
    "MlflowPlanLink": "operators.links",
    "build_workload": "operators.steps",
    "snapshot_cluster": "operators.steps",
    "allocate": "operators.steps",
    "evaluate_plan": "operators.steps",
    "simulate_plan": "operators.steps",
    "publish_plan": "operators.steps",
    "replan_after_failure": "operators.steps",
    "previous_front": "operators.steps",
    "record_run": "operators.steps",
    "task_folder": "operators.steps",
    "published_plan_path": "operators.steps",
    "plan_asset_uri": "operators.steps",
    "compare_runs": "operators.tracking",
    "resolve_tracking_uri": "operators.tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'operators' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)

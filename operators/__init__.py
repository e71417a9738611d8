"""Airflow operators, step functions and MLflow tracking for Apportion.

Nothing heavy is imported here: DAG files import this package at parse time, and the Airflow
API server imports ``operators.links`` to render extra links. Names resolve lazily.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AllocationOperator": "apportion.operators.allocation",
    "EvaluatePlanOperator": "apportion.operators.allocation",
    "MlflowRunLink": "apportion.operators.links",
    "MlflowPlanLink": "apportion.operators.links",
    "build_workload": "apportion.operators.steps",
    "snapshot_cluster": "apportion.operators.steps",
    "allocate": "apportion.operators.steps",
    "evaluate_plan": "apportion.operators.steps",
    "simulate_plan": "apportion.operators.steps",
    "publish_plan": "apportion.operators.steps",
    "replan_after_failure": "apportion.operators.steps",
    "previous_front": "apportion.operators.steps",
    "record_run": "apportion.operators.steps",
    "task_folder": "apportion.operators.steps",
    "published_plan_path": "apportion.operators.steps",
    "plan_asset_uri": "apportion.operators.steps",
    "compare_runs": "apportion.operators.tracking",
    "resolve_tracking_uri": "apportion.operators.tracking",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'apportion.operators' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)

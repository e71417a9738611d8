"""Airflow operators, step functions and MLflow tracking for Apportion.

One concern per module: ``paths`` (run folders, published files), ``inputs`` (scenario
inputs and settings), ``reuse`` (fingerprint of a complete result), ``warm_start`` (the
previous run's front), ``storage`` (files every worker can reach), ``allocating`` (the allocation and its MLflow logging),
``chosen_plan`` (reading plan.json back and checking it), ``publishing``, ``simulation``,
``drill`` (the failure drill), ``tracking`` (MLflow runs), ``hooks`` (reaching MLflow),
``charts``, ``links`` and the operators in
``allocation``.

Nothing heavy is imported here: DAG files import this package at parse time, and the Airflow
API server imports ``operators.links`` to render extra links. Names resolve lazily.
"""

from __future__ import annotations

from apportion.core.lazy import lazy_exports  # noqa: TID253 (standard library only)

_EXPORTS = {
    "AllocationOperator": "apportion.operators.allocation",
    "EvaluatePlanOperator": "apportion.operators.allocation",
    "MlflowRunLink": "apportion.operators.links",
    "MlflowPlanLink": "apportion.operators.links",
    "build_workload": "apportion.operators.inputs",
    "snapshot_cluster": "apportion.operators.inputs",
    "allocate": "apportion.operators.allocating",
    "evaluate_plan": "apportion.operators.chosen_plan",
    "load_chosen_plan": "apportion.operators.chosen_plan",
    "load_logged_plan": "apportion.operators.chosen_plan",
    "simulate_plan": "apportion.operators.simulation",
    "publish_plan": "apportion.operators.publishing",
    "record_run": "apportion.operators.publishing",
    "replan_after_failure": "apportion.operators.drill",
    "previous_front": "apportion.operators.warm_start",
    "task_folder": "apportion.operators.paths",
    "published_plan_uri": "apportion.operators.paths",
    "plan_asset_uri": "apportion.operators.paths",
    "compare_runs": "apportion.operators.tracking",
    "resolve_tracking_uri": "apportion.operators.hooks",
    "ApportionMlflowHook": "apportion.operators.hooks",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

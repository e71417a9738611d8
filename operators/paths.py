"""Where each step's files go: the task instance's run folder and the published plan.

Run folders are ``<output root>/<dag_id>/<run_id>/<task_id>[.<map_index>]``; a DAG publishes
its latest verified plan (and its front) under ``<output root>/published/<dag_id>/``. The
output root is ``$APPORTION_OUTPUT_ROOT``, else ``$AIRFLOW_HOME/apportion``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.tracking import AirflowRef

OUTPUT_ROOT_ENV = "APPORTION_OUTPUT_ROOT"
PLAN_FILE = "plan.json"
FRONT_FILE = "front.json"  # the front's plans, published beside plan.json for the next run


def default_output_root() -> Path:
    """``$APPORTION_OUTPUT_ROOT``, else ``$AIRFLOW_HOME/apportion`` (``~/airflow/apportion``)."""
    explicit = os.environ.get(OUTPUT_ROOT_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "apportion"


def current_context(context: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """``context``, or the running task's context when none is given."""
    if context is not None:
        return context
    from airflow.sdk import get_current_context

    return get_current_context()


def run_folder(ref: AirflowRef | None = None, *, context: Mapping[str, Any] | None = None,
               output_root: str | Path | None = None) -> Path:
    """The run folder of ``ref`` (else of the current or given task instance), created if missing."""
    ref = ref or AirflowRef.from_context(current_context(context))
    folder = ref.folder(output_root or default_output_root())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def task_folder(context: Mapping[str, Any] | None = None, output_root: str | Path | None = None) -> Path:
    """The run folder of the current (or given) task instance, created if missing."""
    return run_folder(context=context, output_root=output_root)


def published_plan_path(dag_id: str, output_root: str | Path | None = None) -> Path:
    """The stable path the latest verified plan of ``dag_id`` is published to."""
    return Path(output_root or default_output_root()).resolve() / "published" / dag_id / PLAN_FILE


def published_front_path(dag_id: str, output_root: str | Path | None = None) -> Path:
    """Where ``publish_plan`` puts the front of the plan it publishes: beside plan.json."""
    return published_plan_path(dag_id, output_root).with_name(FRONT_FILE)


def plan_asset_uri(dag_id: str, output_root: str | Path | None = None) -> str:
    """``file://`` URI of ``published_plan_path``: where the published plan can be read."""
    return published_plan_path(dag_id, output_root).as_uri()

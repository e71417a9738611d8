"""Extra links from an allocation task to its MLflow run and its plan artifact.

In Airflow 3 the worker calls ``get_link`` right after ``execute()`` and stores the URL as an
XCom named ``_link_<ClassName>``; the API server only reads that XCom. So ``get_link`` runs in
the worker and reads the URLs from the task's return value. The classes live in the installed
``operators`` package because the API server cannot import from the dags or plugins folder.
"""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink


def _returned(ti_key, field: str) -> str:
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_value(ti_key=ti_key, key="return_value")
    return (value or {}).get(field) or "" if isinstance(value, dict) else ""


class MlflowRunLink(BaseOperatorLink):
    """"MLflow run": the run the allocation was logged to (empty when the tracking URI has
    no web UI, e.g. a local sqlite store without ``APPORTION_MLFLOW_UI_URL``)."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        return _returned(ti_key, "mlflow_run_url")


class MlflowPlanLink(BaseOperatorLink):
    """"Allocation plan": plan.json among the MLflow run's artifacts."""

    name = "Allocation plan"

    def get_link(self, operator, *, ti_key) -> str:
        return _returned(ti_key, "mlflow_plan_url")

"""Airflow plugin: makes allocation plans easy to reach from the Airflow UI.

* ``operator_extra_links``: the "MLflow run" and "Allocation plan" buttons on every
  ``AllocationOperator`` task (the operator declares them too; listing them here shows them in
  ``airflow plugins``). Their URLs are computed in the worker after ``execute()`` and stored as
  XComs ``_link_MlflowRunLink`` / ``_link_MlflowPlanLink``, which the API server reads.
* ``external_views``: an "MLflow" entry in the navigation bar, when the MLflow UI address is
  known (``APPORTION_MLFLOW_UI_URL``, or an http(s) ``MLFLOW_TRACKING_URI``).
* ``macros``: ``{{ macros.apportion.published_plan_uri(dag.dag_id) }}`` and
  ``{{ macros.apportion.mlflow_ui_url() }}`` for templates.

Installed as ``apportion.plugins.apportion_plugin`` and registered through the
``airflow.plugins`` entry point, so installing the project is all Airflow needs (plugins/
.airflowignore keeps a plugins folder pointing here from loading it a second time).
Everything it imports comes from the installed ``apportion.operators`` package: the API server
does not put the dags or plugins folder on ``sys.path`` for imports made by links.
"""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin

from apportion.operators.links import MlflowPlanLink, MlflowRunLink
from apportion.operators.paths import plan_asset_uri
from apportion.operators.tracking import ui_base_url


def mlflow_ui_url() -> str:
    """The MLflow UI address, or "" when only a local store is configured."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return ui_base_url(uri) or ""


def published_plan_uri(dag_id: str) -> str:
    """Where ``dag_id`` publishes its latest verified plan (the Asset's URI)."""
    return plan_asset_uri(dag_id)


def _external_views() -> list[dict]:
    url = mlflow_ui_url()
    if not url:
        return []
    return [{"name": "MLflow", "href": url, "destination": "nav", "category": "browse", "url_route": "mlflow"}]


class ApportionPlugin(AirflowPlugin):
    name = "apportion"
    operator_extra_links = [MlflowRunLink(), MlflowPlanLink()]
    external_views = _external_views()
    macros = [mlflow_ui_url, published_plan_uri]

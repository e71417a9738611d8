"""The Airflow plugin loads, and an allocation task run by Airflow gets its MLflow links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

from tests.operators.conftest import dag_id, output_root, tracking_uri  # noqa: F401 (fixtures)

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_airflow_finds_the_plugin_through_its_entry_point_without_a_plugins_folder(tmp_path):
    """``airflow plugins`` with an empty plugins folder: installing the project is enough."""
    empty = tmp_path / "plugins"
    empty.mkdir()
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(empty)}
    done = subprocess.run([str(Path(sys.executable).with_name("airflow")), "plugins", "--output", "json"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plugins = {p["name"]: p for p in json.loads(done.stdout)}
    assert "airflow.plugins" in plugins["apportion"]["source"]
    links = str(plugins["apportion"]["operator_extra_links"])
    assert "MlflowRunLink" in links and "MlflowPlanLink" in links


def test_a_plugins_folder_pointing_at_plugins_does_not_load_it_twice(monkeypatch):
    """The demo points AIRFLOW__CORE__PLUGINS_FOLDER at plugins/: the plugin still loads once,
    from its entry point, with no "already registered" import error."""
    from airflow import plugins_manager, settings
    from airflow._shared.module_loading import _get_grouped_entry_points  # Airflow's cached entry-point scan

    monkeypatch.setattr(settings, "PLUGINS_FOLDER", str(PLUGINS))
    # The source checkout on sys.path (pytest's rootdir) holds the editable install's
    # apportion.egg-info: the distribution, and its entry point, would be seen twice. An
    # installed Airflow does not run with the checkout on sys.path.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != PLUGINS.parent])
    plugins_manager._get_plugins.cache_clear()
    _get_grouped_entry_points.cache_clear()
    try:
        plugins, import_errors = plugins_manager._get_plugins()
    finally:
        plugins_manager._get_plugins.cache_clear()
        _get_grouped_entry_points.cache_clear()
    assert [p.name for p in plugins].count("apportion") == 1
    assert import_errors == {}


def test_the_provider_registers_the_mlflow_connection_type_and_the_links():
    from airflow.providers_manager import ProvidersManager

    from apportion.operators.hooks import ApportionMlflowHook

    manager = ProvidersManager()
    assert "apportion" in manager.providers
    manager.initialize_providers_hooks()
    hook = manager._hooks_lazy_dict["apportion_mlflow"]
    assert (hook.hook_class_name, hook.connection_id_attribute_name) == (
        "apportion.operators.hooks.ApportionMlflowHook", "mlflow_conn_id")
    assert ApportionMlflowHook.conn_type == "apportion_mlflow"
    assert {"apportion.operators.links.MlflowRunLink", "apportion.operators.links.MlflowPlanLink"} <= set(
        manager.extra_links_class_names)


@pytest.mark.slow  # a real dag.test() run: Airflow's in-process API, MLflow store, Numba compile
def test_allocation_task_stores_the_run_url_for_its_extra_link(airflow_metadata_db, tracking_uri, dag_id,
                                                                output_root, monkeypatch):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    from apportion.operators.allocation import AllocationOperator, EvaluatePlanOperator
    from tests.operators.conftest import SMALL

    monkeypatch.setenv("APPORTION_MLFLOW_UI_URL", "http://mlflow.test:5000")
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
             render_template_as_native_obj=True) as dag:
        allocate = AllocationOperator(task_id="allocate", output_root=str(output_root),
                                      population="{{ params.population }}", params={"population": 20},
                                      **{k: v for k, v in SMALL.items() if k != "population"})
        EvaluatePlanOperator(task_id="evaluate", allocation=allocate.output)
    # dag.test() runs only DAGs already serialized in the metadata DB; this one lives in the
    # test, not in a bundle, so store it the way the DAG processor would.
    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(output_root / "no_dags"))
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    run = dag.test()
    assert run.state == "success"

    with create_session() as session:
        rows = session.query(XComModel.task_id, XComModel.key, XComModel.value).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run.run_id).all()
    xcoms = {(task, key): XComModel.deserialize_value(type("X", (), {"value": value})) for task, key, value in rows}
    summary = xcoms[("allocate", "return_value")]
    assert summary["mlflow_run_url"] == (f"http://mlflow.test:5000/#/experiments/{summary['mlflow_experiment_id']}"
                                         f"/runs/{summary['mlflow_run_id']}")
    assert xcoms[("allocate", "_link_MlflowRunLink")] == summary["mlflow_run_url"]
    assert xcoms[("allocate", "_link_MlflowPlanLink")] == summary["mlflow_run_url"] + "/artifactPath/plan.json"
    assert xcoms[("evaluate", "return_value")]["verified"] is True

    from mlflow.tracking import MlflowClient

    mlflow_run = MlflowClient(tracking_uri).get_run(summary["mlflow_run_id"])
    assert mlflow_run.info.run_name == run.run_id
    assert mlflow_run.data.params["search/population"] == "20"

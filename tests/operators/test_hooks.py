"""The MLflow hook: tracking URI and credentials from an Airflow connection, and no credential
in what a run leaves behind (XCom, tags, params, links)."""

from __future__ import annotations

import json
import os

import pytest
from mlflow.tracking import MlflowClient

from apportion.operators.allocating import allocate
from apportion.operators.hooks import (
    PASSWORD_ENV,
    USERNAME_ENV,
    ApportionMlflowHook,
    TrackingNotConfigured,
    resolve_tracking_uri,
)
from apportion.operators.tracking import AirflowRef, run_url
from tests.operators.conftest import SMALL

SECRET = "s3cr3t-pa55"


@pytest.fixture
def no_credentials_in_env(monkeypatch):
    """Whatever the hook puts into the environment is undone after the test."""
    for name in (USERNAME_ENV, PASSWORD_ENV):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)


def test_tracking_uri_comes_from_argument_then_env_then_airflow_connection(monkeypatch, no_credentials_in_env):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_tracking_uri("http://explicit:1") == "http://explicit:1"
    assert resolve_tracking_uri() == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # A real Airflow connection, defined the way deployments do: an AIRFLOW_CONN_* variable.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", '{"conn_type": "apportion_mlflow", "host": "mlflow.internal", '
                                                  '"port": 5001, "schema": "https"}')
    assert resolve_tracking_uri(conn_id="mlflow_test") == "https://mlflow.internal:5001"
    with pytest.raises(TrackingNotConfigured, match="mlflow_missing"):
        resolve_tracking_uri(conn_id="mlflow_missing")


def test_login_and_password_go_to_the_client_never_into_the_uri(monkeypatch, no_credentials_in_env):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_AUTH", json.dumps({
        "conn_type": "apportion_mlflow", "host": "mlflow.internal", "port": 5000, "login": "ada", "password": SECRET}))
    hook = ApportionMlflowHook("mlflow_auth")
    assert hook.get_tracking_uri() == "http://mlflow.internal:5000"
    assert (hook.get_conn().tracking_uri, SECRET in hook.get_tracking_uri()) == ("http://mlflow.internal:5000", False)
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("ada", SECRET)
    # A URI written with its credentials (the connection's URI form) loses them too.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_URI", f"apportion-mlflow://ada:{SECRET}@mlflow.internal:5000")
    assert resolve_tracking_uri(conn_id="mlflow_uri") == "http://mlflow.internal:5000"
    assert run_url(f"http://ada:{SECRET}@mlflow.internal:5000", "1", "r") == \
        "http://mlflow.internal:5000/#/experiments/1/runs/r"


def test_an_unreachable_server_is_named_without_its_credentials(closed_port_uri):
    from apportion.operators.tracking import TrackingUnavailable, check_reachable

    with_credentials = closed_port_uri.replace("http://", f"http://ada:{SECRET}@")
    with pytest.raises(TrackingUnavailable) as caught:
        check_reachable(with_credentials, attempts=1)
    assert closed_port_uri in str(caught.value) and SECRET not in str(caught.value)


def test_a_run_tracked_through_a_connection_with_credentials_leaves_none_behind(
        mlflow_tracking_uri, monkeypatch, tmp_path, dag_id, no_credentials_in_env):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_STORE", json.dumps({
        "conn_type": "apportion_mlflow", "login": "ada", "password": SECRET,
        "extra": {"tracking_uri": mlflow_tracking_uri}}))
    summary = allocate(**SMALL, mlflow_conn_id="mlflow_store", output_root=tmp_path / "runs",
                       ref=AirflowRef(dag_id, "r1", "allocate"))
    assert summary["tracking_uri"] == mlflow_tracking_uri
    assert SECRET not in json.dumps(summary)
    run = MlflowClient(mlflow_tracking_uri).get_run(summary["mlflow_run_id"])
    assert SECRET not in json.dumps({**run.data.tags, **run.data.params})

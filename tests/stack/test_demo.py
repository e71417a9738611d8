"""The demo's report and the servers' environment (the full demo runs in tests/integration)."""

from __future__ import annotations

from apportion.stack.demo import format_table
from apportion.stack.servers import PROJECT_ROOT, airflow_environment


def test_table_shows_a_dash_for_what_a_failed_run_lacks():
    rows = [{"dag": "medical_diagnosis", "state": "success", "seconds": 15.04, "makespan": 3735.244,
             "utilization": 0.4421, "imbalance": 0.31, "pareto_size": 159, "mlflow_run_id": "abc"},
            {"dag": "traffic_prediction", "state": "failed", "seconds": None}]
    header, ok, failed = format_table(rows).splitlines()
    assert ok.split() == ["medical_diagnosis", "success", "15.0", "3735.24", "0.442", "0.310", "159", "abc"]
    assert failed.split() == ["traffic_prediction", "failed", "-", "-", "-", "-", "-", "-"]
    assert header.startswith("DAG")


def test_airflow_runs_the_projects_dags_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    env = airflow_environment(tmp_path, port=18080, mlflow_url="http://127.0.0.1:15000")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"

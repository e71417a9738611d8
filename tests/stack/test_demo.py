"""The demo's report, its history's dates and the servers' environment (the full demo runs in
tests/integration)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta, timezone

from apportion.stack.demo import compare_url, enactment_errors, format_table
from apportion.stack.history import ENACT_CONF, ENACTED_DAG, ENACTED_RUNS, History, backfill_dates, run_label
from apportion.stack.servers import PROJECT_ROOT, airflow_environment


def test_table_shows_a_dash_for_what_a_failed_run_or_a_cold_start_lacks():
    rows = [{"dag": "medical_diagnosis", "run": "scheduled 2026-12-04 16:00", "state": "success", "seconds": 15.04,
             "makespan": 3735.244, "utilization": 0.4421, "imbalance": 0.31, "pareto_size": 159,
             "warm_start": False, "moved_tasks": None, "mlflow_run_id": "abc"},
            {"dag": "medical_diagnosis", "run": "manual 2026-12-04 16:02", "state": "success", "seconds": 12.0,
             "makespan": 3700.0, "utilization": 0.45, "imbalance": 0.3, "pareto_size": 150,
             "warm_start": True, "moved_tasks": 12.0, "mlflow_run_id": "def"},
            {"dag": "traffic_prediction", "run": "backfill 2026-12-03 17:00", "state": "failed", "seconds": None}]
    header, cold, warm, failed = format_table(rows).splitlines()
    assert cold.split() == ["medical_diagnosis", "scheduled", "2026-12-04", "16:00", "success", "15.0", "3735.24",
                            "0.442", "0.310", "159", "-", "abc"]
    assert warm.split()[-2:] == ["12", "def"]
    assert failed.split() == ["traffic_prediction", "backfill", "2026-12-03", "17:00", "failed"] + ["-"] * 7
    assert header.split()[:2] == ["DAG", "run"]


def test_backfill_dates_spread_over_the_past_day_on_the_timetable():
    now = datetime(2026, 12, 4, 16, 37, 12, tzinfo=timezone.utc)
    dates = backfill_dates(now, 6)
    assert [d.strftime("%d %H:%M") for d in dates] == ["03 16:30", "03 20:30", "04 00:30", "04 04:30", "04 08:30",
                                                       "04 12:30"]
    assert backfill_dates(now, 0) == []
    uneven = backfill_dates(now, 7)
    assert all(d.minute % 15 == 0 and d.second == 0 for d in uneven) and uneven == sorted(uneven)
    assert now - timedelta(hours=24, minutes=15) < uneven[0] and uneven[-1] < datetime(2026, 12, 4, 16, 30,
                                                                                       tzinfo=timezone.utc)


def test_run_label_uses_the_logical_date_else_run_after():
    assert run_label({"run_type": "backfill", "logical_date": "2026-12-03T16:30:00Z"}) == "backfill 2026-12-03 16:30"
    assert run_label({"run_type": "manual", "logical_date": None,
                      "run_after": "2026-12-04T16:31:07.2Z"}) == "manual 2026-12-04 16:31"


def test_compare_url_opens_mlflows_compare_view_of_the_runs():
    rows = [{"mlflow_run_id": "a1", "mlflow_experiment_id": "3"}, {"mlflow_run_id": "b2", "mlflow_experiment_id": "3"},
            {"state": "failed"}]
    url = compare_url("http://127.0.0.1:5000", rows)
    route, query = url.split("#/compare-runs?")
    assert route == "http://127.0.0.1:5000/"
    parsed = urllib.parse.parse_qs(query)
    assert json.loads(parsed["runs"][0]) == ["a1", "b2"] and json.loads(parsed["experiments"][0]) == ["3"]
    assert "+" not in query and " " not in query
    assert compare_url("http://127.0.0.1:5000", rows[:1]) is None


def test_airflow_runs_the_projects_dags_under_the_state_dir_with_schedules_on(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE", "False")
    env = airflow_environment(tmp_path, port=18080, mlflow_url="http://127.0.0.1:15000")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(PROJECT_ROOT / "dags")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:18080"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE" not in env


class _Client:
    """What ``History.start`` asks of Airflow, recorded."""

    def __init__(self):
        self.triggered = []

    def dag_runs(self, dag_id):
        return []

    def unpause(self, dag_id):
        pass

    def trigger(self, dag_id, conf):
        self.triggered.append((dag_id, conf))
        return f"manual__{len(self.triggered)}"


def test_the_history_enacts_two_consecutive_medical_runs_of_one_case():
    client = _Client()
    History(client, ["medical_diagnosis", "multimodal_speech"], {"seed": 5}, [], lambda line: None).start()
    assert client.triggered == [("medical_diagnosis", {"seed": 5}), ("multimodal_speech", {"seed": 5})] + [
        (ENACTED_DAG, {"seed": 5, **ENACT_CONF})] * ENACTED_RUNS
    assert ENACT_CONF == {"cases": 1, "enact": "plan and run", "enact_units": 1} and ENACTED_RUNS == 2


def test_the_report_shows_the_enacted_runs_error_falling(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("medical_diagnosis")
    for revision, error in ((0, 573.2), (1, 0.561)):
        run = client.create_run(experiment, start_time=1_000 + revision).info.run_id
        client.log_param(run, "calibration/planned_revision", revision)
        client.log_metric(run, "enact/step_abs_relative_error_median", error)
    client.create_run(experiment)  # a plan-only run: not listed
    [line, _] = enactment_errors(uri)
    assert line.endswith("573 (calibration revision 0) -> 0.561 (calibration revision 1)")
    assert enactment_errors(uri, "traffic_prediction") == []

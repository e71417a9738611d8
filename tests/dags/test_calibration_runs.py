"""The loop closed inside the DAG (docs/calibration.md): three enacted medical_diagnosis runs of
one case each; each run's observations calibrate the next run's plan, and MLflow shows the
prediction error falling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.dags.test_dag_runs import run_dag, runs_of

ONE_CASE = {"nodes": 6, "population": 12, "generations": 4, "seed": 3, "cases": 1, "enact": "plan and run",
            "enact_units": 1}


@pytest.mark.slow
def test_each_enacted_run_plans_with_the_calibration_the_previous_ones_made(
        apportion_dagbag, airflow_metadata_db, mlflow_tracking_uri, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from apportion.operators.calibrating import calibrate_enactment, calibration_uri, read_calibration
    from apportion.operators.storage import read_json
    from apportion.operators.tracking import AirflowRef
    from tests.dags.test_enactment_runs import xcom

    monkeypatch.setenv("APPORTION_OUTPUT_ROOT", str(tmp_path / "store"))
    client = MlflowClient(mlflow_tracking_uri)
    first = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    runs = []
    for i in range(3):
        dag_run = run_dag(apportion_dagbag, "medical_diagnosis", ONE_CASE, logical_date=first + timedelta(hours=i))
        [mlflow_run] = runs_of(client, "medical_diagnosis", dag_run.run_id, "dag_run")
        data = client.get_run(mlflow_run.info.run_id).data
        runs.append((dag_run, mlflow_run.info.run_id, data))
        assert xcom(dag_run, "calibrate")["revision"] == i + 1  # one merge per run

    assert [int(data.params["calibration/planned_revision"]) for _, _, data in runs] == [0, 1, 2]
    assert [int(data.params["calibration/revision"]) for _, _, data in runs] == [1, 2, 3]
    assert [data.tags["apportion.calibration_revision"] for _, _, data in runs] == ["0", "1", "2"]
    errors = [data.metrics["enact/step_abs_relative_error_median"] for _, _, data in runs]
    print("median |realised - predicted| / predicted per run:", errors)
    assert errors[2] < errors[0] / 2, errors
    assert all(data.metrics["enact/steps"] == 7 for _, _, data in runs)  # one case: results not a list, still read
    artifacts = {a.path for a in client.list_artifacts(runs[2][1], "calibration")}
    assert artifacts == {"calibration/calibration.json"}

    target = calibration_uri("medical_diagnosis", "hospital-6")
    calibration = read_calibration(target)
    assert calibration.revision == 3 and len(calibration.runs) == 3
    ran_on = {o.node for o in calibration.observations}  # the nodes the steps really ran on, each learned
    assert ran_on and ran_on <= {node["id"] for node in read_json(xcom(runs[2][0], "allocate")["cluster"])["nodes"]}
    assert all(calibration.overhead(node).overhead > 0 for node in ran_on)  # the executor's share of a step

    # A retried calibrate task of run 3: nothing merged a second time, nothing logged a second time.
    dag_run, run_id, _ = runs[2]
    allocation, observation = xcom(dag_run, "allocate"), xcom(dag_run, "observe_enactment")
    again = calibrate_enactment(allocation, observation, scenario="medical_diagnosis",
                                ref=AirflowRef(dag_run.dag_id, dag_run.run_id, "calibrate", try_number=2))
    assert (again["revision"], again["merged"], again["logged"]) == (3, False, False)
    assert read_calibration(target).revision == 3
    history = client.get_metric_history(run_id, "calibration/error_after")
    assert len(history) == 1 and history[0].step == 3

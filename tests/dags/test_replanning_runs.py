"""Run to run: a scheduled workflow run starts from the plan the previous run published
(two consecutive ``dag.test()`` runs), and the failure drill runs end to end."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tests.dags.test_dag_runs import read_artifact, run_dag, runs_of

SMALL = {"cases": 4, "nodes": 6, "population": 12, "generations": 6, "seed": 5}


@pytest.fixture
def output_root(tmp_path, monkeypatch):
    """A published-plan folder of this test only (tasks run in this process under dag.test())."""
    root = tmp_path / "runs"
    monkeypatch.setenv("APPORTION_OUTPUT_ROOT", str(root))
    return root


@pytest.fixture(scope="module")
def mlflow_client(mlflow_tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_tracking_uri)


def plan_of(client, run, tmp_path, path="plan.json"):
    folder = tmp_path / run.info.run_id
    folder.mkdir(exist_ok=True)
    return json.loads(open(read_artifact(client, run.info.run_id, path, folder)).read())


def test_a_scheduled_run_starts_from_the_previous_runs_plan(apportion_dagbag, airflow_metadata_db, mlflow_client,
                                                           output_root, tmp_path):
    first_date = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)
    first = run_dag(apportion_dagbag, "medical_diagnosis", SMALL, logical_date=first_date)
    second = run_dag(apportion_dagbag, "medical_diagnosis", SMALL, logical_date=first_date + timedelta(hours=1))
    (run1,) = runs_of(mlflow_client, "medical_diagnosis", first.run_id, "dag_run")
    (run2,) = runs_of(mlflow_client, "medical_diagnosis", second.run_id, "dag_run")

    assert run1.data.params["warm_start/enabled"] == "false"  # nothing was published before it
    params, metrics = run2.data.params, run2.data.metrics
    assert params["warm_start/enabled"] == "true" and params["warm_start/source"] == run1.info.run_id
    assert run2.data.tags["apportion.warm_start_source"] == run1.info.run_id
    assert metrics["warm_start/plans"] == run1.data.metrics["search/pareto_size"] >= 1
    # The search saw the previous chosen plan, carried onto this run's (identical) instance,
    # scored on the objectives (the cases arrive over time: priority-weighted mean response).
    assert metrics["warm_start/previous_plan_mean_response"] == run1.data.metrics["plan/weighted_mean_response"]
    assert metrics["warm_start/delta/makespan"] == pytest.approx(
        metrics["plan/makespan"] - run1.data.metrics["plan/makespan"], abs=1e-9)

    before = {t["task"]: t["node"] for t in plan_of(mlflow_client, run1, tmp_path)["tasks"]}
    after = {t["task"]: t["node"] for t in plan_of(mlflow_client, run2, tmp_path)["tasks"]}
    assert metrics["warm_start/moved_tasks"] == sum(before[task] != node for task, node in after.items())
    # Both runs simulated their plan; the second published front names the second run.
    for run in (run1, run2):
        assert "sim/makespan_mean" in run.data.metrics
    published = json.loads((output_root / "published" / "medical_diagnosis" / "front.json").read_text())
    assert published["source"]["mlflow_run_id"] == run2.info.run_id
    assert published["source"]["dag_run_id"] == second.run_id


def test_failure_drill_shows_the_replan(apportion_dagbag, airflow_metadata_db, mlflow_client, output_root, tmp_path):
    conf = {"scenario": "medical_diagnosis", "size": 4, "nodes": 8, "population": 12, "generations": 6, "seed": 2,
            "fail_node": "busiest", "fail_at": 0.5, "migration_objective": True}
    dag_run = run_dag(apportion_dagbag, "failure_drill", conf)
    (run,) = runs_of(mlflow_client, "failure_drill", dag_run.run_id, "dag_run")
    metrics = run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["apportion.verified"] == "true"
    for name in ("makespan", "deadline_misses"):
        assert f"drill/before/{name}" in metrics and f"drill/after/{name}" in metrics
    assert {"drill/moved_tasks", "drill/lost_tasks", "drill/displaced_tasks"} <= set(metrics)
    assert metrics["drill/seconds"] > 0 and metrics["drill/evaluation/verified"] == 1.0
    # The medical cases arrive over time: the form's empty objectives became the response-time ones.
    assert run.data.params["drill/objectives"] == "mean_response,utilization,imbalance,migrations"
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "replan")}
    assert {"replan/gantt_before.png", "replan/gantt_after.png", "replan/drill.json"} <= artifacts

    drill = plan_of(mlflow_client, run, tmp_path, "replan/drill.json")
    before = {t["task"]: t for t in plan_of(mlflow_client, run, tmp_path)["tasks"]}
    after = {t["task"]: t for t in plan_of(mlflow_client, run, tmp_path, "replan/plan.json")["tasks"]}
    now, node = drill["failure_time"], drill["fail_node"]
    finished = [task for task, t in before.items() if t["end"] <= now]
    assert finished and len(finished) == metrics["drill/finished_tasks"]
    for task in finished:  # finished work stays where and when it ran
        assert (after[task]["node"], after[task]["start"], after[task]["end"]) == (
            before[task]["node"], before[task]["start"], before[task]["end"])
    assert not any(t["node"] == node and t["start"] >= now for t in after.values())
    assert metrics["drill/after/makespan"] == max(t["end"] for t in after.values())

"""medical_diagnosis with "plan and run": the workflow's own steps run as task instances, each in
its node's pool (the placement policy the package ships), with the workflow's precedence, and
the run's MLflow run holds the predicted-versus-realised comparison."""

from __future__ import annotations

import json

import pytest

from tests.dags.test_dag_runs import run_dag, runs_of

SMALL = {"nodes": 6, "population": 12, "generations": 4, "seed": 3, "cases": 4}
ENACT = {**SMALL, "enact": "plan and run", "enact_units": 2}


def task_instances(dag_run):
    """The run's task instance rows as the metadata database holds them."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_run.dag_id,
                                                          TaskInstance.run_id == dag_run.run_id)).all()
        return {(ti.task_id, ti.map_index): {"state": ti.state, "pool": ti.pool, "queue": ti.queue} for ti in rows}


def xcom(dag_run, task_id, map_index=-1, key="return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(select(XComModel).where(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id, XComModel.task_id == task_id,
            XComModel.map_index == map_index, XComModel.key == key)).one()
        return XComModel.deserialize_value(row)


@pytest.mark.slow
def test_medical_diagnosis_enacts_every_step_in_its_nodes_pool(apportion_dagbag, airflow_metadata_db,
                                                                mlflow_tracking_uri, tmp_path):
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from mlflow.tracking import MlflowClient
    from sqlalchemy import select

    from apportion.operators.steps import WORKFLOW_STEPS

    steps = WORKFLOW_STEPS["medical_diagnosis"]
    dag_run = run_dag(apportion_dagbag, "medical_diagnosis", ENACT)
    rows = task_instances(dag_run)
    assignments = xcom(dag_run, "prepare_enactment")
    assert [a["unit"] for a in assignments] == ["c0", "c1"]

    results = {}
    for step in steps:
        for index, assignment in enumerate(assignments):
            placed = assignment["steps"][step]
            row = rows[(f"enact.{step}", index)]
            assert row == {"state": "success", "pool": placed["pool"], "queue": placed["queue"]}, (step, index)
            assert placed["pool"] == "node-" + placed["node"].replace("/", ".")
            results[placed["task"]] = xcom(dag_run, f"enact.{step}", index)
    assert len([key for key in rows if key[0].startswith("enact.")]) == len(steps) * 2  # one per step per case

    with create_session() as session:
        pools = {p.pool: p.slots for p in session.scalars(select(Pool)).all()}
    for assignment in assignments:
        for placed in assignment["steps"].values():
            assert pools[placed["pool"]] == 1  # created for the node, its slots the node's (default 1)

    for task, result in results.items():  # precedence in realised times
        unit, step = task.split(".")
        for need in steps[step]:
            assert results[f"{unit}.{need}"]["realised"]["end"] <= result["realised"]["ti_start"], (need, task)
    for assignment in assignments:  # a report contains its own classifier's result
        unit = assignment["unit"]
        classifier = results[f"{unit}.lesion_cls"]["output"]
        text = results[f"{unit}.report"]["output"]["report"]
        assert f"Lesion classifier: {classifier['label']} (malignant probability " \
               f"{classifier['malignant_probability']:.4f})" in text

    (run,) = runs_of(MlflowClient(mlflow_tracking_uri), "medical_diagnosis", dag_run.run_id, "dag_run")
    metrics = run.data.metrics
    assert metrics["enact/steps"] == len(steps) * 2 and metrics["enact/units"] == 2
    assert metrics["enact/realised_makespan"] > 0 and metrics["enact/predicted_makespan"] > 0
    assert {"enactment.json", "enactment.png"} <= {a.path for a in MlflowClient(mlflow_tracking_uri).list_artifacts(
        run.info.run_id)}
    report = json.loads(open(MlflowClient(mlflow_tracking_uri).download_artifacts(
        run.info.run_id, "enactment.json", str(tmp_path))).read())
    assert {row["task"] for row in report["steps"]} == set(results)
    assert all(row["overhead"] >= 0 for row in report["steps"])


@pytest.mark.slow
def test_a_plan_step_on_a_node_without_a_pool_enacts_nothing(apportion_dagbag, airflow_metadata_db, monkeypatch):
    """No pool for the GPUs (as if they had left the cluster): prepare_enactment fails at once,
    without retries, and no step instance runs; the plan itself is still published."""
    from apportion.operators import enactment

    real = enactment.node_pools

    def without_gpus(cluster):
        gpus = {node.id for node in cluster.nodes if node.kind == "gpu"}
        return {name: spec for name, spec in real(cluster).items() if spec["node"] not in gpus}

    monkeypatch.setattr(enactment, "node_pools", without_gpus)
    dag_run = apportion_dagbag.dags["medical_diagnosis"].test(run_conf={**ENACT, "seed": 4})
    rows = task_instances(dag_run)
    assert dag_run.state == "failed"
    assert rows[("prepare_enactment", -1)]["state"] == "failed"
    enacted = {key: row["state"] for key, row in rows.items() if key[0].startswith("enact.")}
    assert enacted and set(enacted.values()) == {"upstream_failed"}, enacted
    assert {rows[(task, -1)]["state"] for task in ("watch_enactment", "observe_enactment", "calibrate")} == {
        "upstream_failed"}
    assert rows[("publish_plan", -1)]["state"] == "success"


@pytest.mark.slow
@pytest.mark.parametrize(("dag_id", "unit"), [("traffic_prediction", "regions"), ("multimodal_speech", "streams")])
def test_traffic_and_speech_enact_every_step_in_its_nodes_pool(apportion_dagbag, airflow_metadata_db, dag_id, unit):
    from apportion.operators.steps import WORKFLOW_STEPS

    conf = {**{k: v for k, v in ENACT.items() if k != "cases"}, unit: 3}
    dag_run = run_dag(apportion_dagbag, dag_id, conf)
    rows = task_instances(dag_run)
    assignments = xcom(dag_run, "prepare_enactment")
    assert len(assignments) == 2
    for step in WORKFLOW_STEPS[dag_id]:
        for index, assignment in enumerate(assignments):
            placed = assignment["steps"][step]
            assert rows[(f"enact.{step}", index)] == {"state": "success", "pool": placed["pool"],
                                                     "queue": placed["queue"]}, (step, index)
    across = [(assignment["steps"][step], source) for assignment in assignments for step in WORKFLOW_STEPS[dag_id]
              for source in assignment["steps"][step]["after"]]
    assert bool(across) == (dag_id == "traffic_prediction")  # a region's forecast reads its neighbours' ingest
    results = {placed["task"]: xcom(dag_run, f"enact.{step}", index) for index, assignment in enumerate(assignments)
               for step, placed in assignment["steps"].items()}
    for placed, source in across:  # an input from another unit: waited for, and used
        assert results[source["task"]]["realised"]["end"] <= results[placed["task"]]["realised"]["ti_start"]
        assert source["task"] in results[placed["task"]]["output"]["neighbours"]

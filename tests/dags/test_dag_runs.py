"""Each DAG end to end with ``dag.test()``: real tasks, a real (temporary) MLflow store.

Sizes are small (a few requests, population 12-16, under 10 generations) so a run takes
seconds; the first run of the session also pays for Airflow's in-process API server and the
core's imports.
"""

from __future__ import annotations

import csv
import json
import os
from datetime import datetime, timezone

import pytest

STEPS_LOGGED = ("plan/makespan", "plan/utilization", "plan/imbalance", "search/hypervolume", "search/pareto_size",
                "search/seconds")
CHARTS_AND_TABLES = {"plan.json", "front.json", "pareto.csv", "schedule.csv", "pareto.png", "pareto.html",
                     "gantt.png", "evaluation.json", "simulation.png", "simulation.json"}
SMALL = {"nodes": 6, "population": 16, "generations": 8, "seed": 3}


@pytest.fixture(scope="module")
def mlflow_client(mlflow_tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_tracking_uri)


# The enactment's steps and observation (docs/enactment.md): skipped by a plan-only run.
ENACTMENT_TASKS = ("enact.", "watch_enactment", "observe_enactment", "calibrate")


def run_dag(dagbag, dag_id, conf, **kwargs):
    """Run the DAG with ``dag.test()``: every task succeeds, but for the enactment's, which a
    plan-only run (the form's default) skips."""
    dag = dagbag.dags[dag_id]
    dag_run = dag.test(run_conf=conf, **kwargs)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    enacted = {key: state for key, state in states.items() if key[0].startswith(ENACTMENT_TASKS)}
    assert {state for key, state in states.items() if key not in enacted} == {"success"}, states
    if enacted:
        assert set(enacted.values()) == ({"success"} if conf.get("enact") == "plan and run" else {"skipped"}), states
    return dag_run


def runs_of(client, dag_id, run_id, role):
    experiment = client.get_experiment_by_name(dag_id)
    assert experiment is not None, f"no MLflow experiment {dag_id}"
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`airflow.dag_run_id` = '{run_id}' and tags.`apportion.role` = '{role}'",
    )


def artifact_names(client, run_id):
    return {a.path for a in client.list_artifacts(run_id)}


def read_artifact(client, run_id, path, tmp_path):
    return client.download_artifacts(run_id, path, str(tmp_path))


def asset_events(uri, run_id):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri, AssetEvent.source_run_id == run_id)
        ).all()
        return [dict(event.extra or {}) for event in rows]


def check_workflow_run(client, dag_id, dag_run, size, tmp_path):
    """The DAG run has one finished MLflow run with the plan's metrics, tables and charts, and
    the plan it published is the one logged."""
    from apportion.core import defaults
    from apportion.core.scenarios import SCENARIOS, build

    (run,) = runs_of(client, dag_id, dag_run.run_id, "dag_run")
    assert run.info.status == "FINISHED"
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    for name in STEPS_LOGGED:
        assert name in metrics, name
    assert metrics["plan/makespan"] > 0
    assert 0 < metrics["plan/utilization"] <= 1
    assert metrics["plan/imbalance"] >= 0 and metrics["search/hypervolume"] >= 0 and metrics["search/pareto_size"] >= 1
    assert metrics["evaluation/verified"] == 1.0
    assert any(key.startswith("convergence/") for key in metrics)
    assert metrics["sim/makespan_p5"] <= metrics["sim/makespan_mean"] <= metrics["sim/makespan_p95"]
    assert params["sim/samples"] == "1000" and params["sim/seed"] == str(SMALL["seed"])
    assert tags["apportion.status"] == "finished" and tags["apportion.verified"] == "true"
    assert (params["search/algorithm"], params["search/population"], params["search/generations"],
            params["search/seed"], params["instance/nodes"]) == (
        "nsga2", str(SMALL["population"]), str(SMALL["generations"]), str(SMALL["seed"]), str(SMALL["nodes"]))
    assert params["scenario/name"] == dag_id and params["scenario/size"] == str(size)
    if "robust/scenarios" not in params:  # robust mode reports the validated front, not the searched one
        curve = client.get_metric_history(run.info.run_id, "convergence/hypervolume")
        assert max(curve, key=lambda m: m.step).value == metrics["search/hypervolume"]
    assert params["search/reference_box/id"]
    assert params["instance/tasks"] == str(size * SCENARIOS[dag_id].tasks_per_unit)
    assert CHARTS_AND_TABLES <= artifact_names(client, run.info.run_id)

    plan = json.loads(open(read_artifact(client, run.info.run_id, "plan.json", tmp_path)).read())
    workload, cluster = build(dag_id, size=size, nodes=SMALL["nodes"], seed=SMALL["seed"],
                              logical_date=params.get("scenario/logical_date"))
    assert sorted(t["task"] for t in plan["tasks"]) == sorted(t.id for t in workload.tasks)
    # The form leaves the objectives empty: the workload's arrivals choose them.
    assert params["search/objectives"] == ",".join(defaults.objectives_for(workload))
    assert {t["node"] for t in plan["tasks"]} <= {n.id for n in cluster.nodes}
    assert plan["metrics"]["makespan"] == pytest.approx(metrics["plan/makespan"], rel=1e-12)
    with open(read_artifact(client, run.info.run_id, "pareto.csv", tmp_path)) as fh:
        front = list(csv.DictReader(fh))
    assert len(front) == metrics["search/pareto_size"] and sum(int(row["chosen"]) for row in front) == 1

    root = storage_root()
    published = tags["apportion.published_uri"]
    assert published == f"{root}/published/{dag_id}/plan.json"
    assert json.loads(open(published[len("file://"):]).read()) == plan
    assert tags["apportion.artifact_uri"] == f"{root}/{dag_id}/{dag_run.run_id.replace(':', '_').replace('+', '_')}/allocate"
    (event,) = asset_events(f"apportion://plans/{dag_id}", dag_run.run_id)
    assert event["plan_id"] == tags["apportion.plan_id"] and event["mlflow_run_id"] == run.info.run_id
    assert event["uri"] == published
    check_no_worker_paths(dag_run, tags, event)
    return run


def storage_root() -> str:
    """The storage root the run used: ``APPORTION_STORAGE_URL``, else the output root's URI."""
    from apportion.operators.storage import storage_root as root

    return str(root())


def _decoded(value):
    """An XCom value as stored: JSON text, or a plain string (links, single strings)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def check_no_worker_paths(dag_run, tags, event):
    """No XCom, Asset extra or MLflow tag names a file by a worker's local path: files travel as
    URIs in the storage root."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from apportion.operators.paths import default_output_root

    worker_root = str(default_output_root().resolve())
    with create_session() as session:
        values = [row.value for row in session.scalars(select(XComModel).where(
            XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)).all()]
    values = [_decoded(v) for v in values]
    assert values, "the run left no XComs"
    texts = [*_strings(values), *_strings(event), *tags.values()]
    files = [t for t in texts if t.endswith((".json", ".csv", ".png")) or "/allocate" in t]
    assert files, "no file URIs at all"
    for text in texts:
        assert not text.startswith("/") and not text.startswith(worker_root), text
    root = storage_root()
    assert all(t.startswith(root) for t in files if "://" in t and not t.startswith(("runs:/", "http"))), files


@pytest.mark.parametrize(("dag_id", "unit", "size"), [
    ("medical_diagnosis", "cases", 6),
    ("multimodal_speech", "streams", 5),
])
def test_workflow_dag_end_to_end(apportion_dagbag, airflow_metadata_db, mlflow_client, tmp_path, dag_id, unit, size,
                                 monkeypatch):
    """medical_diagnosis keeps the default storage root (the output root); multimodal_speech
    stores its files under another file:// root, so every reader must go through the URIs."""
    from apportion.core import scenarios

    if dag_id == "multimodal_speech":
        monkeypatch.setenv("APPORTION_STORAGE_URL", (tmp_path / "shared_storage").as_uri())

    built = []
    real_build = scenarios.build
    monkeypatch.setattr(scenarios, "build", lambda *args, **kwargs: built.append(args) or real_build(*args, **kwargs))
    dag_run = run_dag(apportion_dagbag, dag_id, {**SMALL, unit: size})
    assert len(built) == 1  # build_workload builds the instance; snapshot_cluster and allocate reuse it
    check_workflow_run(mlflow_client, dag_id, dag_run, size, tmp_path)


def test_traffic_reads_the_logical_date_in_the_city_time_zone(apportion_dagbag, airflow_metadata_db, mlflow_client,
                                                            tmp_path):
    """07:00 UTC on Monday 3 March 2025 is 08:00 in Berlin (CET, UTC+1): the morning rush."""
    from apportion.core.io import workload_to_dict
    from apportion.core.scenarios import build

    size = 4
    logical_date = datetime(2025, 3, 3, 7, 0, tzinfo=timezone.utc)
    dag_run = run_dag(apportion_dagbag, "traffic_prediction",
                      {**SMALL, "regions": size, "city_timezone": "Europe/Berlin"}, logical_date=logical_date)
    run = check_workflow_run(mlflow_client, "traffic_prediction", dag_run, size, tmp_path)
    local = "2025-03-03T08:00:00+01:00"
    assert run.data.params["scenario/logical_date"] == local

    logged = json.loads(open(read_artifact(mlflow_client, run.info.run_id, "workload.json", tmp_path)).read())
    rush = build("traffic_prediction", size=size, nodes=SMALL["nodes"], seed=SMALL["seed"], logical_date=local)[0]
    night = build("traffic_prediction", size=size, nodes=SMALL["nodes"], seed=SMALL["seed"],
                  logical_date="2025-03-03T03:00:00+01:00")[0]
    assert logged == json.loads(json.dumps(workload_to_dict(rush)))
    assert logged != json.loads(json.dumps(workload_to_dict(night)))


def test_robust_planning_from_the_trigger_form(apportion_dagbag, airflow_metadata_db, mlflow_client, tmp_path):
    """``robust_scenarios`` in the conf plans against ``noise_sigma``: the run logs the chosen
    plan's p95 makespan under noise beside the nominal pick's, and the rest of the run is as
    usual (verified, simulated, published)."""
    size = 4
    dag_run = run_dag(apportion_dagbag, "multimodal_speech",
                      {**SMALL, "streams": size, "robust_scenarios": 4, "noise_sigma": 0.3})
    run = check_workflow_run(mlflow_client, "multimodal_speech", dag_run, size, tmp_path)
    params, metrics = run.data.params, run.data.metrics
    assert (params["robust/scenarios"], params["robust/noise_sigma"]) == ("4", "0.3")
    assert metrics["robust/makespan"] <= metrics["robust/nominal_choice_makespan"]
    plan = json.loads(open(read_artifact(mlflow_client, run.info.run_id, "plan.json", tmp_path)).read())
    assert plan["settings"]["robust_scenarios"] == 4
    assert plan["robust_metrics"]["makespan"] == metrics["robust/makespan"]


def check_benchmark_run(client, dag_run, algorithms, tmp_path):
    (parent,) = runs_of(client, "allocation_benchmark", dag_run.run_id, "dag_run")
    children = runs_of(client, "allocation_benchmark", dag_run.run_id, "task")
    assert sorted(child.info.run_name for child in children) == sorted(algorithms)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["search/algorithm"] == child.info.run_name
        assert child.data.metrics["evaluation/verified"] == 1.0
        assert {"plan.json", "pareto.csv", "schedule.csv"} <= artifact_names(client, child.info.run_id)
    # Every algorithm solved the same instance.
    assert len({(c.data.params["instance/tasks"], c.data.params["instance/edges"], c.data.params["instance/nodes"])
                for c in children}) == 1

    by_makespan = sorted(children, key=lambda c: (c.data.metrics["plan/makespan"], c.info.run_name))
    assert parent.data.tags["apportion.best_algorithm"] == by_makespan[0].info.run_name
    assert parent.data.tags["apportion.status"] == "finished"
    with open(read_artifact(client, parent.info.run_id, "comparison.csv", tmp_path)) as fh:
        table = list(csv.DictReader(fh))
    assert [row["algorithm"] for row in table] == [c.info.run_name for c in by_makespan]
    assert [float(row["makespan"]) for row in table] == [c.data.metrics["plan/makespan"] for c in by_makespan]
    (event,) = asset_events("apportion://benchmarks/allocation_benchmark", dag_run.run_id)
    assert event["best_algorithm"] == by_makespan[0].info.run_name
    assert event["uri"] == f"{storage_root()}/published/allocation_benchmark/comparison.csv"
    assert os.path.exists(event["uri"].removeprefix("file://"))


def test_benchmark_one_child_run_per_algorithm(apportion_dagbag, airflow_metadata_db, mlflow_client, tmp_path):
    algorithms = ["nsga2", "heft", "round-robin"]
    conf = {"scenario": "multimodal_speech", "size": 4, "nodes": 5, "algorithms": algorithms,
            "population": 12, "generations": 5}
    dag_run = run_dag(apportion_dagbag, "allocation_benchmark", conf)
    check_benchmark_run(mlflow_client, dag_run, algorithms, tmp_path)
    names = {(ti.task_id, ti.map_index): ti.rendered_map_index for ti in dag_run.get_task_instances()
             if ti.task_id in ("allocate", "evaluate_plan")}
    for task_id in ("allocate", "evaluate_plan"):  # mapped tasks named by their algorithm
        assert [names[(task_id, i)] for i in range(len(algorithms))] == algorithms, names


@pytest.mark.slow
def test_benchmark_runs_every_registered_algorithm(apportion_dagbag, airflow_metadata_db, mlflow_client, tmp_path):
    from apportion.core.algorithms import ALGORITHMS, get_allocator

    get_allocator("nsga2")  # loads every algorithm module, filling the registry
    conf = {"scenario": "medical_diagnosis", "size": 4, "nodes": 5, "population": 12, "generations": 5}
    dag_run = run_dag(apportion_dagbag, "allocation_benchmark", conf)
    check_benchmark_run(mlflow_client, dag_run, sorted(ALGORITHMS), tmp_path)

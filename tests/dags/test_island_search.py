"""The island_search DAG: its contract (Params, queues, mapping) and one real dag.test() run
with a real MLflow store."""

from __future__ import annotations

import pytest

DAG_ID = "island_search"
SMALL = {"size": 3, "nodes": 6, "islands": 3, "rounds": 2, "population": 12, "generations": 4, "seed": 5}


@pytest.fixture(scope="module")
def dag(apportion_dagbag):
    return apportion_dagbag.dags[DAG_ID]


def xcoms(dag_id, run_id):
    """Every return value of the run: (task id, map index) -> value."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel.task_id, XComModel.map_index, XComModel.value).filter(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "return_value").all()
    return {(task, index): XComModel.deserialize_value(type("X", (), {"value": value}))
            for task, index, value in rows}


def test_params_queues_and_mapping_are_the_contract(dag):
    import allocation_workflow  # noqa: F401  (dags/ is on sys.path through the bundle)
    from island_search import MAX_ROUNDS

    from apportion.core import islands

    assert MAX_ROUNDS == islands.MAX_ROUNDS
    params = dag.params
    assert (params["islands"], params["rounds"], params["scenario"], params["size"]) == (
        4, 2, "medical_diagnosis", 3)
    tasks = {task.task_id: task for task in dag.tasks}
    searches = {f"search_round_{r}" for r in range(1, MAX_ROUNDS + 1)}
    assert searches <= set(tasks)
    for task_id, task in tasks.items():
        assert task.queue == ("optimizer" if task_id in searches else "default"), task_id
        assert task.is_mapped == (task_id in searches), task_id
    assert tasks["merge_round_1"].upstream_task_ids == {"search_round_1"}
    assert tasks["plan_round_2"].upstream_task_ids == {"merge_round_1"}
    assert tasks["search_round_2"].upstream_task_ids == {"plan_round_2"}
    assert tasks["record"].upstream_task_ids == {f"merge_round_{MAX_ROUNDS}", "build_workload"}


@pytest.mark.parametrize(("conf", "message"), [
    ({"islands": 0}, "less than the minimum"),
    ({"rounds": 4}, "greater than the maximum"),
    ({"islands": "4"}, "is not of type"),
])
def test_bad_values_are_refused_at_trigger(dag, conf, message):
    from airflow.sdk.definitions.param import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with pytest.raises(ParamValidationError, match=message):
        scheduler_dag.params.deep_merge(conf).validate()


def test_a_run_merges_the_islands_and_logs_one_mlflow_run(dag, airflow_metadata_db, mlflow_tracking_uri, tmp_path,
                                                          monkeypatch):
    from mlflow.tracking import MlflowClient

    from apportion.core.api import Settings
    from apportion.core.defaults import objectives_for
    from apportion.core.islands import search_islands
    from apportion.core.model import Instance
    from apportion.operators.inputs import resolve_inputs
    from apportion.operators.islands import worker_hostname
    from apportion.operators.storage import read_json

    monkeypatch.setenv("APPORTION_OUTPUT_ROOT", str(tmp_path / "runs"))
    # Files travel through a storage root apart from the output root: every reader uses the URIs.
    monkeypatch.setenv("APPORTION_STORAGE_URL", (tmp_path / "shared_storage").as_uri())
    dag_run = dag.test(run_conf=SMALL)
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", states
    assert states[("search_round_3", -1)] == "skipped"  # rounds = 2: the third round's islands never expand
    assert {s for key, s in states.items() if key[0] != "search_round_3"} == {"success"}, states

    values = xcoms(DAG_ID, dag_run.run_id)
    for r in (1, 2):
        islands = [values[(f"search_round_{r}", i)] for i in range(SMALL["islands"])]
        assert [i["island"] for i in islands] == [0, 1, 2] and all(i["round"] == r for i in islands)
        assert all(i["hostname"] == worker_hostname() for i in islands)
        assert all(i["front_uri"] == f"{i['artifact_uri']}/front.json" for i in islands)
        merged = values[(f"merge_round_{r}", -1)]
        assert merged["non_dominated"] is True and merged["weakly_dominates_islands"] is True
    final = values[("merge_round_3", -1)]
    assert final["round"] == 2 and final["jobs"] == [] and len(final["history"]) == 2

    # The run's plans are the in-process island search's, bit for bit.
    instance = Instance.build(*resolve_inputs(final["workload"], final["cluster"]))
    objectives = objectives_for(instance.workload)  # none named: the workload's default, as the run used
    assert values[("search_round_1", 0)]["objectives"] == list(objectives)
    here = search_islands(instance, Settings(population=12, generations=4, seed=5, objectives=objectives),
                          islands=3, rounds=2)
    front = read_json(final["front_uri"])
    assert [p["assignment"] for p in front["plans"]] == [p.assignment.tolist() for p in here.plans]

    client = MlflowClient(mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(DAG_ID)
    (run,) = client.search_runs([experiment.experiment_id],
                                filter_string=f"tags.`airflow.dag_run_id` = '{dag_run.run_id}'")
    recorded = values[("record", -1)]
    assert run.info.run_id == recorded["mlflow_run_id"] and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["search/pareto_size"] == len(front["plans"]) == final["pareto_size"]
    assert metrics["merged/non_dominated"] == 1.0 and metrics["merged/weakly_dominates_islands"] == 1.0
    assert {f"island/{i}/hypervolume" for i in range(3)} <= set(metrics)
    assert {"plan.json", "pareto.csv", "front.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    tags = run.data.tags
    assert tags["apportion.artifact_uri"] == recorded["artifact_uri"] and "apportion.artifact_dir" not in tags
    assert recorded["plan_uri"] == f"{recorded['artifact_uri']}/plan.json"
    check_no_worker_paths(dag_run, tags)


def check_no_worker_paths(dag_run, tags):
    """No XCom or MLflow tag names a file by a worker's local path (the island search emits no
    Asset event): fronts, migrants, specs and plans travel as URIs in the storage root, as
    ``test_dag_runs.check_no_worker_paths`` checks for the other DAGs."""
    from tests.dags.test_dag_runs import check_no_worker_paths as check

    check(dag_run, tags, {})

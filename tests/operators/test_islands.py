"""The island search steps without Airflow: real run folders and a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from apportion.core.api import Settings
from apportion.core.errors import SpecError
from apportion.core.islands import search_islands
from apportion.core.model import Instance
from apportion.operators.inputs import build_workload, resolve_inputs
from apportion.operators.islands import island_jobs, merge_round, record_islands, search_island, worker_hostname
from apportion.operators.reuse import plan_id
from apportion.operators.storage import read_json
from apportion.operators.tracking import AirflowRef

RUN = dict(population=12, generations=4, seed=5, objectives=["makespan", "utilization", "imbalance"], select="knee")


def ref(dag_id, task_id, map_index=-1, try_number=1):
    return AirflowRef(dag_id, "manual__1", task_id, map_index=map_index, try_number=try_number,
                      logical_date="2026-01-01T00:00:00+00:00")


def run_round(dag_id, output_root, jobs, previous, number, rounds):
    islands = [search_island(job, **RUN, ref=ref(dag_id, f"search_round_{number}", i), output_root=output_root)
               for i, job in enumerate(jobs)]
    merged = merge_round(previous, islands, round=number, rounds=rounds, **RUN,
                         ref=ref(dag_id, f"merge_round_{number}"), output_root=output_root)
    return islands, merged


@pytest.fixture
def built(tmp_path):
    return build_workload("medical_diagnosis", size=3, nodes=6, seed=5, out_dir=tmp_path / "built")


def test_two_rounds_merge_record_and_match_the_in_process_search(tracking_uri, dag_id, output_root, built):
    jobs = island_jobs(built["workload"], built["cluster"], islands=3, seed=RUN["seed"], objectives=RUN["objectives"])
    islands, first = run_round(dag_id, output_root, jobs, None, 1, rounds=2)
    assert all(i["hostname"] == worker_hostname() and not i["reused"] for i in islands)
    assert all(i["front_uri"] == f"{i['artifact_uri']}/front.json" and i["front_uri"].startswith("file://")
               for i in islands)
    assert first["non_dominated"] and first["weakly_dominates_islands"]
    assert first["weakly_dominates_each_island"] == [True, True, True]
    assert [j["round"] for j in first["jobs"]] == [2, 2, 2]
    assert all(j["migrants_uri"] == first["migrants_uri"] for j in first["jobs"])
    _, second = run_round(dag_id, output_root, first["jobs"], first, 2, rounds=2)
    assert second["jobs"] == [] and second["weakly_dominates_previous"] and second["weakly_dominates_islands"]
    assert second["hypervolume"] >= first["hypervolume"]
    assert merge_round(second, [], round=3, rounds=2, **RUN, ref=ref(dag_id, "merge_round_3"),
                       output_root=output_root) == second  # a round past the last passes through

    # The same islands in one process give the same merged front, bit for bit.
    instance = Instance.build(*resolve_inputs(built["workload"], built["cluster"]))
    here = search_islands(instance, Settings(population=12, generations=4, seed=5), islands=3, rounds=2)
    front = read_json(second["front_uri"])
    assert [p["assignment"] for p in front["plans"]] == [p.assignment.tolist() for p in here.plans]
    assert [p["order"] for p in front["plans"]] == [p.order.tolist() for p in here.plans]

    kwargs = dict(islands=3, rounds=2, scenario_params={"size": 3}, **RUN, output_root=output_root)
    recorded = record_islands(second, ref=ref(dag_id, "record"), **kwargs)
    again = record_islands(second, ref=ref(dag_id, "record", try_number=2), **kwargs)  # a retry
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(dag_id)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == recorded["mlflow_run_id"] == again["mlflow_run_id"]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["search/pareto_size"] == second["pareto_size"] == len(front["plans"])
    assert metrics["merged/non_dominated"] == 1.0 and metrics["merged/weakly_dominates_islands"] == 1.0
    for i in range(3):
        history = client.get_metric_history(run.info.run_id, f"island/{i}/hypervolume")
        assert sorted(m.step for m in history) == [1, 2]
    assert run.data.params["search/islands"] == "3" and run.data.params["scenario/size"] == "3"
    assert {"plan.json", "pareto.csv", "schedule.csv", "front.json"} <= {a.path for a in
                                                                         client.list_artifacts(run.info.run_id)}
    assert recorded["plan_uri"] == f"{recorded['artifact_uri']}/plan.json"
    assert plan_id(read_json(recorded["plan_uri"])) == recorded["plan_id"]
    assert run.data.tags["apportion.artifact_uri"] == recorded["artifact_uri"]
    assert "apportion.artifact_dir" not in run.data.tags


def test_a_retried_island_reuses_its_finished_search(dag_id, output_root, built):
    (job,) = island_jobs(built["workload"], built["cluster"], islands=1, seed=1, objectives=RUN["objectives"])
    first = search_island(job, **RUN, ref=ref(dag_id, "search_round_1", 0), output_root=output_root)
    retried = search_island(job, **RUN, ref=ref(dag_id, "search_round_1", 0, try_number=2), output_root=output_root)
    assert retried["reused"] and {**retried, "reused": False} == first
    other = search_island(job, **{**RUN, "generations": 5}, ref=ref(dag_id, "search_round_1", 0),
                          output_root=output_root)
    assert not other["reused"]


def test_islands_store_under_another_root_and_a_retry_on_another_worker_finds_them(
        dag_id, output_root, built, tmp_path, monkeypatch):
    """With a storage root apart from the output root, every file a later step (or a retry on
    another worker, whose run folder is empty) reads comes through the stored URIs."""
    shared = tmp_path / "shared storage"
    monkeypatch.setenv("APPORTION_STORAGE_URL", f"file://{shared}")
    monkeypatch.setenv("APPORTION_WORKER_HOSTNAME", "optimizer-2")
    monkeypatch.setenv("AIRFLOW__CORE__HOSTNAME_CALLABLE", "apportion.stack.worker_name.worker_hostname")
    jobs = island_jobs(built["workload"], built["cluster"], islands=2, seed=1, objectives=RUN["objectives"])
    islands = [search_island(job, **RUN, ref=ref(dag_id, "search_round_1", i), output_root=output_root)
               for i, job in enumerate(jobs)]
    assert {i["hostname"] for i in islands} == {"optimizer-2"}
    for i in islands:
        assert i["artifact_uri"] == f"file://{shared}/{dag_id}/manual__1/search_round_1.{i['island']}"
        assert (shared / i["artifact_uri"].split(str(shared) + "/")[1] / "island.json").is_file()
    merged = merge_round(None, islands, round=1, rounds=2, **RUN, ref=ref(dag_id, "merge_round_1"),
                         output_root=output_root)
    assert merged["migrants_uri"] == f"file://{shared}/{dag_id}/manual__1/merge_round_1/migrants.json"
    assert read_json(merged["migrants_uri"])["plans"]

    # A retry on another worker: no run folder there, the stored result is found and reused.
    other_root = tmp_path / "other worker"
    retried = search_island(jobs[0], **RUN, ref=ref(dag_id, "search_round_1", 0, try_number=2),
                            output_root=other_root)
    assert retried["reused"] and {**retried, "reused": False} == islands[0]
    assert not Path(other_root, dag_id, "manual__1", "search_round_1.0", "island.json").exists()


@pytest.mark.parametrize(("change", "field"), [
    ({"population": 2}, "population"),
    ({"objectives": ["speed"]}, "objectives"),
    ({"select": "best"}, "select"),
])
def test_bad_settings_are_one_error_naming_the_field(dag_id, output_root, built, change, field):
    (job,) = island_jobs(built["workload"], built["cluster"], islands=1, seed=1, objectives=RUN["objectives"])
    with pytest.raises(SpecError) as error:
        search_island(job, **{**RUN, **change}, ref=ref(dag_id, "search_round_1", 0), output_root=output_root)
    assert error.value.field == field


def test_bad_island_counts_are_refused(built):
    with pytest.raises(SpecError, match="islands"):
        island_jobs(built["workload"], built["cluster"], islands=0, seed=1, objectives=RUN["objectives"])
    assert np.all(np.diff([j["island"] for j in island_jobs(built["workload"], built["cluster"], islands=4, seed=1,
                                                             objectives=RUN["objectives"])]) == 1)


def test_no_objectives_named_means_the_workloads_default(built):
    from apportion.core.defaults import objectives_for

    workload, _ = resolve_inputs(built["workload"], built["cluster"])
    (job,) = island_jobs(built["workload"], built["cluster"], islands=1, seed=1, objectives=[])
    assert job["objectives"] == list(objectives_for(workload))

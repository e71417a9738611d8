"""The allocation step against a real (sqlite) MLflow store: what lands in the run folder and
in MLflow, retries, unreachable servers and nesting."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from apportion.operators.allocating import allocate
from apportion.operators.publishing import record_run
from apportion.operators.tracking import AirflowRef, TrackingUnavailable
from tests.operators.conftest import SMALL

FILES = {"plan.json", "pareto.csv", "schedule.csv", "pareto.html", "pareto.png", "gantt.png",
         "workload.json", "cluster.json", "result.json"}


def ref(dag_id, try_number=1, task_id="allocate", run_id="manual__2026-01-01", map_index=-1):
    return AirflowRef(dag_id, run_id, task_id, map_index=map_index, try_number=try_number,
                      logical_date="2026-01-01T00:00:00+00:00", task_url="http://airflow/x")


def all_runs(uri, dag_id):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(dag_id)
    return client, client.search_runs([experiment.experiment_id])


def test_allocation_is_logged_with_metrics_steps_and_artifacts(tracking_uri, dag_id, output_root):
    summary = allocate(**SMALL, output_root=output_root, ref=ref(dag_id))

    folder = output_root / dag_id / "manual__2026-01-01" / "allocate"
    assert summary["artifact_uri"] == folder.resolve().as_uri()
    assert (summary["plan_uri"], summary["workload"]) == ((folder / "plan.json").resolve().as_uri(),
                                                         (folder / "workload.json").resolve().as_uri())
    assert FILES <= {p.name for p in folder.iterdir()}
    client, runs = all_runs(tracking_uri, dag_id)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_id == summary["mlflow_run_id"]
    assert run.info.run_name == "manual__2026-01-01"
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["airflow.dag_id"] == dag_id and tags["airflow.dag_run_id"] == "manual__2026-01-01"
    assert tags["airflow.try_number"] == "1" and tags["airflow.task_url"] == "http://airflow/x"
    assert tags["airflow.logical_date"].startswith("2026-01-01")
    assert tags["apportion.plan_id"] == summary["plan_id"]

    params = run.data.params
    assert (params["search/algorithm"], params["search/population"], params["search/generations"]) == (
        "nsga2", "20", "10")
    assert params["scenario/name"] == "medical_diagnosis" and params["scenario/size"] == "3"
    cluster = json.loads((folder / "cluster.json").read_text())
    assert int(params["instance/nodes"]) == len(cluster["nodes"]) == 5
    kinds = {n["kind"] for n in cluster["nodes"]}
    assert sum(int(params[f"instance/nodes_{k}"]) for k in kinds) == 5

    metrics = run.data.metrics
    plan = json.loads((folder / "plan.json").read_text())
    for name in ("makespan", "utilization", "imbalance", "jain_fairness", "completion_spread", "throughput",
                 "mean_response", "p95_response"):
        assert metrics[f"plan/{name}"] == pytest.approx(plan["metrics"][name])
    assert metrics["plan/makespan"] == pytest.approx(summary["makespan"])
    assert metrics["search/pareto_size"] == summary["pareto_size"] == sum(1 for _ in open(folder / "pareto.csv")) - 1
    assert 0 < metrics["search/share_of_task"] <= 1
    assert metrics["search/evaluations_per_second"] == pytest.approx(
        metrics["search/evaluations"] / metrics["search/seconds"])
    # Every metric and param sits in one of the documented namespaces (docs/tracking.md).
    assert {key.split("/")[0] for key in metrics} == {"plan", "search", "convergence"}
    assert {key.split("/")[0] for key in params} == {"search", "instance", "scenario", "warm_start"}
    # The system tags MLflow's UI shows as source and user, and the specs as input datasets.
    assert (tags["mlflow.source.type"], tags["mlflow.source.name"]) == ("JOB", f"airflow:{dag_id}.allocate")
    assert tags["mlflow.user"]
    inputs = {[t.value for t in d.tags][0]: d.dataset for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"workload", "cluster"}
    assert json.loads(inputs["cluster"].profile)["nodes"] == 5
    assert json.loads(inputs["workload"].source)["uri"] == f"runs:/{run.info.run_id}/workload.json"

    history = json.loads((folder / "result.json").read_text())["history"]
    assert len(history) >= 10
    curve = client.get_metric_history(run.info.run_id, "convergence/hypervolume")
    assert sorted(m.step for m in curve) == sorted(h["generation"] for h in history)
    # One reference box for the curve and the reported value, recorded with the run.
    assert max(curve, key=lambda m: m.step).value == metrics["search/hypervolume"]
    box = json.loads((folder / "result.json").read_text())["summary"]["reference_box"]
    assert params["search/reference_box/id"] == box["id"]
    assert float(params["search/reference_box/utilization/ideal"]) == 1.0
    assert float(params["search/reference_box/mean_response/nadir"]) == box["objectives"]["mean_response"]["nadir"]
    # No objectives named: the medical cases arrive over time, so response time replaces makespan.
    assert params["search/objectives"] == "mean_response,utilization,imbalance"

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert FILES <= artifacts


def test_retry_resumes_the_run_and_reuses_the_result(tracking_uri, dag_id, output_root):
    first = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, try_number=1))
    plan_file = output_root / dag_id / "manual__2026-01-01" / "allocate" / "plan.json"
    written = plan_file.stat().st_mtime_ns
    second = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, try_number=2))

    assert not first["reused"] and second["reused"]
    assert second["mlflow_run_id"] == first["mlflow_run_id"]
    assert second["plan_id"] == first["plan_id"]
    assert plan_file.stat().st_mtime_ns == written
    client, runs = all_runs(tracking_uri, dag_id)
    assert len(runs) == 1
    assert runs[0].data.tags["airflow.try_number"] == "2"
    curve = client.get_metric_history(first["mlflow_run_id"], "convergence/hypervolume")
    assert len(curve) == len({m.step for m in curve})  # not logged twice


def test_other_settings_are_recomputed_not_reused(tracking_uri, dag_id, output_root):
    first = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, run_id="r1"))
    other = allocate(**{**SMALL, "seed": 5}, output_root=output_root, ref=ref(dag_id, run_id="r1", try_number=2))
    assert not other["reused"] and other["seed"] == 5 and first["seed"] == 0


def test_robust_allocation_logs_its_plan_beside_the_nominal_choice(tracking_uri, dag_id, output_root):
    """A robust allocation logs its settings and
    the chosen plan's p95 makespan under noise beside the nominal pick's, which it never exceeds;
    a nominal allocation logs none of that."""
    summary = allocate(**SMALL, robust_scenarios=6, noise_sigma=0.4, output_root=output_root,
                       ref=ref(dag_id, run_id="robust"))
    client = MlflowClient(tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    params, metrics = run.data.params, run.data.metrics
    assert (params["robust/scenarios"], params["robust/noise_sigma"], params["robust/statistic"]) == ("6", "0.4", "p95")
    assert params["robust/validation"] == "1000"
    assert metrics["robust/makespan"] == summary["robust_makespan"]
    assert metrics["robust/makespan"] <= metrics["robust/nominal_choice_makespan"]
    assert metrics["robust/makespan"] > metrics["plan/makespan"]  # p95 under sigma 0.4 noise, against the plan
    plan = json.loads((output_root / dag_id / "robust" / "allocate" / "plan.json").read_text())
    assert plan["robust_metrics"]["makespan"] == metrics["robust/makespan"]

    nominal = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, run_id="nominal"))
    nominal_run = client.get_run(nominal["mlflow_run_id"])
    assert nominal["robust_makespan"] is None and "robust/scenarios" not in nominal_run.data.params
    assert not any(key.startswith("robust/") for key in nominal_run.data.metrics)


def test_unreachable_server_fails_clearly_and_keeps_the_results(tracking_uri, dag_id, output_root, closed_port_uri):
    with pytest.raises(TrackingUnavailable) as caught:
        allocate(**SMALL, output_root=output_root, ref=ref(dag_id), tracking_uri=closed_port_uri, tracking_attempts=2)
    message = str(caught.value)
    folder = output_root / dag_id / "manual__2026-01-01" / "allocate"
    assert closed_port_uri in message and str(folder) in message
    assert FILES <= {p.name for p in folder.iterdir()}

    # The retry (here against a reachable store) uploads what the first try computed.
    retried = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, try_number=2))
    assert retried["reused"]
    client, runs = all_runs(tracking_uri, dag_id)
    assert len(runs) == 1
    assert FILES <= {a.path for a in client.list_artifacts(runs[0].info.run_id)}


def test_nested_allocations_are_children_of_the_dag_run(tracking_uri, dag_id, output_root):
    results = [
        allocate(**{**SMALL, "algorithm": algorithm}, nested=True, output_root=output_root,
                 ref=ref(dag_id, task_id="benchmark", map_index=i))
        for i, algorithm in enumerate(["nsga2", "greedy"])
    ]
    again = allocate(**{**SMALL, "algorithm": "greedy"}, nested=True, output_root=output_root,
                     ref=ref(dag_id, task_id="benchmark", map_index=1, try_number=2))
    assert again["mlflow_run_id"] == results[1]["mlflow_run_id"]

    client, runs = all_runs(tracking_uri, dag_id)
    parents = [r for r in runs if r.data.tags.get("apportion.role") == "dag_run"]
    children = [r for r in runs if r.data.tags.get("apportion.role") == "task"]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.run_name for r in children} == {"nsga2", "greedy"}
    assert {r.data.params["search/algorithm"] for r in children} == {"nsga2", "greedy"}

    recorded = record_run(results)
    assert recorded["mlflow_run_id"] == parents[0].info.run_id
    parent = client.get_run(parents[0].info.run_id)
    assert parent.info.status == "FINISHED"
    best = min(results, key=lambda r: (r["makespan"], r["algorithm"]))  # ties by name, as publishing ranks them
    assert parent.data.tags["apportion.best_algorithm"] == best["algorithm"]

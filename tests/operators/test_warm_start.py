"""A run starts from the plan and front the previous run published: the front seeds the search,
tasks remember their previous node, and what changed is logged to MLflow."""

from __future__ import annotations

import csv
import json

import pytest
from mlflow.tracking import MlflowClient

from apportion.operators.allocating import allocate
from apportion.operators.chosen_plan import evaluate_plan
from apportion.operators.inputs import snapshot_cluster
from apportion.operators.paths import published_front_uri
from apportion.operators.publishing import publish_plan
from apportion.operators.tracking import AirflowRef
from apportion.operators.warm_start import FRONT_VERSION, front_problem, previous_front
from tests.operators.conftest import SMALL, local


def ref(dag_id, run_id):
    return AirflowRef(dag_id, run_id, "allocate", logical_date="2026-01-01T00:00:00+00:00")


def run_and_publish(dag_id, run_id, output_root, **kwargs):
    """allocate -> evaluate -> publish, as a workflow DAG run does."""
    allocation = allocate(**{**SMALL, **kwargs}, output_root=output_root, ref=ref(dag_id, run_id), warm_start=True)
    evaluation = evaluate_plan(allocation)
    publish_plan(allocation, evaluation, dag_id=dag_id, output_root=output_root)
    return allocation


def plan_nodes(allocation) -> dict[str, str]:
    plan = json.loads(open(local(allocation["plan_uri"])).read())
    return {t["task"]: t["node"] for t in plan["tasks"]}


def mlflow_run(uri, allocation):
    return MlflowClient(uri).get_run(allocation["mlflow_run_id"])


def test_the_next_run_starts_from_the_published_plan_and_logs_what_changed(tracking_uri, dag_id, output_root):
    first = run_and_publish(dag_id, "scheduled__1", output_root)
    assert first["warm_start"] is False  # nothing published yet
    first_run = mlflow_run(tracking_uri, first)
    assert first_run.data.params["warm_start/enabled"] == "false"
    assert "warm_start/moved_tasks" not in first_run.data.metrics

    published = previous_front(dag_id, output_root)
    assert published["source"]["mlflow_run_id"] == first["mlflow_run_id"]
    assert published["plan_id"] == first["plan_id"] and len(published["plans"]) == first["pareto_size"]

    second = run_and_publish(dag_id, "scheduled__2", output_root)
    run = mlflow_run(tracking_uri, second)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["warm_start/enabled"] == "true" and params["warm_start/source"] == first["mlflow_run_id"]
    assert tags["apportion.warm_start"] == "true" and tags["apportion.warm_start_source"] == first["mlflow_run_id"]
    assert metrics["warm_start/plans"] == first["pareto_size"]

    before, after = plan_nodes(first), plan_nodes(second)
    moved = sum(before[task] != after[task] for task in after)
    assert metrics["warm_start/moved_tasks"] == moved == second["moved_tasks"]
    assert metrics["warm_start/moved_share"] == pytest.approx(moved / len(after))
    first_metrics = mlflow_run(tracking_uri, first).data.metrics
    for name in ("makespan", "utilization", "imbalance", "p95_response"):
        assert metrics[f"warm_start/delta/{name}"] == pytest.approx(
            metrics[f"plan/{name}"] - first_metrics[f"plan/{name}"], abs=1e-9)
    # The same instance both times: the carried-over previous plan is worth exactly what it was.
    assert metrics["warm_start/previous_plan_mean_response"] == first_metrics["plan/weighted_mean_response"]
    # The plan with previous nodes re-evaluates from its files like any other.
    assert evaluate_plan(second)["verified"]


def test_the_published_front_seeds_the_search(tracking_uri, dag_id, output_root):
    """A 4 x 1 search seeded with a front from a 40 x 40 search keeps that front's plans: with
    the migrations objective, the old chosen plan (no task moved) is on the new front."""
    first = run_and_publish(dag_id, "scheduled__1", output_root, population=40, generations=40)
    second = allocate(**{**SMALL, "population": 4, "generations": 1}, output_root=output_root,
                      ref=ref(dag_id, "scheduled__2"), warm_start=True, migration_objective=True)
    # The medical cases arrive over time: the default objectives are the response-time ones.
    assert set(second["objectives"]) == {"mean_response", "utilization", "imbalance", "migrations"}
    with open(local(second["artifact_uri"]) / "pareto.csv") as fh:
        front = list(csv.DictReader(fh))
    unmoved = [row for row in front if float(row["moved"]) == 0]
    assert unmoved, "the previous chosen plan (0 moves) should be on the front"
    old = first["objectives"]
    assert any(float(row["mean_response"]) <= old["mean_response"] and float(row["utilization"]) >= old["utilization"]
               and float(row["imbalance"]) <= old["imbalance"] for row in unmoved)


def test_vanished_tasks_and_nodes_down_fall_back_to_heft(tracking_uri, dag_id, output_root, tmp_path):
    scenario = {"size": 3, "nodes": 8, "seed": 1}  # two nodes of each kind in the hospital
    first = run_and_publish(dag_id, "scheduled__1", output_root, scenario_params=scenario)
    before = plan_nodes(first)
    # A used node with a twin of its kind and zone (hospital/a6000-0 and -1), so its work can move.
    down = next(node for node in sorted(set(before.values())) if node.startswith("hospital/") and node.endswith("-0"))
    grown = {**scenario, "size": 4}
    cluster = snapshot_cluster(scenario="medical_diagnosis", **grown, nodes_down=[down], out_dir=tmp_path)
    assert cluster["nodes_down"] == [down] and cluster["nodes_failed"] == 1
    second = allocate(**{**SMALL, "scenario_params": grown}, cluster=cluster,
                      output_root=output_root, ref=ref(dag_id, "scheduled__2"), warm_start=True)
    after = plan_nodes(second)
    assert down not in after.values()
    assert len(after) > len(before)  # a fourth case arrived
    workload = json.loads(open(local(second["workload"])).read())
    previous = {t["id"]: t.get("previous_node") for t in workload["tasks"]}
    # Remembered: tasks of the last plan whose node is still up; new tasks and those on the
    # failed node have no previous node (they move without it counting as a migration).
    assert previous == {task: before[task] if before.get(task) not in (None, down) else None for task in after}
    moved = sum(1 for task, node in after.items() if previous[task] is not None and node != previous[task])
    assert second["moved_tasks"] == moved
    assert evaluate_plan(second)["verified"]


def test_an_unreadable_front_means_a_cold_start(tracking_uri, dag_id, output_root):
    run_and_publish(dag_id, "scheduled__1", output_root)
    local(published_front_uri(dag_id, output_root)).write_text("{not json")
    second = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, "scheduled__2"), warm_start=True)
    assert second["warm_start"] is False and second["moved_tasks"] is None


def test_warm_start_off_ignores_the_published_front(tracking_uri, dag_id, output_root):
    run_and_publish(dag_id, "scheduled__1", output_root)
    second = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, "scheduled__2"), warm_start=False)
    assert second["warm_start"] is False
    assert mlflow_run(tracking_uri, second).data.params["warm_start/enabled"] == "false"


GOOD_FRONT = {"version": FRONT_VERSION, "tasks": ["a", "b"], "nodes": ["n"], "chosen": 0,
              "plans": [{"assignment": [0, 0], "order": [1, 0]}]}


@pytest.mark.parametrize("front", [
    [], "text", {**GOOD_FRONT, "version": 99}, {**GOOD_FRONT, "tasks": "ab"}, {**GOOD_FRONT, "chosen": 1},
    {**GOOD_FRONT, "chosen": True}, {**GOOD_FRONT, "plans": []}, {**GOOD_FRONT, "plans": [{"assignment": [0]}]},
    {**GOOD_FRONT, "plans": [{"assignment": [0, 1], "order": [1, 0]}]},
    {**GOOD_FRONT, "plans": [{"assignment": [0, 0], "order": [0, 0]}]},
    {**GOOD_FRONT, "plans": [{"assignment": [0, 0], "order": [0, 2]}]},
])
def test_a_front_of_another_shape_means_a_cold_start_not_a_traceback(dag_id, output_root, front):
    path = local(published_front_uri(dag_id, output_root))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(GOOD_FRONT))
    assert previous_front(dag_id, output_root) == GOOD_FRONT
    path.write_text(json.dumps(front))
    assert front_problem(front) is not None and previous_front(dag_id, output_root) is None


def test_a_front_that_cannot_be_read_means_a_cold_start(dag_id, output_root):
    path = local(published_front_uri(dag_id, output_root))
    path.mkdir(parents=True)  # a folder where the file should be: reading it fails
    assert previous_front(dag_id, output_root) is None

"""Airflow standalone and the MLflow server, started by the demo's own functions (apportion.stack)
with a throwaway state dir and free ports: a DAG run triggered through the REST API v2 lands in
MLflow, a bad conf is refused at trigger time, and the shutdown leaves no process behind.

The tests share one pair of servers (starting them takes 30-90 s here) and run in file order:
the last one stops the servers. The schedules are on, as in the demo: unpausing the DAG also
brings its scheduled run (default Params), which the triggered run waits for
(``max_active_runs=1``). About four to five minutes in all.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from apportion.stack.airflow_client import AirflowClient, ApiError, quote_part, run_seconds
from apportion.stack.demo import wait_warmup
from apportion.stack.processes import ProcessTree, free_port, stop_servers
from apportion.stack.servers import start_airflow, start_mlflow, start_numba_warmup, wait_healthy
from tests.dags.test_dag_runs import ENACTMENT_TASKS
from tests.integration.enacted import check_edges_between_units, enacted_results

pytestmark = pytest.mark.integration

DAG_ID = "medical_diagnosis"
SMALL_CONF = {"cases": 10, "nodes": 6, "population": 20, "generations": 10, "seed": 3}
TRAFFIC = "traffic_prediction"
TRAFFIC_CONF = {"regions": 4, "nodes": 2, "population": 20, "generations": 10, "seed": 3}


@dataclass
class Stack:
    state_dir: Path
    mlflow: ProcessTree
    airflow: ProcessTree
    trees: list[ProcessTree]
    client: AirflowClient


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("demo-state")
    mlflow = start_mlflow(state_dir, free_port())
    trees = [mlflow]
    try:
        airflow = start_airflow(state_dir, free_port(), mlflow.url)
        trees.append(airflow)
        warmup = start_numba_warmup(state_dir)
        trees.append(warmup)
        wait_healthy([mlflow, airflow], timeout=240)
        client = AirflowClient(airflow.url, state_dir / "airflow")
        client.wait_for_dags([DAG_ID, TRAFFIC])
        wait_warmup(warmup)
        yield Stack(state_dir, mlflow, airflow, trees, client)
    finally:
        stop_servers(trees)  # a no-op once test_shutdown_leaves_no_process has run


def test_bad_conf_is_refused_at_trigger_time(stack):
    before = len(stack.client.dag_runs(DAG_ID))
    for conf, field in (({"cases": 0}, "cases"), ({"population": "20"}, "population"),
                        ({"select": "best"}, "select")):
        with pytest.raises(ApiError) as refused:
            stack.client.trigger(DAG_ID, conf)
        assert refused.value.status == 400, conf
        assert field in json.dumps(refused.value.detail), (conf, refused.value.detail)
    assert len(stack.client.dag_runs(DAG_ID)) == before


def test_triggered_run_is_tracked_in_mlflow(stack, tmp_path):
    from mlflow.tracking import MlflowClient

    client = stack.client
    client.unpause(DAG_ID)
    run_id = client.trigger(DAG_ID, SMALL_CONF)
    run = client.wait_for_runs({DAG_ID: run_id}, timeout=600)[DAG_ID]
    tasks = {t["task_id"]: t["state"] for t in client.task_instances(DAG_ID, run_id)}
    assert run["state"] == "success", tasks
    enactment = {task for task in tasks if task.startswith(ENACTMENT_TASKS)}
    assert enactment, tasks  # the form's default is plan only: the enactment and calibration are there, skipped
    assert {tasks[task] for task in enactment} == {"skipped"}, tasks
    assert {state for task, state in tasks.items() if task not in enactment} == {"success"}, tasks
    assert run["conf"] == SMALL_CONF
    assert run_seconds(run) > 0
    allocation = client.xcom(DAG_ID, run_id, "allocate")

    mlflow = MlflowClient(tracking_uri=stack.mlflow.url)
    experiment = mlflow.get_experiment_by_name(DAG_ID)
    found = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`airflow.dag_id` = '{DAG_ID}' and tags.`airflow.dag_run_id` = '{run_id}'")
    assert [r.info.run_id for r in found] == [allocation["mlflow_run_id"]]
    tracked = found[0]
    assert tracked.info.status == "FINISHED"
    assert tracked.data.tags["apportion.verified"] == "true"
    assert tracked.data.tags["apportion.plan_id"] == allocation["plan_id"]
    params = tracked.data.params
    assert (params["scenario/size"], params["scenario/nodes"], params["scenario/seed"]) == ("10", "6", "3")
    assert (params["search/population"], params["search/generations"]) == ("20", "10")
    metrics = tracked.data.metrics
    assert metrics["plan/makespan"] == pytest.approx(allocation["makespan"])
    assert metrics["plan/makespan"] > 0
    assert 0 < metrics["plan/utilization"] <= 1
    assert metrics["search/pareto_size"] == allocation["pareto_size"] >= 1
    assert metrics["evaluation/verified"] == 1.0
    history = mlflow.get_metric_history(tracked.info.run_id, "convergence/hypervolume")
    assert len({point.step for point in history}) >= SMALL_CONF["generations"]

    names = {artifact.path for artifact in mlflow.list_artifacts(tracked.info.run_id)}
    assert {"plan.json", "pareto.csv", "schedule.csv", "workload.json", "cluster.json",
            "evaluation.json"} <= names
    local = Path(mlflow.download_artifacts(tracked.info.run_id, "", str(tmp_path)))
    plan = json.loads((local / "plan.json").read_text())
    workload = json.loads((local / "workload.json").read_text())
    cluster = json.loads((local / "cluster.json").read_text())
    assert len(cluster["nodes"]) == SMALL_CONF["nodes"]
    node_names = {node["id"] if isinstance(node, dict) else node for node in cluster["nodes"]}
    assert sorted(t["task"] for t in plan["tasks"]) == sorted(t["id"] for t in workload["tasks"])
    assert {t["node"] for t in plan["tasks"]} <= node_names
    assert plan["metrics"]["makespan"] == pytest.approx(metrics["plan/makespan"])
    assert max(t["end"] for t in plan["tasks"]) == pytest.approx(metrics["plan/makespan"])


def _enacted_run(client, dag_id: str, conf: dict) -> tuple[str, dict, list]:
    """Trigger a 'plan and run' of ``dag_id`` (unpaused), wait for it to succeed; its run id, task
    instances by (task id, map index) and enactment assignments."""
    client.unpause(dag_id)
    run_id = client.trigger(dag_id, {**conf, "enact": "plan and run"})
    run = client.wait_for_runs({dag_id: run_id}, timeout=600)[dag_id]
    rows = client.request("GET", f"/dags/{quote_part(dag_id)}/dagRuns/{quote_part(run_id)}/taskInstances?limit=100")
    tasks = {(t["task_id"], t["map_index"]): t for t in rows["task_instances"]}
    assert run["state"] == "success", {key: t["state"] for key, t in tasks.items()}
    return run_id, tasks, client.xcom(dag_id, run_id, "prepare_enactment")


def test_enacted_steps_run_in_their_nodes_pools_under_the_scheduler(stack):
    """'plan and run' under the scheduler and LocalExecutor: the placement policy (loaded from
    the package's entry point) put every step instance in its node's pool and queue, the pools
    exist with the node's slots, and each step saw its node's queue."""
    from apportion.operators.steps import WORKFLOW_STEPS

    client = stack.client
    run_id, tasks, assignments = _enacted_run(client, DAG_ID, {**SMALL_CONF, "enact_units": 2})
    pools = {p["name"]: p["slots"] for p in client.request("GET", "/pools?limit=100")["pools"]}
    for step in WORKFLOW_STEPS[DAG_ID]:
        for index, assignment in enumerate(assignments):
            placed, row = assignment["steps"][step], tasks[(f"enact.{step}", index)]
            assert (row["state"], row["pool"], row["queue"]) == ("success", placed["pool"], placed["queue"])
            assert pools[placed["pool"]] == 1
            assert client.xcom(DAG_ID, run_id, f"enact.{step}", map_index=index)["realised"]["queue"] == placed["queue"]


def test_enacted_steps_wait_for_other_units_in_the_triggerer(stack):
    """traffic_prediction enacts 3 regions under the scheduler and LocalExecutor: each region's
    forecast reads its neighbours' ingest; one that started before them was deferred (standalone's
    triggerer) and resumed on try 1. Every step ran once, after its inputs from other regions."""
    from apportion.operators.steps import WORKFLOW_STEPS

    client = stack.client
    run_id, tasks, assignments = _enacted_run(client, TRAFFIC, {**TRAFFIC_CONF, "enact_units": 3})
    results = enacted_results(client, TRAFFIC, run_id, assignments)
    assert len(results) == 3 * len(WORKFLOW_STEPS[TRAFFIC])
    for index, assignment in enumerate(assignments):
        for step, placed in assignment["steps"].items():
            row = tasks[(f"enact.{step}", index)]
            assert (row["state"], row["try_number"], row["pool"]) == ("success", 1, placed["pool"])
    check_edges_between_units(assignments, results)


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


def test_shutdown_leaves_no_process(stack):
    for tree in stack.trees:
        tree.processes()
    seen = list({proc.pid: proc for tree in stack.trees for proc in tree.seen.values()}.values())
    assert len(seen) > 8  # standalone's components, executor workers, tasks, MLflow
    left = stop_servers(stack.trees)
    assert left == []
    survivors = []
    for proc in seen:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                survivors.append((proc.pid, proc.cmdline()))
        except psutil.NoSuchProcess:
            pass
    assert survivors == []
    assert not _port_open(stack.airflow.url)
    assert not _port_open(stack.mlflow.url)

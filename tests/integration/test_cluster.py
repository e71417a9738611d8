"""``apportion cluster`` on the real services: a database of its own in PostgreSQL, Redis as the
Celery broker, API server, scheduler, DAG processor, three Celery workers (one on ``default``,
two on ``optimizer``) and MLflow on PostgreSQL, started by ``apportion.stack.cluster``.

The island DAG with K=4 runs its light steps on the ``default`` worker and its islands on the
``optimizer`` workers, each task instance recording its queue and its worker's hostname; the
merged front is non-dominated and weakly dominates every island's front; the DAG run's one
MLflow run is a row of the PostgreSQL backend. Then a worker is killed (SIGKILL to its whole
process tree) while it runs an island: the scheduler finds the task without heartbeat, the
retry runs on the other optimizer worker, the DAG run succeeds with one MLflow run and every
island's front. ``apportion cluster down`` then stops everything and no process is left; the
database and the broker's keys are dropped even when a test fails.

The cluster also has one worker per node of traffic_prediction's two-node city cluster
(``--node-workers``: ``district-0/orin-0`` and ``metro/xeon16-0``, each serving only its
``node-<ID>`` queue). ``traffic_prediction`` enacted with 2 regions runs every step instance on
try 1 in its node's queue and pool, on its node's worker, both nodes used, with one MLflow run;
``multimodal_speech``, whose plan uses nodes without a worker, is refused by
``prepare_enactment`` on try 1 (one line naming the node and its queue) and no step runs.
Last, ``traffic_prediction`` enacts 4 regions and the metro node's worker is killed mid-step:
``watch_enactment`` re-plans, the cluster's ``ReroutingCeleryExecutor`` routes the killed step's
retry and the waiting steps to the district node's worker, every step succeeds once.

The tests share one cluster and run in file order. The scheduler's heartbeat timeout is 30 s
here (default 300) so that the killed worker's task is retried within the test; the scheduler
creates no scheduled runs (``use_job_schedule`` off), so the unpaused workflow DAGs run only
what the tests trigger.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

from apportion.stack.airflow_client import AirflowClient
from apportion.stack.processes import free_port
from tests.integration.enacted import check_edges_between_units, enacted_results

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "island_search"
ISLANDS = 4
CONF = {"scenario": "traffic_prediction", "size": 3, "nodes": 6, "islands": ISLANDS, "rounds": 1,
        "population": 16, "generations": 10, "seed": 5}
# Islands long enough to be killed mid-search.
LONG_CONF = {**CONF, "seed": 6, "size": 8, "population": 40, "generations": 400}
WORKER_QUEUES = (("default",), ("optimizer",), ("optimizer",))
TRAFFIC, SPEECH = "traffic_prediction", "multimodal_speech"
ENACTED_CONF = {"nodes": 2, "population": 16, "generations": 10, "seed": 3, "samples": 50, "warm_start": False,
                "enact": "plan and run", "enact_units": 2}
HEARTBEAT_TIMEOUT = 30
APPORTION = str(Path(sys.executable).with_name("apportion"))


def _services_answer() -> bool:
    from apportion.stack.cluster import POSTGRES_URL, REDIS_URL, ClusterConfig, ClusterError, check_services

    try:
        check_services(ClusterConfig(Path("."), POSTGRES_URL, REDIS_URL))
    except ClusterError:
        return False
    return True


@pytest.fixture(scope="module")
def cluster():
    from apportion.stack import cluster as stack_cluster

    if not _services_answer():
        pytest.fail("PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must run for the cluster tests")
    name = f"apportion_test_{uuid.uuid4().hex[:10]}"
    # Not under pytest's basetemp: another pytest run on the machine may prune it while the cluster runs.
    state_dir = Path(tempfile.mkdtemp(prefix="apportion-cluster-"))
    scenario = state_dir / "scenario"
    subprocess.run([APPORTION, "scenario", TRAFFIC, "--size", "2", "--nodes", str(ENACTED_CONF["nodes"]),
                    "--out", str(scenario)], check=True, capture_output=True, timeout=120)
    config = stack_cluster.ClusterConfig(
        state_dir=state_dir, airflow_database=name, mlflow_database=f"{name}_mlflow",
        worker_queues=WORKER_QUEUES, api_port=free_port(), mlflow_port=free_port(), parallelism=4,
        node_workers=stack_cluster.node_workers_from_spec(scenario / "cluster.yaml"),
        airflow_settings={"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                          "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                          "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    try:
        running = stack_cluster.start_cluster(config, say=lambda line: print(line, flush=True), timeout=420)
        client = AirflowClient(running.api_url, running.airflow_home)
        client.wait_for_dags([DAG_ID, TRAFFIC, SPEECH], timeout=180)
        for dag_id in (DAG_ID, TRAFFIC, SPEECH):
            client.unpause(dag_id)
        yield running, client
    finally:
        left = stack_cluster.stop_cluster(config.state_dir)
        for database in (config.airflow_database, config.mlflow_database):
            stack_cluster.drop_database(config.postgres_url, database)
        _drop_broker_keys(config)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert left == []


def _drop_broker_keys(config) -> None:
    import redis

    broker = redis.Redis.from_url(config.redis_url)
    for key in broker.scan_iter(match=f"{config.broker_prefix}*"):
        broker.delete(key)


def _task_instances(client: AirflowClient, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
    return client.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]


def _worker_hostnames(running) -> dict[tuple[str, ...], set[str]]:
    from apportion.stack.cluster import worker_hostname

    hostnames: dict[tuple[str, ...], set[str]] = {}
    for index, queues in enumerate(running.config.worker_queues):
        hostnames.setdefault(queues, set()).add(worker_hostname(index))
    return hostnames


def _mlflow_query(running, query: str, *args) -> list[tuple]:
    """The rows of ``query`` on the MLflow backend store in PostgreSQL."""
    from apportion.stack.cluster import _postgres

    connection = _postgres(running.config.postgres_url, running.config.mlflow_database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall()
    finally:
        connection.close()


def _mlflow_runs(running, run_id: str) -> list[tuple[str, str]]:
    """(run id, status) of every MLflow run tagged with the DAG run, read from PostgreSQL."""
    return _mlflow_query(running, "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                  "WHERE t.key = 'airflow.dag_run_id' AND t.value = %s "
                                  "AND r.lifecycle_stage = 'active'", run_id)


def _front_matrix(uri: str, objectives: list[str], instance) -> tuple:
    """(F in minimisation form, constraint violation) of a stored front.json (read through
    ``ObjectStoragePath``, as a worker on another host would), its plans re-evaluated."""
    import numpy as np
    from airflow.sdk import ObjectStoragePath

    from apportion.core.evaluate import Evaluator
    from apportion.core.islands import violation_of
    from apportion.core.pareto import objective_matrix

    assert "://" in uri, f"{uri} is not a storage URI"
    front = json.loads(ObjectStoragePath(uri).read_text())
    assignment = np.array([p["assignment"] for p in front["plans"]], dtype=np.int32)
    order = np.array([p["order"] for p in front["plans"]], dtype=np.int32)
    stats = Evaluator(instance).stats(assignment, order)
    return objective_matrix(stats, objectives), violation_of(instance, stats)


def _check_merged_front(client: AirflowClient, run_id: str) -> dict:
    """The merged front is non-dominated and weakly dominates each island's front (plans of less
    constraint violation win; among equal violation, no worse in every objective)."""
    import numpy as np

    from apportion.core.model import Instance
    from apportion.operators.inputs import resolve_inputs

    merged = client.xcom(DAG_ID, run_id, "merge_round_1")
    summaries = [_mapped_xcom(client, run_id, "search_round_1", index) for index in range(ISLANDS)]
    objectives = next(s for s in summaries if s["island"] == 0)["objectives"]  # island 0 searches them all
    instance = Instance.build(*resolve_inputs(merged["workload"], merged["cluster"]))
    F, v = _front_matrix(merged["front_uri"], objectives, instance)
    assert len(F) == merged["pareto_size"] >= 1
    best = v.min()
    assert np.all(v == best)  # the merge keeps the plans of least violation only
    for i in range(len(F)):
        others = np.delete(F, i, axis=0)
        assert not np.any(np.all(others <= F[i], axis=1) & np.any(others < F[i], axis=1)), f"plan {i} dominated"
        assert not np.any(np.all(others == F[i], axis=1)), f"plan {i} repeated"
    for summary in summaries:
        G, w = _front_matrix(summary["front_uri"], objectives, instance)
        for j in range(len(G)):
            covered = (best < w[j]) or np.any(np.all(F <= G[j], axis=1))
            assert covered, f"island {summary['island']}'s plan {j} is better than the merged front"
    return merged


def _mapped_xcom(client: AirflowClient, run_id: str, task_id: str, map_index: int, dag_id: str = DAG_ID) -> dict:
    path = (f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
            f"?map_index={map_index}")
    value = client.request("GET", path)["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_island_run_uses_both_queues_and_lands_in_postgres(cluster):
    running, client = cluster
    run_id = client.trigger(DAG_ID, CONF)
    run = client.wait_for_runs({DAG_ID: run_id}, timeout=600)[DAG_ID]
    tis = [ti for ti in _task_instances(client, run_id) if ti["state"] == "success"]
    assert run["state"] == "success", [(ti["task_id"], ti["state"]) for ti in _task_instances(client, run_id)]

    hostnames = _worker_hostnames(running)
    islands = [ti for ti in tis if ti["task_id"] == "search_round_1"]
    light = [ti for ti in tis if ti["task_id"] != "search_round_1"]
    assert sorted(ti["map_index"] for ti in islands) == list(range(ISLANDS))
    assert {ti["queue"] for ti in islands} == {"optimizer"}
    assert {ti["hostname"] for ti in islands} <= hostnames[("optimizer",)]
    assert {"build_workload", "plan_islands", "merge_round_1", "record"} <= {ti["task_id"] for ti in light}
    assert {ti["queue"] for ti in light} == {"default"}
    assert {ti["hostname"] for ti in light} == hostnames[("default",)]

    _check_merged_front(client, run_id)
    for ti in islands:  # each island's XCom names its worker as Airflow recorded it (hostname_callable)
        assert _mapped_xcom(client, run_id, "search_round_1", ti["map_index"])["hostname"] == ti["hostname"]
    record = client.xcom(DAG_ID, run_id, "record")
    assert record["plan_uri"] == f"{record['artifact_uri']}/plan.json" and "://" in record["artifact_uri"]
    assert _mlflow_runs(running, run_id) == [(record["mlflow_run_id"], "FINISHED")]


def test_enacted_steps_run_on_their_nodes_workers(cluster):
    """traffic_prediction, 2 regions enacted on the two-node city cluster: each step instance ran
    on try 1 in its node's queue and pool, on the worker of that node (its hostname), both nodes
    took steps, and the DAG run has one MLflow run (PostgreSQL), with the enactment's metrics."""
    from apportion.operators.placement import node_pool
    from apportion.operators.steps import WORKFLOW_STEPS
    from apportion.stack.cluster import worker_specs

    running, client = cluster
    run_id = client.trigger(TRAFFIC, {**ENACTED_CONF, "regions": 2})
    run = client.wait_for_runs({TRAFFIC: run_id}, timeout=900)[TRAFFIC]
    tis = _task_instances(client, run_id, TRAFFIC)
    assert run["state"] == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    node_host = {spec.node: spec.hostname for spec in worker_specs(running.config) if spec.node}
    assignments = client.xcom(TRAFFIC, run_id, "prepare_enactment")
    steps = {(ti["task_id"], ti["map_index"]): ti for ti in tis if ti["task_id"].startswith("enact.")}
    assert len(steps) == 2 * len(WORKFLOW_STEPS[TRAFFIC]) == sum(len(a["steps"]) for a in assignments)
    for index, assignment in enumerate(assignments):
        for step, placed in assignment["steps"].items():
            ti = steps[(f"enact.{step}", index)]
            assert (ti["state"], ti["try_number"]) == ("success", 1), ti
            assert (ti["queue"], ti["pool"]) == (placed["queue"], placed["pool"])
            assert placed["queue"] == placed["pool"] == node_pool(placed["node"])
            assert ti["hostname"] == node_host[placed["node"]], (ti["task_id"], placed["node"], ti["hostname"])
    assert {placed["node"] for a in assignments for placed in a["steps"].values()} == set(node_host)
    assert {ti["queue"] for ti in tis if not ti["task_id"].startswith("enact.")} == {"default"}
    ((mlflow_run, status),) = _mlflow_runs(running, run_id)
    assert status == "FINISHED"
    enacted = dict(_mlflow_query(running, "SELECT key, value FROM latest_metrics WHERE run_uuid = %s "
                                          "AND key LIKE 'enact/%%'", mlflow_run))
    assert enacted["enact/units"] == 2 and enacted["enact/steps"] == len(steps)
    # Each region's forecast read the other's ingest (waited for while it was missing, on try 1).
    results = enacted_results(client, TRAFFIC, run_id, assignments)
    assert enacted["enact/waiting_steps"] == check_edges_between_units(assignments, results)


def test_a_plan_on_a_node_without_worker_is_refused_before_any_step(cluster):
    """multimodal_speech plans onto the speech cluster's nodes, none of which has a worker:
    prepare_enactment fails on try 1 with one line naming the node and its queue, and no step
    instance runs."""
    running, client = cluster
    run_id = client.trigger(SPEECH, {**ENACTED_CONF, "streams": 2})
    run = client.wait_for_runs({SPEECH: run_id}, timeout=900)[SPEECH]
    tis = {ti["task_id"]: ti for ti in _task_instances(client, run_id, SPEECH)}
    assert run["state"] == "failed", {task: ti["state"] for task, ti in tis.items()}
    prepare = tis["prepare_enactment"]
    assert (prepare["state"], prepare["try_number"]) == ("failed", 1)
    assert tis["allocate"]["state"] == "success"
    steps = {task: ti["state"] for task, ti in tis.items() if task.startswith("enact.")}
    assert steps and set(steps.values()) == {"upstream_failed"}, steps
    assert tis["observe_enactment"]["state"] == "upstream_failed"
    logs = running.airflow_home / "logs" / f"dag_id={SPEECH}" / f"run_id={run_id}" / "task_id=prepare_enactment"
    lines = [line for log in logs.rglob("*.log") for line in log.read_text().splitlines()
             if "has no live worker on queue" in line]
    assert lines, f"no refusal in {logs}"
    assert "enact: node '" in lines[0] and "queue 'node-" in lines[0], lines[0]


def _running_island(client: AirflowClient, run_id: str, timeout: float = 300.0) -> dict:
    """The first island task instance seen running with its worker's hostname recorded."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        for ti in _task_instances(client, run_id):
            if ti["task_id"] == "search_round_1" and ti["state"] == "running" and ti.get("hostname"):
                return ti
        time.sleep(0.5)
    raise AssertionError(f"no island ran within {timeout:.0f} s")


def _kill_worker(running, hostname: str) -> list[psutil.Process]:
    """SIGKILL the worker whose task instances record ``hostname``, with its whole process tree
    (as if its machine died); the processes killed."""
    from apportion.stack.cluster import worker_specs

    name = next(spec.name for spec in worker_specs(running.config) if spec.hostname == hostname)
    root = psutil.Process(running.tree(name).process.pid)
    tree = [root, *root.children(recursive=True)]
    os.killpg(root.pid, signal.SIGKILL)
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=10)
    return tree


def test_killed_worker_task_is_retried_elsewhere(cluster):
    running, client = cluster
    run_id = client.trigger(DAG_ID, LONG_CONF)
    victim = _running_island(client, run_id)
    killed = _kill_worker(running, victim["hostname"])
    assert all(not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE for proc in killed)

    run = client.wait_for_runs({DAG_ID: run_id}, timeout=900)[DAG_ID]
    tis = _task_instances(client, run_id)
    assert run["state"] == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    retried = next(ti for ti in tis if ti["task_id"] == "search_round_1" and ti["map_index"] == victim["map_index"])
    assert retried["try_number"] >= 2
    assert retried["hostname"] != victim["hostname"]
    assert retried["hostname"] in _worker_hostnames(running)[("optimizer",)]

    merged = _check_merged_front(client, run_id)
    assert len(merged["history"][0]["islands"]) == ISLANDS
    record = client.xcom(DAG_ID, run_id, "record")
    assert _mlflow_runs(running, run_id) == [(record["mlflow_run_id"], "FINISHED")]


def _step_to_strand(client: AirflowClient, run_id: str, queue: str, timeout: float = 600.0) -> tuple[dict, list]:
    """The first enacted step seen running (with its hostname) in ``queue`` while more steps
    wait to run there, and those waiting steps."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        steps = [ti for ti in _task_instances(client, run_id, TRAFFIC)
                 if ti["task_id"].startswith("enact.") and ti["queue"] == queue]
        waiting = [ti for ti in steps if ti["state"] in (None, "scheduled")]
        for ti in steps:
            if ti["state"] == "running" and ti.get("hostname") and waiting:
                return ti, waiting
        time.sleep(0.5)
    raise AssertionError(f"no enacted step ran on a node with steps still to run within {timeout:.0f} s")


def test_a_lost_node_worker_leads_to_a_replan_and_every_step_once(cluster):
    """traffic_prediction enacts 4 regions on the two-node city cluster. The worker of a node is
    killed (its whole process tree) while it runs a step and more of its steps wait: the
    watch_enactment task sees its queue gone and re-plans; the lost step is retried on the other
    node's worker and the waiting ones run there too; nothing runs on the dead node after the kill;
    every step succeeds exactly once (one try, or the killed try and one more); the DAG run succeeds
    with one MLflow run, which records the re-plan. The node lost is the metro server: the district
    node is the only one allowed to run the sensors' and cameras' steps. Last of the node-worker
    tests: it kills one."""
    from apportion.operators.placement import node_pool
    from apportion.stack.cluster import worker_specs

    running, client = cluster
    lost = "metro/xeon16-0"
    run_id = client.trigger(TRAFFIC, {**ENACTED_CONF, "regions": 4, "enact_units": 4, "seed": 7})
    victim, waiting = _step_to_strand(client, run_id, node_pool(lost))
    node_of = {spec.hostname: spec.node for spec in worker_specs(running.config) if spec.node}
    assert node_of[victim["hostname"]] == lost
    _kill_worker(running, victim["hostname"])
    killed_at = time.time()

    run = client.wait_for_runs({TRAFFIC: run_id}, timeout=900)[TRAFFIC]
    tis = _task_instances(client, run_id, TRAFFIC)
    assert run["state"] == "success", [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    (survivor,) = set(node_of.values()) - {lost}
    steps = {(ti["task_id"], ti["map_index"]): ti for ti in tis if ti["task_id"].startswith("enact.")}
    assert {ti["state"] for ti in steps.values()} == {"success"}

    again = steps[(victim["task_id"], victim["map_index"])]
    assert again["try_number"] >= 2 and again["hostname"] != victim["hostname"]
    assert (again["queue"], again["pool"]) == (node_pool(survivor), node_pool(survivor))
    for ti in waiting:
        moved = steps[(ti["task_id"], ti["map_index"])]
        assert (moved["queue"], moved["hostname"], moved["try_number"]) == (
            node_pool(survivor), _host(node_of, survivor), 1), moved
    for key, ti in steps.items():
        if key != (victim["task_id"], victim["map_index"]):
            assert ti["try_number"] == 1, ti  # ran once
        if ti["hostname"] == victim["hostname"]:
            assert _epoch(ti["end_date"]) <= killed_at, ti  # nothing ran on the dead node after the kill
        results = _mapped_xcom(client, run_id, ti["task_id"], ti["map_index"], TRAFFIC)
        assert results["realised"]["hostname"] == ti["hostname"]
        assert results["realised"]["node"] == node_of[ti["hostname"]]

    watched = client.xcom(TRAFFIC, run_id, "watch_enactment")
    assert watched["replans"] and watched["replans"][0]["lost"] == [lost]
    ((mlflow_run, status),) = _mlflow_runs(running, run_id)
    assert status == "FINISHED"
    enacted = dict(_mlflow_query(running, "SELECT key, value FROM latest_metrics WHERE run_uuid = %s "
                                          "AND key LIKE 'enact/%%'", mlflow_run))
    assert enacted["enact/replans"] == len(watched["replans"]) and enacted["enact/rerouted_steps"] >= len(waiting)
    assert enacted["enact/steps"] == len(steps) == 4 * 5


def _host(node_of: dict[str, str], node: str) -> str:
    return next(host for host, served in node_of.items() if served == node)


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split(":")
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, int(port))) == 0


def test_cluster_down_leaves_no_process(cluster):
    from apportion.stack.cluster import cluster_processes

    running, _ = cluster
    for tree in running.trees:
        tree.processes()
    seen = list({proc.pid: proc for tree in running.trees for proc in tree.seen.values()}.values())
    seen += cluster_processes(running.config.state_dir)
    status = subprocess.run([APPORTION, "cluster", "status", "--state-dir", str(running.config.state_dir)],
                            capture_output=True, text=True, timeout=60)
    assert "worker-1" in status.stdout and "healthy" in status.stdout, status.stdout + status.stderr
    assert "node-metro.xeon16-0" in status.stdout and "node metro/xeon16-0" in status.stdout, status.stdout
    down = subprocess.run([APPORTION, "cluster", "down", "--state-dir", str(running.config.state_dir)],
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "none is left" in down.stdout
    survivors = [(proc.pid, proc.name()) for proc in seen
                 if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE]
    assert survivors == []
    assert cluster_processes(running.config.state_dir) == []
    assert not _port_open(running.api_url) and not _port_open(running.mlflow_url)

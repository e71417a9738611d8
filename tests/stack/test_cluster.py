"""``apportion cluster`` without services: the workers' queues, the settings every component
shares, the commands each one runs, and the one error line for a missing PostgreSQL or Redis,
a bad option or a state dir without a cluster (tests/integration/test_cluster.py starts one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apportion.stack import cluster
from apportion.stack.processes import free_port
from apportion.stack.worker_name import WORKER_HOSTNAME_ENV, worker_hostname

APPORTION = str(Path(sys.executable).with_name("apportion"))


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([APPORTION, *argv], capture_output=True, text=True, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("apportion: error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def test_workers_alternate_default_and_optimizer():
    assert cluster.worker_queues(None, None) == (("default",), ("optimizer",))
    assert cluster.worker_queues(3, None) == (("default",), ("optimizer",), ("default",))
    assert cluster.worker_queues(None, ["default,optimizer", "optimizer"]) == (("default", "optimizer"),
                                                                             ("optimizer",))


@pytest.mark.parametrize(("workers", "queues", "field", "words"), [
    (1, None, "workers", ["at least 2", "--queues default,optimizer"]),
    (3, ["default", "optimizer"], "workers", ["3 workers but 2"]),
    (None, ["default,bad queue"], "queues", ["'bad queue'"]),
    (None, ["default,"], "queues", ["''"]),
])
def test_bad_worker_layouts_are_refused(workers, queues, field, words):
    with pytest.raises(cluster.ClusterError) as refused:
        cluster.worker_queues(workers, queues)
    assert refused.value.field == field
    assert all(word in refused.value.reason for word in words), refused.value.reason


def test_database_urls_name_the_driver():
    server = "postgresql://postgres:secret@db.example:6543"
    assert cluster.database_url(server, "af", "psycopg2") == "postgresql+psycopg2://postgres:secret@db.example:6543/af"
    assert cluster.database_url("postgresql://postgres@127.0.0.1:5432/", "ml") == "postgresql://postgres@127.0.0.1:5432/ml"
    for bad in ("Apportion", "a-b", "x; DROP", "a" * 64):
        with pytest.raises(cluster.ClusterError, match="database"):
            cluster.check_database_name(bad)


def test_every_component_shares_the_celery_and_database_settings(tmp_path):
    config = cluster.ClusterConfig(tmp_path, airflow_database="af_db", mlflow_database="ml_db", api_port=18080,
                                   mlflow_port=15000, airflow_settings={"AIRFLOW__CORE__PARALLELISM": "2"})
    secret = cluster.cluster_secrets(tmp_path)
    assert cluster.cluster_secrets(tmp_path) == secret  # made once, read back after
    assert (tmp_path / cluster.SECRETS_FILE).stat().st_mode & 0o777 == 0o600
    env = cluster.airflow_environment(config, secret)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "apportion.operators.rerouting.ReroutingCeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/af_db"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg2://postgres@127.0.0.1:5432/af_db"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"] == "af_db:"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18080/execution/"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secret["jwt_secret"]
    assert env["AIRFLOW__CORE__FERNET_KEY"] == secret["fernet_key"]
    assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "apportion.stack.worker_name.worker_hostname"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "2"  # airflow_settings win
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:15000"
    assert env[cluster.CLUSTER_ENV] == str(tmp_path.resolve())

    cluster.write_env_file(tmp_path / "cluster.env", env)
    sourced = subprocess.run(["bash", "-c", f"source {tmp_path / 'cluster.env'} && env"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    assert f"AIRFLOW__API_AUTH__JWT_SECRET={secret['jwt_secret']}" in sourced
    assert not any(line.startswith("PATH=") for line in (tmp_path / "cluster.env").read_text().splitlines())


def test_each_worker_serves_its_queues_under_its_own_name(tmp_path):
    config = cluster.ClusterConfig(tmp_path, worker_queues=(("default",), ("optimizer", "default")), concurrency=2)
    commands = dict(cluster.component_commands(config))
    assert list(commands) == ["api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"]
    worker = commands["worker-2"]
    assert worker[1:4] == ["celery", "worker", "--queues"] and worker[4] == "optimizer,default"
    assert worker[worker.index("--concurrency") + 1] == "2"
    assert worker[worker.index("--celery-hostname") + 1].startswith("worker-2@")
    env = cluster.component_environment(config, {"A": "1"}, "worker-2")
    assert env == {"A": "1", WORKER_HOSTNAME_ENV: cluster.worker_hostname(1)}
    assert WORKER_HOSTNAME_ENV not in cluster.component_environment(config, {"A": "1"}, "scheduler")


NODES_SPEC = """cluster:
  nodes:
    - {id: district-0/orin-0, kind: edge, speed: 40, memory: 64, zone: district-0}
    - {id: metro/xeon16-0, kind: cpu, speed: 30, memory: 64, zone: metro, slots: 3}
    - {id: metro/xeon16-1, kind: cpu, speed: 30, memory: 64, zone: metro, failed: true}
"""


def test_node_workers_serve_only_their_node_queue_with_its_slots(tmp_path):
    spec = tmp_path / "cluster.yaml"
    spec.write_text(NODES_SPEC)
    nodes = cluster.node_workers_from_spec(spec)
    assert nodes == (("district-0/orin-0", 1), ("metro/xeon16-0", 3))  # the failed node has none; slots default to 1
    config = cluster.ClusterConfig(tmp_path, worker_queues=(("default",),), node_workers=nodes)
    commands = dict(cluster.component_commands(config))
    assert list(commands)[len(cluster.AIRFLOW_COMPONENTS):] == ["worker-1", "node-district-0.orin-0", "node-metro.xeon16-0"]
    worker = commands["node-district-0.orin-0"]
    assert worker[worker.index("--queues") + 1] == "node-district-0.orin-0"
    assert worker[worker.index("--concurrency") + 1] == "1"
    assert worker[worker.index("--celery-hostname") + 1].startswith("node-district-0.orin-0@")
    specs = {spec.name: spec for spec in cluster.worker_specs(config)}
    assert specs["node-metro.xeon16-0"].node == "metro/xeon16-0"
    worker = commands["node-metro.xeon16-0"]
    assert worker[worker.index("--concurrency") + 1] == "3"
    env = cluster.component_environment(config, {}, "node-metro.xeon16-0")
    assert env[WORKER_HOSTNAME_ENV].endswith("-node-metro.xeon16-0")
    assert len({spec.hostname for spec in specs.values()}) == 3


def test_worker_hostname_callable(monkeypatch):
    monkeypatch.setenv(WORKER_HOSTNAME_ENV, "host-worker-2")
    assert worker_hostname() == "host-worker-2"
    monkeypatch.delenv(WORKER_HOSTNAME_ENV)
    assert worker_hostname()  # the machine's name


def test_missing_postgres_and_redis_are_one_line(tmp_path):
    pg, rd = free_port(), free_port()
    line = _one_error_line(_run("cluster", "up", "--state-dir", str(tmp_path), "--postgres",
                                f"postgresql://postgres@127.0.0.1:{pg}", "--redis", f"redis://127.0.0.1:{rd}/0"),
                           "postgres, redis:", f"no PostgreSQL at 127.0.0.1:{pg}", f"no Redis at 127.0.0.1:{rd}",
                           "--postgres URL", "--redis URL")
    assert "Traceback" not in line
    assert not (tmp_path / cluster.STATE_FILE).exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["up", "--workers", "0"], ["--workers", "expected a whole number >= 1"]),
    (["up", "--workers", "1"], ["workers: at least 2"]),
    (["up", "--queues", "default", "--queues", "opt imizer"], ["queues", "'opt imizer'"]),
    (["up", "--api-port", "70000"], ["--api-port", "TCP port"]),
    (["up", "--airflow-database", "My-DB"], ["database", "'My-DB'"]),
    (["up", "--node-workers", "/nowhere/cluster.yaml"], ["node-workers", "/nowhere/cluster.yaml"]),
    (["sideways"], ["invalid choice", "'sideways'"]),
])
def test_bad_options_are_one_line(tmp_path, argv, words):
    _one_error_line(_run("cluster", *argv, "--state-dir", str(tmp_path)) if argv[0] != "sideways"
                    else _run("cluster", *argv), *words)


@pytest.mark.parametrize("action", ["down", "status"])
def test_a_state_dir_without_a_cluster_is_one_line(tmp_path, action):
    _one_error_line(_run("cluster", action, "--state-dir", str(tmp_path / "none")), "state-dir",
                    "no cluster state", "cluster.json")

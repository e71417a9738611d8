"""``apportion cluster``: Airflow with the CeleryExecutor and an MLflow server on PostgreSQL and
Redis, on one machine, for trying the distributed set-up (docs/cluster.md).

``up`` checks that PostgreSQL and Redis answer, creates the Airflow metadata database and the
MLflow backend database if absent, migrates Airflow's, then starts the API server, the
scheduler, the DAG processor, one Celery worker per queue list (worker 1 serves ``default``,
worker 2 ``optimizer`` by default) and ``mlflow server`` (PostgreSQL backend store, artifacts
in one shared destination), each in a session of its own; it writes what runs where to
``STATE_DIR/cluster.json`` and the settings every host shares to ``STATE_DIR/cluster.env``.
``down`` stops every process the cluster has (found by the marker each one inherits in its
environment, so orphaned task processes too) and checks that none is left.

With ``node_workers`` (``up --node-workers CLUSTER_SPEC``) it also starts one worker per up
node of a cluster spec, serving only that node's queue (``node-<ID>``, the queue an enacted
step on the node is routed to) with the node's slots as its concurrency (docs/enactment.md).
The executor is the CeleryExecutor that also routes an enacted step by its run's latest
re-plan (``operators/rerouting.py``), so a step whose node's worker is lost runs elsewhere.

Two workers on one machine share its name: each gets its own Celery hostname and its own
``APPORTION_WORKER_HOSTNAME``, which ``[core] hostname_callable``
(``apportion.stack.worker_name``) records as the task instance's ``hostname``.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

import psutil

from apportion.stack.errors import DemoError
from apportion.stack.processes import HOST, ProcessTree, clean_environ, start_process, stop_servers
from apportion.stack.servers import (
    AIRFLOW_HEALTH_PATH,
    project_dirs,
    server_healthy,
    start_mlflow,
    start_numba_warmup,
    wait_healthy,
)
from apportion.stack.worker_name import WORKER_HOSTNAME_ENV

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "default"
OPTIMIZER_QUEUE = "optimizer"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
REROUTING_EXECUTOR = "apportion.operators.rerouting.ReroutingCeleryExecutor"
STATE_FILE = "cluster.json"
ENV_FILE = "cluster.env"
SECRETS_FILE = "secrets.json"
RUN_DIR = "run"  # the Airflow components' working folder: ``down`` also finds them by it
# Every process of a cluster inherits this variable (the state dir): ``down`` finds them all by it.
CLUSTER_ENV = "APPORTION_CLUSTER"
# Scheduler, DAG processor, API server and workers each hold a pool of connections; a small one
# keeps several clusters (and other users) within PostgreSQL's default 100 connections.
SQL_POOL_SIZE = 3
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_QUEUE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class ClusterError(DemoError):
    """Bad input: a setting, a missing service, a state dir without a cluster. ``field`` names
    the thing, ``reason`` says why. (A component that fails to start is a ``DemoError``.)"""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ClusterConfig:
    """One cluster: where its state, PostgreSQL and Redis are, its databases, its workers' queues
    and the settings that bound its memory. ``airflow_settings`` adds ``AIRFLOW__...``
    variables (the tests shorten the scheduler's heartbeat timeout with it)."""

    state_dir: Path
    postgres_url: str = POSTGRES_URL
    redis_url: str = REDIS_URL
    airflow_database: str = "apportion_airflow"
    mlflow_database: str = "apportion_mlflow"
    worker_queues: tuple[tuple[str, ...], ...] = ((DEFAULT_QUEUE,), (OPTIMIZER_QUEUE,))
    concurrency: int = 1
    parallelism: int = 4
    host: str = HOST
    api_port: int = 8080
    mlflow_port: int = 5000
    artifacts_destination: str | None = None
    airflow_settings: Mapping[str, str] = field(default_factory=dict)
    # One worker per node (node id, slots), serving only the node's queue (``node_worker_specs``).
    node_workers: tuple[tuple[str, int], ...] = ()

    @property
    def broker_prefix(self) -> str:
        """Redis key prefix of this cluster's queues: another cluster (or another user's Celery) on
        the same Redis cannot take its tasks."""
        return f"{self.airflow_database}:"

    def artifacts(self) -> str:
        return self.artifacts_destination or str(Path(self.state_dir).resolve() / "mlartifacts")


def worker_queues(workers: int | None, queues: list[str] | None) -> tuple[tuple[str, ...], ...]:
    """Each worker's queues: ``queues`` (one comma-separated list per worker) as given, else
    ``workers`` workers taking ``default`` and ``optimizer`` in turn (at least one of each)."""
    if queues:
        if workers is not None and workers != len(queues):
            raise ClusterError("workers", f"{workers} workers but {len(queues)} --queues lists (one per worker)")
        lists = []
        for text in queues:
            names = tuple(dict.fromkeys(name.strip() for name in text.split(",")))
            bad = [name for name in names if not _QUEUE.match(name)]
            if bad:
                raise ClusterError("queues", f"not a queue name: {bad[0]!r} (letters, digits, '_', '.', '-')")
            lists.append(names)
        return tuple(lists)
    workers = 2 if workers is None else workers
    if workers < 2:
        raise ClusterError("workers", f"at least 2 (one for each of {DEFAULT_QUEUE!r} and {OPTIMIZER_QUEUE!r}), "
                                      f"got {workers}; --queues default,optimizer gives one worker both")
    return tuple(((DEFAULT_QUEUE,), (OPTIMIZER_QUEUE,))[i % 2] for i in range(workers))


def node_workers_from_spec(path: str | Path) -> tuple[tuple[str, int], ...]:
    """(node id, slots) of every up node of the cluster spec at ``path``: one worker each. The
    slots are the node's optional ``slots`` (default 1), as the node's pool has them; a spec that
    cannot be read, or two nodes whose ids give one queue name, is a ``ClusterError``."""
    from apportion.core.errors import SpecError
    from apportion.core.io import load_cluster
    from apportion.operators.enactment import node_pools

    try:
        pools = node_pools(load_cluster(path))
    except (OSError, SpecError) as error:
        raise ClusterError("node-workers", str(error) if str(path) in str(error) else f"{path}: {error}") from None
    if not pools:
        raise ClusterError("node-workers", f"{path}: no node is up, so no worker to start")
    return tuple((spec["node"], spec["slots"]) for spec in pools.values())


def database_url(server_url: str, database: str, driver: str = "") -> str:
    """``server_url`` (``postgresql://user@host:port``) pointed at ``database``; ``driver``
    (e.g. ``psycopg2``) goes after ``postgresql+`` for SQLAlchemy."""
    parts = urllib.parse.urlsplit(server_url)
    scheme = f"postgresql+{driver}" if driver else "postgresql"
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _answers(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None when something accepts a connection at ``host:port``, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or str(error)


def check_services(config: ClusterConfig) -> None:
    """PostgreSQL and Redis answer where the config says; else one ``ClusterError`` naming
    each missing service, where it was looked for and the option that moves it."""
    missing = []
    for name, option, url, port in (("postgres", "--postgres", config.postgres_url, 5432),
                                    ("redis", "--redis", config.redis_url, 6379)):
        host, port = _address(url, port)
        why = _answers(host, port)
        if why:
            service = "PostgreSQL" if name == "postgres" else "Redis"
            missing.append((name, f"no {service} at {host}:{port} ({why}); start it there or give {option} URL"))
    if missing:
        raise ClusterError(", ".join(name for name, _ in missing), "; ".join(reason for _, reason in missing))
    _check_redis(config.redis_url)


def _check_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as error:
        raise ClusterError("redis", f"{_without_password(url)} does not answer PING: {_first_line(error)}") from None


def _postgres(server_url: str, database: str = "postgres"):
    """An autocommit connection to ``database`` on the server; a refused login is a ``ClusterError``."""
    import psycopg2

    try:
        connection = psycopg2.connect(database_url(server_url, database), connect_timeout=5)
    except psycopg2.OperationalError as error:
        raise ClusterError("postgres", f"{_without_password(server_url)} refused database {database!r}: "
                                       f"{_first_line(error)}") from None
    connection.autocommit = True
    return connection


def check_database_name(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ClusterError("database", f"{name!r} is not a plain PostgreSQL name (a-z, 0-9, '_', at most 63)")
    return name


def ensure_database(server_url: str, name: str) -> bool:
    """Create database ``name`` unless it exists; whether it was created."""
    from psycopg2 import sql

    connection = _postgres(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (check_database_name(name),))
            if cursor.fetchone():
                return False
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        connection.close()


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, closing whatever is still connected to it."""
    from psycopg2 import sql

    connection = _postgres(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(check_database_name(name))))
    finally:
        connection.close()


def cluster_secrets(state_dir: Path) -> dict[str, str]:
    """The secrets every host of the cluster shares (Fernet key, JWT secret, API secret key):
    made once and kept in ``STATE_DIR/secrets.json`` (mode 600), so that a cluster brought up
    again still reads what it encrypted."""
    import base64
    import os

    path = Path(state_dir) / SECRETS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    made = {"fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "jwt_secret": secrets.token_urlsafe(32), "api_secret_key": secrets.token_urlsafe(32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(made))
    return made


def airflow_environment(config: ClusterConfig, secret: Mapping[str, str]) -> dict[str, str]:
    """What every Airflow component of the cluster shares, on one host or many: the metadata
    database and Celery (Redis broker under the cluster's key prefix, results in the metadata
    database), the API server's address for the workers, the secrets, the project's DAGs and
    small pools and concurrency (two cores here)."""
    state_dir = Path(config.state_dir).resolve()
    home = state_dir / "airflow"
    base_url = f"http://{config.host}:{config.api_port}"
    metadata = database_url(config.postgres_url, config.airflow_database, driver="psycopg2")
    env = {
        **clean_environ(),
        CLUSTER_ENV: str(state_dir),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project_dirs()["dags"]),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_dirs()["plugins"]),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": REROUTING_EXECUTOR,
        "AIRFLOW__CORE__PARALLELISM": str(config.parallelism),
        "AIRFLOW__CORE__FERNET_KEY": secret["fernet_key"],
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "apportion.stack.worker_name.worker_hostname",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": str(SQL_POOL_SIZE),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": str(SQL_POOL_SIZE),
        "AIRFLOW__CELERY__BROKER_URL": config.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url(config.postgres_url, config.airflow_database, "psycopg2"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(config.concurrency),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": config.broker_prefix,
        "AIRFLOW__API__HOST": config.host,
        "AIRFLOW__API__PORT": str(config.api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secret["api_secret_key"],
        "AIRFLOW__API_AUTH__JWT_SECRET": secret["jwt_secret"],
        "NUMBA_CACHE_DIR": str(state_dir / "numba-cache"),
        "MLFLOW_TRACKING_URI": f"http://{config.host}:{config.mlflow_port}",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(config.airflow_settings)
    return env


def worker_name(index: int) -> str:
    return f"worker-{index + 1}"


def worker_hostname(index: int) -> str:
    """What a worker's task instances record as their ``hostname``: the machine's name and the worker's."""
    return f"{socket.gethostname()}-{worker_name(index)}"


@dataclass(frozen=True)
class WorkerSpec:
    """One Celery worker: its name (and Celery hostname ``NAME@HOST``), queues, concurrency, the
    ``hostname`` its task instances record, and the node it serves (a node worker) or None."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    hostname: str
    node: str | None = None


def worker_specs(config: ClusterConfig) -> list[WorkerSpec]:
    """The cluster's workers: ``worker-N`` per queue list, then one per node (``node_workers``)
    named after its queue (``node-<ID>``, ``placement.node_pool``), serving that queue only,
    with the node's slots as its concurrency."""
    from apportion.operators.placement import node_pool

    specs = [WorkerSpec(worker_name(i), tuple(queues), config.concurrency, worker_hostname(i))
             for i, queues in enumerate(config.worker_queues)]
    for node, slots in config.node_workers:
        queue = node_pool(node)
        specs.append(WorkerSpec(queue, (queue,), int(slots), f"{socket.gethostname()}-{queue}", node))
    return specs


def component_commands(config: ClusterConfig) -> list[tuple[str, list[str]]]:
    """Each Airflow component's name and command line, workers last (``airflow celery worker``
    with its queues, concurrency and own Celery hostname; task logs are files on this machine,
    so it serves none)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    commands = [(name, [airflow, name]) for name in AIRFLOW_COMPONENTS]
    for worker in worker_specs(config):
        commands.append((worker.name, [
            airflow, "celery", "worker", "--queues", ",".join(worker.queues), "--concurrency", str(worker.concurrency),
            "--celery-hostname", f"{worker.name}@{socket.gethostname()}", "--skip-serve-logs"]))
    return commands


def component_environment(config: ClusterConfig, env: Mapping[str, str], name: str) -> dict[str, str]:
    """A component's environment: a worker's adds the name its task instances record."""
    worker = next((spec for spec in worker_specs(config) if spec.name == name), None)
    if worker is not None:
        return {**env, WORKER_HOSTNAME_ENV: worker.hostname}
    return dict(env)


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """The Airflow and MLflow settings as ``export`` lines (mode 600: it holds the secrets), to
    source on every host of a multi-host cluster (docs/cluster.md)."""
    shared = {key: value for key, value in env.items()
              if key.startswith(("AIRFLOW", "MLFLOW_", "NUMBA_")) or key == CLUSTER_ENV}
    path.touch(mode=0o600)
    path.write_text("".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(shared.items())))


def migrate_database(env: Mapping[str, str], log_path: Path, timeout: float = 600.0) -> None:
    """``airflow db migrate``: creates or upgrades the metadata tables."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        done = subprocess.run([airflow, "db", "migrate"], env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-1:] or [""]
        raise DemoError(f"airflow db migrate exited with status {done.returncode}: {tail[0]} (log: {log_path})")


def wait_workers_ready(workers: list[ProcessTree], timeout: float = 240.0) -> None:
    """Wait until each Celery worker's log says it is ready (it then consumes its queues)."""
    started = time.monotonic()
    pending = list(workers)
    while pending:
        for worker in list(pending):
            if worker.process.poll() is not None:
                raise DemoError(f"{worker.name} exited with status {worker.process.returncode} before it was "
                                f"ready; last lines of {worker.log_path}:\n{worker.log_tail(15)}")
            if " ready." in worker.log_tail(200):
                pending.remove(worker)
        if pending and time.monotonic() - started > timeout:
            raise DemoError(f"{pending[0].name} not ready after {timeout:.0f} s; log: {pending[0].log_path}")
        if pending:
            time.sleep(1.0)


@dataclass
class Cluster:
    """A running cluster: its config, every process tree started, and where to reach it."""

    config: ClusterConfig
    trees: list[ProcessTree]
    api_url: str
    mlflow_url: str

    @property
    def airflow_home(self) -> Path:
        return Path(self.config.state_dir).resolve() / "airflow"

    def tree(self, name: str) -> ProcessTree:
        return next(tree for tree in self.trees if tree.name == name)


def _start_components(config: ClusterConfig, env: Mapping[str, str], trees: list[ProcessTree]) -> Cluster:
    state_dir = Path(config.state_dir).resolve()
    logs = state_dir / "logs"
    mlflow_env_marker = {CLUSTER_ENV: str(state_dir)}
    trees.append(start_mlflow(state_dir, config.mlflow_port, host=config.host,
                              backend_store_uri=database_url(config.postgres_url, config.mlflow_database, "psycopg2"),
                              artifacts_destination=config.artifacts(), extra_env=mlflow_env_marker))
    trees.append(start_numba_warmup(state_dir, extra_env=mlflow_env_marker))
    api_url = f"http://{config.host}:{config.api_port}"
    run_dir = state_dir / RUN_DIR
    run_dir.mkdir(exist_ok=True)
    for name, cmd in component_commands(config):
        is_api = name == "api-server"
        trees.append(start_process(name, cmd, component_environment(config, env, name), logs / f"{name}.log",
                                   run_dir, url=api_url if is_api else None,
                                   health_path=AIRFLOW_HEALTH_PATH if is_api else None))
    return Cluster(config, trees, api_url, trees[0].url)


def start_cluster(config: ClusterConfig, say=print, timeout: float = 300.0) -> Cluster:
    """Bring the cluster up (see the module's doc) and return once the API server reports the
    metadata database, scheduler and DAG processor healthy, MLflow answers, every worker is
    ready and the Numba cache is warm. On any failure every process started is stopped again."""
    check_database_name(config.airflow_database)
    check_database_name(config.mlflow_database)
    check_services(config)
    state_dir = Path(config.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if cluster_processes(state_dir):
        raise ClusterError("state-dir", f"a cluster runs from {state_dir} already; "
                                        f"stop it first: apportion cluster down --state-dir {state_dir}")
    for name in (config.airflow_database, config.mlflow_database):
        if ensure_database(config.postgres_url, name):
            say(f"created database {name}")
    env = airflow_environment(config, cluster_secrets(state_dir))
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    write_env_file(state_dir / ENV_FILE, env)
    say("migrating the Airflow metadata database ...")
    migrate_database(env, state_dir / "logs" / "airflow-db-migrate.log")
    trees: list[ProcessTree] = []
    try:
        cluster = _start_components(config, env, trees)
        write_state(cluster)
        say(f"starting MLflow, the API server, scheduler, DAG processor, triggerer and {len(worker_specs(config))} workers ...")
        wait_healthy([cluster.tree("MLflow"), cluster.tree("api-server")], timeout=timeout)
        workers = {worker.name for worker in worker_specs(config)}
        wait_workers_ready([tree for tree in trees if tree.name in workers], timeout=timeout)
        warmup = cluster.tree("Numba warm-up")
        warmup.process.wait(timeout=timeout)
        return cluster
    except BaseException:
        stop_servers(trees, also=cluster_processes(state_dir))
        raise


def write_state(cluster: Cluster) -> None:
    """``cluster.json``: the config, the URLs and each process (pid, start time, log) for
    ``status`` and ``down``."""
    state_dir = Path(cluster.config.state_dir).resolve()
    config = {**asdict(cluster.config), "state_dir": str(state_dir)}
    specs = worker_specs(cluster.config)
    processes = []
    for tree in cluster.trees:
        if tree.url is None and tree.name not in {w.name for w in specs} and tree.name not in AIRFLOW_COMPONENTS:
            continue  # the Numba warm-up: done once the cluster is up
        try:
            started = psutil.Process(tree.process.pid).create_time()
        except psutil.NoSuchProcess:
            started = None
        processes.append({"name": tree.name, "pid": tree.process.pid, "create_time": started,
                          "log": str(tree.log_path), "url": tree.url, "health_path": tree.health_path})
    workers = [{**asdict(worker), "queues": list(worker.queues)} for worker in specs]
    state = {"config": config, "api_url": cluster.api_url, "mlflow_url": cluster.mlflow_url,
             "airflow_home": str(cluster.airflow_home), "workers": workers, "processes": processes}
    (state_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def read_state(state_dir: Path, missing_ok: bool = False) -> dict | None:
    path = Path(state_dir).resolve() / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ClusterError("state-dir", f"no cluster state in {path.parent} ({STATE_FILE} is missing)") from None
    except (OSError, ValueError) as error:
        raise ClusterError("state-dir", f"cannot read {path}: {error}") from None


def cluster_processes(state_dir: Path) -> list[psutil.Process]:
    """Every live process of the cluster, wherever it was reparented: its environment carries
    the cluster's marker, or it works in the cluster's ``run`` folder (Airflow's components
    and Celery retitle themselves, which overwrites what /proc shows of their environment)."""
    marker = str(Path(state_dir).resolve())
    run_dir = str(Path(marker) / RUN_DIR)
    found = []
    for proc in psutil.process_iter():
        try:
            ours = proc.environ().get(CLUSTER_ENV) == marker or proc.cwd() == run_dir
            if ours and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_cluster(state_dir: Path, grace: float = 10.0) -> list[psutil.Process]:
    """Stop every process of the cluster run from ``state_dir`` (each recorded process group,
    then whatever still carries the marker); the processes still alive after SIGKILL (none,
    unless unkillable)."""
    state_dir = Path(state_dir).resolve()
    state = read_state(state_dir, missing_ok=True) or {"processes": []}
    groups = []
    for entry in state["processes"]:
        try:
            proc = psutil.Process(entry["pid"])
            if entry.get("create_time") is None or abs(proc.create_time() - entry["create_time"]) < 0.01:
                groups.append(entry["pid"])
        except psutil.NoSuchProcess:
            continue
    return stop_servers([], grace, also=cluster_processes(state_dir), groups=groups)


def component_status(entry: Mapping) -> str:
    """``running``, ``healthy``/``unhealthy`` (a server), or ``stopped``."""
    try:
        proc = psutil.Process(entry["pid"])
        same = entry.get("create_time") is None or abs(proc.create_time() - entry["create_time"]) < 0.01
        alive = same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        alive = False
    if not alive:
        return "stopped"
    if not entry.get("url"):
        return "running"
    return "healthy" if server_healthy(entry["url"], entry["health_path"]) else "unhealthy"


def admin_password(airflow_home: Path, username: str = "admin") -> str | None:
    """The password the API server generated for ``username`` (Airflow's simple auth manager)."""
    try:
        return json.loads((Path(airflow_home) / "simple_auth_manager_passwords.json.generated").read_text())[username]
    except (OSError, ValueError, KeyError):
        return None


def _without_password(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

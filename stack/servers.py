"""The demo's servers: Airflow standalone and the MLflow tracking server, their environment
under a state dir, their health, and the Numba warm-up that runs while they start."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping

from apportion.stack.errors import DemoError
from apportion.stack.processes import HOST, ProcessTree, clean_environ, start_process

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DAGS = ("medical_diagnosis", "traffic_prediction", "multimodal_speech")
AIRFLOW_PORT = 8080
MLFLOW_PORT = 5000
AIRFLOW_HEALTH_PATH = "/api/v2/monitor/health"
# LocalExecutor forks `parallelism` workers up front (default 32: ~40 processes, several GB);
# two match the two independent first steps of a workflow DAG, and two cores.
PARALLELISM = 2


def project_dirs() -> dict[str, Path]:
    """The project's dags/, plugins/ and the MLflow start script (from a source checkout)."""
    dirs = {"dags": PROJECT_ROOT / "dags", "plugins": PROJECT_ROOT / "plugins",
            "mlflow_script": PROJECT_ROOT / "mlflow" / "start_server.py"}
    missing = [str(path) for path in dirs.values() if not path.exists()]
    if missing:
        raise DemoError(f"the demo runs from a source checkout (pip install -e .); missing: {', '.join(missing)}")
    return dirs



def airflow_environment(state_dir: Path, *, port: int, mlflow_url: str,
                        parallelism: int = PARALLELISM) -> dict[str, str]:
    """Environment of ``airflow standalone``: home, SQLite DB and Numba cache under
    ``state_dir``, the project's DAGs and plugin, LocalExecutor with low parallelism (it bounds
    the task processes, hence the memory, however many runs the schedules add) and no example
    DAGs. The DAGs' schedules stay on: an unpaused DAG runs every interval."""
    dirs = project_dirs()
    home = state_dir / "airflow"
    base_url = f"http://{HOST}:{port}"
    return {
        **clean_environ(),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dirs["dags"]),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(dirs["plugins"]),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "NUMBA_CACHE_DIR": str(state_dir / "numba-cache"),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "PYTHONUNBUFFERED": "1",
    }



def start_mlflow(state_dir: Path, port: int, *, host: str = HOST, backend_store_uri: str | None = None,
                 artifacts_destination: str | None = None, extra_env: Mapping[str, str] | None = None) -> ProcessTree:
    """The tracking server (mlflow/start_server.py: by default SQLite store and artifacts under
    ``state_dir/mlflow``; no job runner), logging to ``state_dir/logs/mlflow.log``."""
    state_dir = state_dir.resolve()
    script = project_dirs()["mlflow_script"]
    cmd = [sys.executable, str(script), str(state_dir / "mlflow"), "--host", host, "--port", str(port)]
    if backend_store_uri:
        cmd += ["--backend-store-uri", backend_store_uri]
    if artifacts_destination:
        cmd += ["--artifacts-destination", artifacts_destination]
    env = {**clean_environ(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    return start_process("MLflow", cmd, env, state_dir / "logs" / "mlflow.log", state_dir,
                  url=f"http://{host}:{port}", health_path="/health")


def start_airflow(state_dir: Path, port: int, mlflow_url: str, parallelism: int = PARALLELISM) -> ProcessTree:
    """``airflow standalone`` with ``airflow_environment``, logging to ``state_dir/logs/airflow.log``."""
    state_dir = state_dir.resolve()
    env = airflow_environment(state_dir, port=port, mlflow_url=mlflow_url, parallelism=parallelism)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("airflow")), "standalone"]
    return start_process("Airflow", cmd, env, state_dir / "logs" / "airflow.log", state_dir,
                  url=f"http://{HOST}:{port}", health_path=AIRFLOW_HEALTH_PATH)


def warm_numba_cache() -> None:
    """Compile the core's kernels into ``NUMBA_CACHE_DIR`` by optimising a tiny instance of
    each scenario. Cold, that takes about a minute here; every task that optimises or
    evaluates would pay it again, three allocations at once even three times."""
    from apportion.core.api import Settings, optimize
    from apportion.core.model import Instance
    from apportion.core.scenarios import build
    from apportion.core.simulate import Uncertainty, simulate

    for scenario in WORKFLOW_DAGS:
        workload, cluster = build(scenario, size=3, nodes=6, seed=0)
        instance = Instance.build(workload, cluster)
        # Four generations: the mating operators only compile from the second one on.
        result = optimize(instance, Settings(population=8, generations=4))
        simulate(instance, result.chosen.plan, Uncertainty(duration_sigma=0.2), samples=4, seed=0)


def start_numba_warmup(state_dir: Path, extra_env: Mapping[str, str] | None = None) -> ProcessTree:
    """``warm_numba_cache`` in a process of its own, while the servers start."""
    state_dir = state_dir.resolve()
    env = {**clean_environ(), "NUMBA_CACHE_DIR": str(state_dir / "numba-cache"), **(extra_env or {})}
    cmd = [sys.executable, "-c", "from apportion.stack.servers import warm_numba_cache; warm_numba_cache()"]
    return start_process("Numba warm-up", cmd, env, state_dir / "logs" / "numba-warmup.log", state_dir)



def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _healthy(server: ProcessTree) -> bool:
    return server_healthy(server.url, server.health_path)


def server_healthy(url: str, health_path: str) -> bool:
    """The health endpoint answers 200; Airflow's also reports its metadata database,
    scheduler and DAG processor healthy."""
    try:
        status, body = _get(url + health_path)
    except (OSError, urllib.error.URLError):
        return False
    if status != 200:
        return False
    if health_path != AIRFLOW_HEALTH_PATH:
        return True
    report = json.loads(body)
    return all(report.get(part, {}).get("status") == "healthy"
               for part in ("metadatabase", "scheduler", "dag_processor"))


def wait_healthy(servers: Iterable[ProcessTree], timeout: float = 240.0) -> dict[str, float]:
    """Wait until every server's health endpoint says healthy; seconds each took. Raises
    ``DemoError`` with the tail of its log when one exits or is not up in ``timeout``."""
    pending = {server.name: server for server in servers}
    started, took = time.monotonic(), {}
    while pending:
        for name, server in list(pending.items()):
            if server.process.poll() is not None:
                raise DemoError(f"{name} exited with status {server.process.returncode} before it was healthy; "
                                f"last lines of {server.log_path}:\n{server.log_tail()}")
            if _healthy(server):
                took[name] = time.monotonic() - started
                del pending[name]
        if pending and time.monotonic() - started > timeout:
            server = next(iter(pending.values()))
            raise DemoError(f"{server.name} was not healthy at {server.url}{server.health_path} after "
                            f"{timeout:.0f} s; last lines of {server.log_path}:\n{server.log_tail()}")
        if pending:
            time.sleep(1.0)
    return took


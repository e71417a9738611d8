"""``apportion demo``: Airflow standalone and an MLflow server on this machine, the three
workflow DAGs run once each, their chosen plans printed.

Everything lives under the state dir (default ``.demo/``): the Airflow home with its SQLite
metadata DB and task logs, the MLflow store, the Numba cache, the servers' logs and
``demo.pid``. Both servers listen on 127.0.0.1 (8080 and 5000 when free). Each server starts
in its own session (process group); every process of its tree is remembered while it runs,
because Airflow puts each task process in a group of its own, so a shutdown (Ctrl-C,
SIGTERM, or the end of an ``--exit-when-done`` run) reaches all of them: SIGINT, then
SIGTERM, then SIGKILL.

The functions below are the demo's building blocks; tests/integration/test_standalone.py
drives them directly.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DAGS = ("medical_diagnosis", "traffic_prediction", "multimodal_speech")
AIRFLOW_PORT = 8080
MLFLOW_PORT = 5000
HOST = "127.0.0.1"
# LocalExecutor forks `parallelism` workers up front (default 32: ~40 processes, several GB);
# two match the two independent first steps of a workflow DAG, and two cores.
PARALLELISM = 2
FINISHED_STATES = ("success", "failed")
FAILED_TASK_STATES = ("failed", "upstream_failed")
PID_FILE = "demo.pid"
OUTPUT_ROOT_ENV = "APPORTION_OUTPUT_ROOT"


class DemoError(RuntimeError):
    """The demo cannot go on; the message says what happened and where to look."""


class _Stop(Exception):
    """SIGTERM or SIGHUP reached the demo process."""


# --- Ports, environment ------------------------------------------------------------------------


def free_port(preferred: int | None = None, host: str = HOST) -> int:
    """``preferred`` if nothing listens on it, else a port the OS picks as free."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            # As the servers do: a port held only by old connections (TIME_WAIT) counts as free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise DemoError(f"no free TCP port on {host}")


def project_dirs() -> dict[str, Path]:
    """The project's dags/, plugins/ and the MLflow start script (from a source checkout)."""
    dirs = {"dags": PROJECT_ROOT / "dags", "plugins": PROJECT_ROOT / "plugins",
            "mlflow_script": PROJECT_ROOT / "mlflow" / "start_server.py"}
    missing = [str(path) for path in dirs.values() if not path.exists()]
    if missing:
        raise DemoError(f"the demo runs from a source checkout (pip install -e .); missing: {', '.join(missing)}")
    return dirs


def _clean_environ() -> dict[str, str]:
    """This process's environment without Airflow and MLflow settings, so a user's own
    configuration cannot leak into the demo's servers; this Python's scripts folder first on
    PATH, because standalone starts its components as ``airflow`` from PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
           and k not in ("AIRFLOW_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_BACKEND_STORE_URI",
                         "MLFLOW_ARTIFACTS_DESTINATION", OUTPUT_ROOT_ENV)}
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([scripts, *(p for p in env.get("PATH", "").split(os.pathsep) if p != scripts)])
    return env


def airflow_environment(state_dir: Path, *, port: int, mlflow_url: str,
                        parallelism: int = PARALLELISM) -> dict[str, str]:
    """Environment of ``airflow standalone``: home, SQLite DB and Numba cache under
    ``state_dir``, the project's DAGs and plugin, LocalExecutor with low parallelism, no
    example DAGs, and no cron schedules (only the runs the demo or a user triggers)."""
    dirs = project_dirs()
    home = state_dir / "airflow"
    base_url = f"http://{HOST}:{port}"
    return {
        **_clean_environ(),
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
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "NUMBA_CACHE_DIR": str(state_dir / "numba-cache"),
        "MLFLOW_TRACKING_URI": mlflow_url,
        "PYTHONUNBUFFERED": "1",
    }


# --- Servers -----------------------------------------------------------------------------------


def _default_sigint() -> None:
    """In the child before exec: a SIGINT ignored by whoever launched the demo (``cmd &``)
    would stay ignored across exec, and the server could not be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class ProcessTree:
    """A process started in its own session (a server, or the Numba warm-up), and every
    process its tree has had. ``url`` and ``health_path`` are set for servers."""

    name: str
    log_path: Path
    process: subprocess.Popen
    url: str | None = None
    health_path: str | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def processes(self) -> list[psutil.Process]:
        """The live processes of the tree now, also remembered for the shutdown: task
        processes leave the session's process group, orphans leave the tree."""
        try:
            root = psutil.Process(self.process.pid)
            current = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            current = []
        with self._lock:
            for proc in current:
                self.seen.setdefault(proc.pid, proc)
            known = list(self.seen.values())
        return [proc for proc in known if _alive(proc)]

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (``is_running`` also rules out a reused pid)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(name: str, cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path,
           url: str | None = None, health_path: str | None = None) -> ProcessTree:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(cmd, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=_default_sigint)
    tree = ProcessTree(name=name, log_path=log_path, process=process, url=url, health_path=health_path)
    tree.processes()
    return tree


def start_mlflow(state_dir: Path, port: int) -> ProcessTree:
    """The tracking server (mlflow/start_server.py: SQLite store and artifacts under
    ``state_dir/mlflow``, no job runner), logging to ``state_dir/logs/mlflow.log``."""
    state_dir = state_dir.resolve()
    script = project_dirs()["mlflow_script"]
    cmd = [sys.executable, str(script), str(state_dir / "mlflow"), "--host", HOST, "--port", str(port)]
    env = {**_clean_environ(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    return _start("MLflow", cmd, env, state_dir / "logs" / "mlflow.log", state_dir,
                  url=f"http://{HOST}:{port}", health_path="/health")


def start_airflow(state_dir: Path, port: int, mlflow_url: str, parallelism: int = PARALLELISM) -> ProcessTree:
    """``airflow standalone`` with ``airflow_environment``, logging to ``state_dir/logs/airflow.log``."""
    state_dir = state_dir.resolve()
    env = airflow_environment(state_dir, port=port, mlflow_url=mlflow_url, parallelism=parallelism)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("airflow")), "standalone"]
    return _start("Airflow", cmd, env, state_dir / "logs" / "airflow.log", state_dir,
                  url=f"http://{HOST}:{port}", health_path="/api/v2/monitor/health")


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


def start_numba_warmup(state_dir: Path) -> ProcessTree:
    """``warm_numba_cache`` in a process of its own, while the servers start."""
    state_dir = state_dir.resolve()
    env = {**_clean_environ(), "NUMBA_CACHE_DIR": str(state_dir / "numba-cache")}
    cmd = [sys.executable, "-c", "from operators.demo import warm_numba_cache; warm_numba_cache()"]
    return _start("Numba warm-up", cmd, env, state_dir / "logs" / "numba-warmup.log", state_dir)


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _healthy(server: ProcessTree) -> bool:
    try:
        status, body = _get(server.url + server.health_path)
    except (OSError, urllib.error.URLError):
        return False
    if status != 200:
        return False
    if server.name != "Airflow":
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


def stop_servers(servers: Iterable[ProcessTree], grace: float = 10.0) -> list[psutil.Process]:
    """Stop every process the trees have had: SIGINT to each session's group (Airflow
    standalone stops its components on it), SIGTERM to what is left after ``grace`` seconds
    (LocalExecutor workers ignore SIGINT), SIGKILL after 10 more. Returns the processes still
    alive (none, unless unkillable)."""
    servers = list(servers)
    procs = [proc for server in servers for proc in server.processes()]
    for server in servers:
        _signal_group(server.process.pid, signal.SIGINT)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        _, procs = psutil.wait_procs([p for p in procs if _alive(p)], timeout=wait)
        procs = [p for p in procs if _alive(p)]
        if not procs:
            break
        for server in servers:
            _signal_group(server.process.pid, sig)
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
    else:
        _, procs = psutil.wait_procs(procs, timeout=5.0)
    for server in servers:
        try:
            server.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
    return [p for p in procs if _alive(p)]


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --- Memory ------------------------------------------------------------------------------------


class MemoryMonitor(threading.Thread):
    """Samples the total memory of the process trees and of this process every ``interval``
    seconds: RSS each time, PSS every ``pss_every``-th time (reading it costs a few ms per
    process). RSS counts the pages forked processes share once per process, so its sum is
    an upper bound; PSS splits shared pages between their sharers."""

    def __init__(self, trees: Iterable[ProcessTree], interval: float = 1.0, pss_every: int = 3) -> None:
        super().__init__(name="memory-monitor", daemon=True)
        self.trees = list(trees)
        self.interval = interval
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_processes = 0
        self.samples = 0
        self.phase = "start-up"  # what the demo is doing; the peak remembers it
        self.peak_phase = ""
        self._stop_event = threading.Event()

    def sample(self, with_pss: bool = True) -> int:
        """Record one sample; the total RSS now."""
        procs = {p.pid: p for tree in self.trees for p in tree.processes()}
        procs.setdefault(os.getpid(), psutil.Process())
        rss = pss = 0
        for proc in procs.values():
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                continue
            if with_pss:
                pss += _pss(proc.pid)
        if rss > self.peak_rss:
            self.peak_rss, self.peak_phase = rss, self.phase
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)
        self.peak_processes = max(self.peak_processes, len(procs))
        self.samples += 1
        return rss

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample(with_pss=self.samples % self.pss_every == 0)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5.0)


def _pss(pid: int) -> int:
    """Proportional set size in bytes from /proc (0 where the kernel does not report it)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# --- Airflow REST API --------------------------------------------------------------------------


class Unreachable(DemoError):
    """The API server did not answer (refused, reset or timed out)."""


class ApiError(DemoError):
    """The API answered with an unexpected status."""

    def __init__(self, status: int, method: str, path: str, detail: Any) -> None:
        super().__init__(f"{method} {path} answered {status}: {detail}")
        self.status = status
        self.detail = detail


class AirflowClient:
    """The few calls of Airflow's REST API v2 the demo needs, with a bearer token for the
    generated admin password."""

    def __init__(self, url: str, airflow_home: Path, username: str = "admin") -> None:
        self.url = url.rstrip("/")
        self.airflow_home = Path(airflow_home)
        self.username = username
        self._token: str | None = None

    @property
    def password(self) -> str:
        """The password standalone generated for ``username``."""
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        try:
            return json.loads(path.read_text())[self.username]
        except (OSError, ValueError, KeyError) as exc:
            raise DemoError(f"no generated password for {self.username!r} in {path}: {exc}") from None

    def _call(self, method: str, path: str, body: Any = None, token: str | None = None,
              timeout: float = 30.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (OSError, http.client.HTTPException) as error:  # URLError, timeouts and resets are OSErrors
            raise Unreachable(f"{method} {self.url}{path}: {error}") from None
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return status, payload

    def token(self) -> str:
        if self._token is None:
            status, payload = self._call("POST", "/auth/token",
                                         {"username": self.username, "password": self.password})
            if status not in (200, 201) or not isinstance(payload, dict) or "access_token" not in payload:
                raise ApiError(status, "POST", "/auth/token", payload)
            self._token = payload["access_token"]
        return self._token

    def request(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        """Call ``/api/v2`` + ``path``; raise ``ApiError`` unless the status is in ``ok``."""
        full = "/api/v2" + path
        status, payload = self._call(method, full, body, token=self.token())
        if status == 401:  # the token expired: one fresh login
            self._token = None
            status, payload = self._call(method, full, body, token=self.token())
        if status not in ok:
            detail = payload.get("detail", payload) if isinstance(payload, dict) else payload
            raise ApiError(status, method, full, detail)
        return payload

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        """Wait until the DAG processor has registered every DAG; on time out name the import
        errors Airflow reports."""
        started = time.monotonic()
        for dag_id in dag_ids:
            while True:
                try:
                    self.request("GET", f"/dags/{_quote(dag_id)}")
                    break
                except Unreachable:
                    pass
                except ApiError as error:
                    if error.status != 404:
                        raise
                if time.monotonic() - started > timeout:
                    errors = self.request("GET", "/importErrors").get("import_errors", [])
                    found = "; ".join(f"{e.get('filename')}: {e.get('stack_trace', '')[-300:]}" for e in errors)
                    raise DemoError(f"DAG {dag_id} not loaded after {timeout:.0f} s"
                                    + (f"; import errors: {found}" if found else ""))
                time.sleep(1.0)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{_quote(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now with ``conf``; its run id. Airflow validates the conf
        against the DAG's Params first: a bad value is an ``ApiError`` with status 400."""
        run = self.request("POST", f"/dags/{_quote(dag_id)}/dagRuns",
                           {"logical_date": None, "conf": dict(conf or {})})
        return run["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}")

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{_quote(dag_id)}/dagRuns?limit=100")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances"
        return self.request("GET", path)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = (f"/dags/{_quote(dag_id)}/dagRuns/{_quote(run_id)}/taskInstances/{_quote(task_id)}"
                f"/xcomEntries/{_quote(key)}")
        value = self.request("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def wait_for_runs(self, runs: Mapping[str, str], timeout: float = 900.0, poll: float = 2.0,
                      on_change=None) -> dict[str, dict]:
        """Poll the runs ``{dag_id: run_id}`` until each has finished; their last API records.
        ``on_change(dag_id, run, tasks)`` hears each change of a run's task states."""
        pending, done, last = dict(runs), {}, {}
        started = time.monotonic()
        while pending:
            for dag_id, run_id in list(pending.items()):
                try:
                    run = self.dag_run(dag_id, run_id)
                    tasks = self.task_instances(dag_id, run_id) if on_change is not None else []
                except Unreachable:  # a busy API server (2 cores, four tasks starting) may not answer in time
                    continue
                states = tuple((t["task_id"], t.get("state")) for t in tasks)
                if on_change is not None and states != last.get(dag_id):
                    last[dag_id] = states
                    on_change(dag_id, run, tasks)
                if run["state"] in FINISHED_STATES:
                    done[dag_id] = run
                    del pending[dag_id]
            if pending and time.monotonic() - started > timeout:
                raise DemoError(f"runs not finished after {timeout:.0f} s: "
                                + ", ".join(f"{d} ({r})" for d, r in pending.items()))
            if pending:
                time.sleep(poll)
        return done


def _quote(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def run_seconds(run: Mapping[str, Any]) -> float | None:
    """A DAG run's duration from its ``start_date`` and ``end_date``."""
    from datetime import datetime

    if not run.get("start_date") or not run.get("end_date"):
        return None
    start = datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def task_log_path(airflow_home: Path, dag_id: str, run_id: str, task: Mapping[str, Any]) -> Path:
    """Where the task's attempt log lives (Airflow's default log file name template)."""
    folder = Path(airflow_home) / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task['task_id']}"
    if (task.get("map_index") or -1) >= 0:
        folder = folder / f"map_index={task['map_index']}"
    return folder / f"attempt={max(int(task.get('try_number') or 1), 1)}.log"


# --- The demo ----------------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def _plan_row(client: AirflowClient, dag_id: str, run: Mapping[str, Any]) -> dict[str, Any]:
    row = {"dag": dag_id, "state": run["state"], "seconds": run_seconds(run)}
    try:
        allocation = client.xcom(dag_id, run["dag_run_id"], "allocate")
    except DemoError:  # no allocation (the run failed before it) or no answer: the row shows "-"
        return row
    row.update({key: allocation.get(key) for key in ("makespan", "utilization", "imbalance", "pareto_size",
                                                     "mlflow_run_id", "mlflow_run_url")})
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """The runs' chosen plans as a fixed-width table."""
    def num(value, fmt):
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    lines = [f"{'DAG':<20} {'state':<8} {'run s':>6} {'makespan s':>11} {'utiliz.':>8} {'imbal.':>7} "
             f"{'front':>5}  MLflow run id"]
    for r in rows:
        lines.append(f"{r['dag']:<20} {r['state']:<8} {num(r.get('seconds'), '.1f'):>6} "
                     f"{num(r.get('makespan'), '.2f'):>11} {num(r.get('utilization'), '.3f'):>8} "
                     f"{num(r.get('imbalance'), '.3f'):>7} {num(r.get('pareto_size'), 'd'):>5}  "
                     f"{r.get('mlflow_run_id') or '-'}")
    return "\n".join(lines)


def _report_failures(client: AirflowClient, dag_id: str, run_id: str) -> None:
    for task in client.task_instances(dag_id, run_id):
        if task.get("state") in FAILED_TASK_STATES:
            where = task_log_path(client.airflow_home, dag_id, run_id, task)
            _say(f"  {dag_id}: task {task['task_id']} {task['state']}"
                 + (f"; log: {where}" if task["state"] == "failed" else ""))
            if task["state"] == "failed":
                _say(f"    in the UI: {client.url}/dags/{dag_id}/runs/{_quote(run_id)}/tasks/{task['task_id']}")


class _Progress:
    """Prints the tasks whose state changed since the last poll."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], str | None] = {}

    def __call__(self, dag_id: str, run: Mapping[str, Any], tasks: list[dict]) -> None:
        changed = []
        for task in tasks:
            key, state = (dag_id, task["task_id"]), task.get("state")
            if state and self.states.get(key) != state:
                changed.append(f"{task['task_id']} {state}")
            self.states[key] = state
        if changed:
            _say(f"{dag_id}: " + ", ".join(changed))


def _raise_stop(signum, frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def wait_warmup(warmup: ProcessTree, timeout: float = 300.0) -> float | None:
    """Wait for the Numba warm-up; its seconds, or None when it failed (the tasks then
    compile for themselves: slower, not wrong)."""
    started = time.monotonic()
    try:
        code = warmup.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _say(f"the Numba warm-up is still compiling after {timeout:.0f} s; going on without it")
        return None
    if code != 0:
        _say(f"the Numba warm-up failed (status {code}); tasks compile for themselves. Last lines of "
             f"{warmup.log_path}:\n{warmup.log_tail(15)}")
        return None
    return time.monotonic() - started


def run_demo(state_dir: Path, exit_when_done: bool = False, *, conf: Mapping[str, Any] | None = None,
             dag_ids: Iterable[str] = WORKFLOW_DAGS, run_timeout: float = 900.0) -> int:
    """Start MLflow and Airflow under ``state_dir``, run ``dag_ids`` once each with ``conf``
    (default: the DAGs' defaults), print the logins and the chosen plans, then keep the
    servers up until Ctrl-C or SIGTERM (or stop at once with ``exit_when_done``).
    Returns 0 when every run succeeded, 1 otherwise, 130 when interrupted before the end."""
    state_dir = Path(state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / PID_FILE
    trees: list[ProcessTree] = []
    monitor: MemoryMonitor | None = None
    status = 1
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    # Also when launched with SIGINT ignored (``apportion demo &``), `kill -INT` must stop it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGHUP, _raise_stop)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        mlflow_port = free_port(MLFLOW_PORT)
        airflow_port = free_port(AIRFLOW_PORT)
        if airflow_port == mlflow_port:
            airflow_port = free_port()
        _say(f"state in {state_dir}, logs in {state_dir / 'logs'}; stop with Ctrl-C or kill -INT $(cat {pid_file})")
        mlflow = start_mlflow(state_dir, mlflow_port)
        trees.append(mlflow)
        airflow = start_airflow(state_dir, airflow_port, mlflow.url)
        trees.append(airflow)
        warmup = start_numba_warmup(state_dir)
        trees.append(warmup)
        monitor = MemoryMonitor(trees)
        monitor.start()
        _say(f"starting MLflow on {mlflow.url} and Airflow standalone on {airflow.url}, and compiling the "
             "kernels into the Numba cache (30-90 s) ...")
        took = wait_healthy([mlflow, airflow])
        _say("healthy: " + ", ".join(f"{name} after {seconds:.0f} s" for name, seconds in took.items()))
        client = AirflowClient(airflow.url, state_dir / "airflow")
        dag_ids = list(dag_ids)
        client.wait_for_dags(dag_ids)
        wait_warmup(warmup)

        # One run after the other: on two cores concurrent runs only stretch each other, and
        # each run's duration then says what one run costs.
        runs, finished, progress = {}, {}, _Progress()
        for dag_id in dag_ids:
            monitor.phase = f"{dag_id} run"
            client.unpause(dag_id)
            runs[dag_id] = client.trigger(dag_id, conf)
            _say(f"triggered {dag_id}: run {runs[dag_id]}")
            finished.update(client.wait_for_runs({dag_id: runs[dag_id]}, timeout=run_timeout, on_change=progress))
            _say(f"{dag_id}: {finished[dag_id]['state']} in {run_seconds(finished[dag_id]) or 0:.1f} s")
        rows = [_plan_row(client, dag_id, finished[dag_id]) for dag_id in dag_ids]
        monitor.sample()

        print()
        print(f"Airflow  {airflow.url}   login: {client.username} / {client.password}")
        print(f"MLflow   {mlflow.url}")
        print()
        print(format_table(rows))
        print()
        print(f"peak memory of the servers, their tasks and this process: {_gib(monitor.peak_rss)} RSS, "
              f"{_gib(monitor.peak_pss)} PSS, at most {monitor.peak_processes} processes (RSS peak during the "
              f"{monitor.peak_phase})")
        failed = [dag_id for dag_id in dag_ids if finished[dag_id]["state"] != "success"]
        for dag_id in failed:
            _say(f"{dag_id} run {runs[dag_id]} {finished[dag_id]['state']}:")
            _report_failures(client, dag_id, runs[dag_id])
        status = 1 if failed else 0
        if exit_when_done or failed:
            return status
        _say(f"servers stay up; stop with Ctrl-C or kill -INT {os.getpid()} (pid also in {pid_file})")
        while True:
            for server in (mlflow, airflow):
                if server.process.poll() is not None:
                    raise DemoError(f"{server.name} exited with status {server.process.returncode}; "
                                    f"last lines of {server.log_path}:\n{server.log_tail()}")
            time.sleep(1.0)
    except (KeyboardInterrupt, _Stop) as stop:
        _say(f"{stop or 'SIGINT'}: stopping")
        return status if status == 0 else 130
    except DemoError as error:
        _say(f"error: {error}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        try:
            if monitor is not None:
                monitor.stop()
            if trees:
                _say("shutting down " + ", ".join(tree.name for tree in trees) + " ...")
                left = stop_servers(trees)
                if left:
                    _say("still running after SIGKILL: " + ", ".join(str(p.pid) for p in left))
                else:
                    _say("all processes stopped")
            pid_file.unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, cannot be restored
                    signal.signal(sig, handler)

"""``apportion demo``: Airflow standalone and an MLflow server on this machine, the three
workflow DAGs on their schedules with a short history of runs (``apportion.stack.history``),
their chosen plans and ``apportion compare``'s view of each workflow printed.

Everything lives under the state dir (default ``.demo/``): the Airflow home with its SQLite
metadata DB and task logs, the MLflow store, the Numba cache, the servers' logs and
``demo.pid``. Both servers listen on 127.0.0.1 (8080 and 5000 when free). A shutdown (Ctrl-C,
SIGTERM, or the end of an ``--exit-when-done`` run) reaches every process of their trees
(``apportion.stack.processes``).

The building blocks live in the other modules of ``apportion.stack``;
tests/integration/test_standalone.py drives them directly.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from apportion.stack.airflow_client import AirflowClient, quote_part, run_seconds, task_log_path
from apportion.stack.errors import DemoError
from apportion.stack.history import BACKFILL_RUNS, History, backfill_dates, run_label
from apportion.stack.memory import MemoryMonitor
from apportion.stack.processes import ProcessTree, free_port, stop_servers
from apportion.stack.servers import (
    AIRFLOW_PORT,
    MLFLOW_PORT,
    WORKFLOW_DAGS,
    start_airflow,
    start_mlflow,
    start_numba_warmup,
    wait_healthy,
)

FAILED_TASK_STATES = ("failed", "upstream_failed")
PID_FILE = "demo.pid"


class _Stop(Exception):
    """SIGTERM or SIGHUP reached the demo process."""


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def _plan_row(client: AirflowClient, run: Mapping[str, Any]) -> dict[str, Any]:
    dag_id = run["dag_id"]
    row = {"dag": dag_id, "run": run_label(run), "state": run["state"], "seconds": run_seconds(run)}
    try:
        allocation = client.xcom(dag_id, run["dag_run_id"], "allocate")
    except DemoError:  # no allocation (the run failed before it) or no answer: the row shows "-"
        return row
    row.update({key: allocation.get(key) for key in ("makespan", "utilization", "imbalance", "pareto_size",
                                                     "warm_start", "moved_tasks", "mlflow_run_id",
                                                     "mlflow_experiment_id")})
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """The runs' chosen plans as a fixed-width table; ``moved`` counts the tasks placed on
    another node than the previous run's plan (``-``: a cold start)."""
    def num(value, fmt):
        return format(value, fmt) if isinstance(value, (int, float)) else "-"

    lines = [f"{'DAG':<19} {'run':<26} {'state':<8} {'run s':>6} {'makespan s':>11} {'utiliz.':>8} "
             f"{'imbal.':>7} {'front':>5} {'moved':>5}  MLflow run id"]
    for r in rows:
        moved = r.get("moved_tasks") if r.get("warm_start") else None
        lines.append(f"{r['dag']:<19} {r.get('run', '-'):<26} {r['state']:<8} {num(r.get('seconds'), '.1f'):>6} "
                     f"{num(r.get('makespan'), '.2f'):>11} {num(r.get('utilization'), '.3f'):>8} "
                     f"{num(r.get('imbalance'), '.3f'):>7} {num(r.get('pareto_size'), 'd'):>5} "
                     f"{num(moved, '.0f'):>5}  {r.get('mlflow_run_id') or '-'}")
    return "\n".join(lines)


def _report_failures(client: AirflowClient, dag_id: str, run_id: str) -> None:
    for task in client.task_instances(dag_id, run_id):
        if task.get("state") in FAILED_TASK_STATES:
            where = task_log_path(client.airflow_home, dag_id, run_id, task)
            _say(f"  {dag_id}: task {task['task_id']} {task['state']}"
                 + (f"; log: {where}" if task["state"] == "failed" else ""))
            if task["state"] == "failed":
                _say(f"    in the UI: {client.url}/dags/{dag_id}/runs/{quote_part(run_id)}/tasks/{task['task_id']}")


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


def _start_servers(state_dir: Path, trees: list[ProcessTree]) -> tuple[ProcessTree, ProcessTree, ProcessTree]:
    """MLflow, Airflow and the Numba warm-up, each added to ``trees`` as soon as it runs (so that
    a failure later still stops it)."""
    mlflow_port = free_port(MLFLOW_PORT)
    airflow_port = free_port(AIRFLOW_PORT)
    if airflow_port == mlflow_port:
        airflow_port = free_port()
    mlflow = start_mlflow(state_dir, mlflow_port)
    trees.append(mlflow)
    airflow = start_airflow(state_dir, airflow_port, mlflow.url)
    trees.append(airflow)
    warmup = start_numba_warmup(state_dir)
    trees.append(warmup)
    return mlflow, airflow, warmup


def _run_history(client: AirflowClient, dag_ids: list[str], conf: Mapping[str, Any] | None,
                 backfill_runs: int, monitor: MemoryMonitor, timeout: float) -> list[dict]:
    """The history (``apportion.stack.history``): this session's runs once all have finished,
    the memory monitor told which runs are running."""
    history = History(client, dag_ids, conf, backfill_dates(datetime.now(timezone.utc), backfill_runs), _say)
    history.start()

    def note_phase(history: History) -> None:
        running = history.active_labels()
        monitor.phase = ", ".join(running) + " runs" if running else "a moment with no run running"

    return history.wait(timeout, on_round=note_phase)


def compare_workflows(mlflow_url: str, dag_ids: Iterable[str], out_dir: Path) -> list[str]:
    """What ``apportion compare`` shows for each workflow (``compare_runs``'s table, whatever
    columns it gives), its chart written to ``out_dir/<dag>-runs.png``; the lines to print."""
    from apportion.operators.tracking import compare_runs

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for dag_id in dag_ids:
        chart = out_dir / f"{dag_id}-runs.png"
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # its own print of the table: formatted below
                table = compare_runs(dag_id, tracking_uri=mlflow_url, out=chart)
        except Exception as error:  # whatever failed, the report goes on: the runs are recorded either way
            lines.append(f"apportion compare {dag_id}: failed: {_first_line(error)}")
            continue
        lines.append(f"apportion compare {dag_id}  (chart: {chart})")
        lines.append(table.to_string(index=False, float_format=lambda x: f"{x:.4g}") if len(table) else "  no runs")
        lines.append("")
    return lines


def enactment_errors(mlflow_url: str, dag_id: str = "medical_diagnosis") -> list[str]:
    """The enacted runs of ``dag_id``, oldest first: each one's median relative step error
    (``enact/step_abs_relative_error_median``) and the calibration revision it planned with."""
    from mlflow.tracking import MlflowClient

    metric = "enact/step_abs_relative_error_median"
    client = MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name(dag_id)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], filter_string=f"metrics.`{metric}` >= 0",
                              order_by=["attributes.start_time ASC"])
    if not runs:
        return []
    steps = [f"{run.data.metrics[metric]:.3g} (calibration revision "
             f"{run.data.params.get('calibration/planned_revision', '-')})" for run in runs]
    return [f"{dag_id}'s enacted runs, median |realised - predicted| / predicted step duration: "
            + " -> ".join(steps), ""]


def compare_url(mlflow_url: str, rows: Iterable[Mapping[str, Any]]) -> str | None:
    """MLflow's compare view of the rows' runs (its ``#/compare-runs`` route)."""
    runs = [r["mlflow_run_id"] for r in rows if r.get("mlflow_run_id")]
    experiments = sorted({str(r["mlflow_experiment_id"]) for r in rows if r.get("mlflow_experiment_id")})
    if len(runs) < 2:
        return None
    query = urllib.parse.urlencode({"runs": json.dumps(runs, separators=(",", ":")),
                                    "experiments": json.dumps(experiments, separators=(",", ":"))},
                                   quote_via=urllib.parse.quote)
    return f"{mlflow_url}/#/compare-runs?{query}"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _print_report(client: AirflowClient, mlflow: ProcessTree, rows: list[dict[str, Any]],
                  monitor: MemoryMonitor, compared: list[str]) -> None:
    print()
    print(f"Airflow  {client.url}   login: {client.username} / {client.password}")
    print(f"MLflow   {mlflow.url}")
    print()
    print(format_table(rows))
    print()
    print(f"peak memory of the servers, their tasks and this process: {_gib(monitor.peak_rss)} RSS, "
          f"{_gib(monitor.peak_pss)} PSS, at most {monitor.peak_processes} processes (RSS peak during "
          f"{monitor.peak_phase})")
    print()
    print("\n".join(compared))
    for dag_id in dict.fromkeys(row["dag"] for row in rows):
        url = compare_url(mlflow.url, [row for row in rows if row["dag"] == dag_id])
        if url:
            print(f"MLflow compare view of {dag_id}'s runs: {url}")


def _serve_until_stopped(servers: Iterable[ProcessTree], pid_file: Path) -> None:
    """Keep the servers up until a signal ends the demo; ``DemoError`` when one exits by itself."""
    _say("servers stay up, the schedules adding runs (traffic_prediction every 15 minutes, medical_diagnosis "
         "hourly, multimodal_speech daily);")
    _say(f"stop with Ctrl-C or kill -INT {os.getpid()} (pid also in {pid_file})")
    while True:
        for server in servers:
            if server.process.poll() is not None:
                raise DemoError(f"{server.name} exited with status {server.process.returncode}; "
                                f"last lines of {server.log_path}:\n{server.log_tail()}")
        time.sleep(1.0)


def _shut_down(monitor: MemoryMonitor | None, trees: list[ProcessTree], pid_file: Path) -> None:
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


def run_demo(state_dir: Path, exit_when_done: bool = False, *, conf: Mapping[str, Any] | None = None,
             dag_ids: Iterable[str] = WORKFLOW_DAGS, backfill_runs: int = BACKFILL_RUNS,
             run_timeout: float = 1800.0) -> int:
    """Start MLflow and Airflow under ``state_dir``, make the history (schedules on, one
    manual run each with ``conf``, ``backfill_runs`` backfilled runs of traffic_prediction with
    ``conf``), print the logins, the chosen plans and the comparison of each workflow's runs,
    then keep the servers up, scheduled runs coming, until Ctrl-C or SIGTERM (or stop at once
    with ``exit_when_done``). Returns 0 when every run succeeded, 1 otherwise, 130 when
    interrupted before the end."""
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
        _say(f"state in {state_dir}, logs in {state_dir / 'logs'}; stop with Ctrl-C or kill -INT $(cat {pid_file})")
        mlflow, airflow, warmup = _start_servers(state_dir, trees)
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
        runs = _run_history(client, dag_ids, conf, backfill_runs, monitor, run_timeout)
        rows = [_plan_row(client, run) for run in runs]
        monitor.phase = "the comparison"
        compared = compare_workflows(mlflow.url, dag_ids, state_dir / "compare")
        compared += enactment_errors(mlflow.url) if "medical_diagnosis" in dag_ids else []
        monitor.sample()
        _print_report(client, mlflow, rows, monitor, compared)
        failed = [run for run in runs if run["state"] != "success"]
        for run in failed:
            _say(f"{run['dag_id']} run {run['dag_run_id']} {run['state']}:")
            _report_failures(client, run["dag_id"], run["dag_run_id"])
        status = 1 if failed else 0
        if exit_when_done or failed:
            return status
        _serve_until_stopped((mlflow, airflow), pid_file)
    except (KeyboardInterrupt, _Stop) as stop:
        _say(f"{stop or 'SIGINT'}: stopping")
        return status if status == 0 else 130
    except DemoError as error:
        _say(f"error: {error}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        try:
            _shut_down(monitor, trees, pid_file)
        finally:
            for sig, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, cannot be restored
                    signal.signal(sig, handler)

"""The MLflow hook: tracking URI and credentials from an Airflow connection, and no credential
in what a run leaves behind (XCom, tags, params, links)."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.tracking import MlflowClient

from apportion.operators.allocating import allocate
from apportion.operators.hooks import (
    PASSWORD_ENV,
    USERNAME_ENV,
    ApportionMlflowHook,
    TrackingNotConfigured,
    resolve_tracking_uri,
)
from apportion.operators.tracking import AirflowRef, TrackingUnavailable, run_url
from tests.operators.basic_auth import BasicAuthProxy
from tests.operators.conftest import SMALL, local

SECRET = "s3cr3t-pa55"


@pytest.fixture
def no_credentials_in_env(monkeypatch):
    """Whatever the hook puts into the environment is undone after the test."""
    for name in (USERNAME_ENV, PASSWORD_ENV):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)


def test_tracking_uri_comes_from_argument_then_env_then_airflow_connection(monkeypatch, no_credentials_in_env):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert resolve_tracking_uri("http://explicit:1") == "http://explicit:1"
    assert resolve_tracking_uri() == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # A real Airflow connection, defined the way deployments do: an AIRFLOW_CONN_* variable.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", '{"conn_type": "apportion_mlflow", "host": "mlflow.internal", '
                                                  '"port": 5001, "schema": "https"}')
    assert resolve_tracking_uri(conn_id="mlflow_test") == "https://mlflow.internal:5001"
    with pytest.raises(TrackingNotConfigured, match="mlflow_missing"):
        resolve_tracking_uri(conn_id="mlflow_missing")


def test_login_and_password_go_to_the_client_never_into_the_uri(monkeypatch, no_credentials_in_env):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_AUTH", json.dumps({
        "conn_type": "apportion_mlflow", "host": "mlflow.internal", "port": 5000, "login": "ada", "password": SECRET}))
    hook = ApportionMlflowHook("mlflow_auth")
    assert hook.get_tracking_uri() == "http://mlflow.internal:5000"
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("ada", SECRET)
    # A URI written with its credentials (the connection's URI form) loses them too.
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_URI", f"apportion-mlflow://ada:{SECRET}@mlflow.internal:5000")
    assert resolve_tracking_uri(conn_id="mlflow_uri") == "http://mlflow.internal:5000"
    assert run_url(f"http://ada:{SECRET}@mlflow.internal:5000", "1", "r") == \
        "http://mlflow.internal:5000/#/experiments/1/runs/r"


def test_an_unreachable_server_is_named_without_its_credentials(closed_port_uri):
    from apportion.operators.tracking import TrackingUnavailable, check_reachable

    with_credentials = closed_port_uri.replace("http://", f"http://ada:{SECRET}@")
    with pytest.raises(TrackingUnavailable) as caught:
        check_reachable(with_credentials, attempts=1)
    assert closed_port_uri in str(caught.value) and SECRET not in str(caught.value)


def test_a_run_tracked_through_a_connection_with_credentials_leaves_none_behind(
        mlflow_tracking_uri, monkeypatch, tmp_path, dag_id, no_credentials_in_env):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_STORE", json.dumps({
        "conn_type": "apportion_mlflow", "login": "ada", "password": SECRET,
        "extra": {"tracking_uri": mlflow_tracking_uri}}))
    summary = allocate(**SMALL, mlflow_conn_id="mlflow_store", output_root=tmp_path / "runs",
                       ref=AirflowRef(dag_id, "r1", "allocate"))
    assert summary["tracking_uri"] == mlflow_tracking_uri
    assert SECRET not in json.dumps(summary)
    run = MlflowClient(mlflow_tracking_uri).get_run(summary["mlflow_run_id"])
    assert SECRET not in json.dumps({**run.data.tags, **run.data.params})


# --- A server that does not answer: every step fails in bounded time, keeping its files ---------

# Three tries with 1 s and 2 s pauses take about 3 s on a closed port; the rest of the bound is the
# step's own work (a cold Numba cache under load took 17 s once). MLflow's own retries (7, backoff
# factor 2) would take minutes, so the bound still tells the hook's limit from none.
STEP_BOUND_SECONDS = 60


def _steps(allocation, dag_id, output_root):
    """Every step after allocate that talks to MLflow, each with the files it writes first."""
    from apportion.operators.chosen_plan import evaluate_plan
    from apportion.operators.drill import replan_after_failure
    from apportion.operators.publishing import record_run
    from apportion.operators.simulation import simulate_plan
    from tests.operators.conftest import task_ref

    return {
        "evaluate": (lambda: evaluate_plan(allocation), local(allocation["artifact_uri"]) / "evaluation.json"),
        "simulate": (lambda: simulate_plan(allocation, samples=20, output_root=output_root,
                                           ref=task_ref(dag_id, "simulate_plan")),
                     output_root / dag_id / "manual__1" / "simulate_plan" / "simulation.json"),
        "drill": (lambda: replan_after_failure(allocation, output_root=output_root,
                                               ref=task_ref(dag_id, "inject_failure")),
                  output_root / dag_id / "manual__1" / "inject_failure" / "drill.json"),
        "record": (lambda: record_run(allocation), None),
    }


def test_every_step_fails_within_a_bound_on_an_unreachable_server_and_keeps_its_files(
        allocation, dag_id, output_root, closed_port_uri):
    unreachable = {**allocation, "tracking_uri": closed_port_uri}
    for name, (step, kept) in _steps(unreachable, dag_id, output_root).items():
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable) as caught:
            step()
        seconds = time.monotonic() - started
        message = str(caught.value)
        assert seconds < STEP_BOUND_SECONDS, (name, seconds)
        assert f"MLflow tracking server {closed_port_uri} is unreachable after 3 attempts" in message, name
        assert "a retry uploads them" in message, name
        if kept is not None:
            assert kept.is_file() and str(kept.parent) in message, name


class _HangingServer(ThreadingHTTPServer):
    """Answers /health (unless ``silent``), then never answers anything else in time: a server
    dying under load."""

    daemon_threads = True

    def __init__(self, silent: bool = False):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/health") and not silent:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                else:
                    time.sleep(30)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_server_that_stops_answering_is_bounded_by_the_hook_too(tmp_path):
    server = _HangingServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="stopped answering.*results kept in"):
            with ApportionMlflowHook(None, uri, attempts=2, timeout=1).upload_from(tmp_path) as tracker:
                tracker.client.get_experiment_by_name("anything")
        assert time.monotonic() - started < 8
    finally:
        server.shutdown()
        server.server_close()


# --- Credentials written into the URI ----------------------------------------------------------

def test_credentials_in_a_uri_are_split_off_for_the_client(monkeypatch, no_credentials_in_env):
    assert resolve_tracking_uri(f"http://ada:{SECRET}%2F1@mlflow.internal:5000") == "http://mlflow.internal:5000"
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("ada", SECRET + "/1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"https://bob:{SECRET}@mlflow.internal")
    assert resolve_tracking_uri() == "https://mlflow.internal"
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("bob", SECRET)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_EXTRA", json.dumps({
        "conn_type": "apportion_mlflow", "extra": {"tracking_uri": f"http://cy:{SECRET}@mlflow.internal:5000"}}))
    assert resolve_tracking_uri(conn_id="mlflow_extra") == "http://mlflow.internal:5000"
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("cy", SECRET)


def test_the_reachability_check_logs_in_and_wrong_credentials_fail_at_once(no_credentials_in_env):
    with BasicAuthProxy("ada", SECRET) as server:
        with_credentials = server.url.replace("http://", f"http://ada:{SECRET}@")
        assert ApportionMlflowHook(None, with_credentials).get_conn().tracking_uri == server.url
        assert server.requests == [("GET", "/health", True)]
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable, match=r"after 1 attempts \(HTTP Error 401") as caught:
            ApportionMlflowHook(None, server.url.replace("http://", "http://ada:wrong-pa55@")).get_conn()
        assert time.monotonic() - started < 1 and "wrong-pa55" not in str(caught.value)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (SQLite store, proxied artifacts): about 10-15 s to start."""
    import socket
    import subprocess
    import sys
    import urllib.request

    folder = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art")],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=(folder / "server.log").open("wb"),
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


@pytest.mark.integration
def test_a_server_demanding_basic_auth_gets_the_credentials_and_nothing_keeps_them(
        mlflow_server, monkeypatch, tmp_path, dag_id, no_credentials_in_env):
    from apportion.operators.chosen_plan import evaluate_plan
    from apportion.operators.publishing import record_run

    monkeypatch.chdir(tmp_path)
    with BasicAuthProxy("ada", SECRET, upstream=mlflow_server) as server:
        with_credentials = server.url.replace("http://", f"http://ada:{SECRET}@")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", with_credentials)
        summary = allocate(**SMALL, output_root=tmp_path / "runs", ref=AirflowRef(dag_id, "r1", "allocate"))
        evaluation = evaluate_plan(summary)
        record_run(summary, evaluation=evaluation)
        assert summary["tracking_uri"] == server.url and summary["mlflow_run_url"].startswith(server.url + "/#/")
        assert evaluation["verified"] and all(authorised for _, _, authorised in server.requests)
        assert any(method == "PUT" for method, _, _ in server.requests)  # artifacts went through it too
        assert SECRET not in json.dumps([summary, evaluation]) + json.dumps(server.requests)
        run = MlflowClient(with_credentials).get_run(summary["mlflow_run_id"])
        assert SECRET not in json.dumps({**run.data.tags, **run.data.params})
        written = [path.read_bytes() for path in (tmp_path / "runs").rglob("*") if path.is_file()]
        assert written and not any(SECRET.encode() in data for data in written)


@pytest.mark.slow
def test_a_silent_server_fails_a_step_within_the_default_bound(tmp_path):
    server = _HangingServer(silent=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(TrackingUnavailable, match="unreachable after 3 attempts.*results kept in"):
            with ApportionMlflowHook(None, uri).upload_from(tmp_path):
                pass
        assert time.monotonic() - started < 30
    finally:
        server.shutdown()
        server.server_close()

"""The REST client's helpers, and what it raises when nothing answers."""

from __future__ import annotations

import time

import pytest

from apportion.stack.airflow_client import AirflowClient, Unreachable, run_seconds, task_log_path
from apportion.stack.errors import DemoError
from apportion.stack.processes import free_port


def test_unreachable_server_is_one_error_quickly(tmp_path):
    client = AirflowClient(f"http://127.0.0.1:{free_port()}", tmp_path)
    started = time.monotonic()
    with pytest.raises(Unreachable, match="GET http://127.0.0.1"):
        client._call("GET", "/api/v2/version")
    assert time.monotonic() - started < 5


def test_missing_password_names_the_file(tmp_path):
    with pytest.raises(DemoError, match="simple_auth_manager_passwords.json.generated"):
        _ = AirflowClient("http://127.0.0.1:1", tmp_path).password


def test_run_seconds_and_task_log_path(tmp_path):
    run = {"start_date": "2026-12-04T10:00:00Z", "end_date": "2026-12-04T10:00:42.5Z"}
    assert run_seconds(run) == 42.5
    assert run_seconds({"start_date": None}) is None
    task = {"task_id": "allocate", "map_index": 2, "try_number": 0}
    assert task_log_path(tmp_path, "d", "r", task) == (
        tmp_path / "logs" / "dag_id=d" / "run_id=r" / "task_id=allocate" / "map_index=2" / "attempt=1.log")


class _FlakyApi:
    """An HTTP server standing in for Airflow's API: a token, and ``POST .../dagRuns`` answered
    from ``answers`` in turn (status, whether the run is made), as a busy SQLite answers."""

    def __init__(self, answers):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answers, self.bodies, self.runs = list(answers), [], set()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/auth/token":
                    status, reply = 201, {"access_token": "t"}
                else:
                    api.bodies.append(body)
                    status, made = api.answers.pop(0)
                    if body["dag_run_id"] in api.runs:
                        status, made = 409, False
                    if made:
                        api.runs.add(body["dag_run_id"])
                    reply = {"dag_run_id": body["dag_run_id"]} if status < 300 else {"detail": {"reason": "x"}}
                raw = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _client(api: _FlakyApi, home) -> AirflowClient:
    (home / "simple_auth_manager_passwords.json.generated").write_text('{"admin": "p"}')
    return AirflowClient(api.url, home)


@pytest.mark.parametrize("answers", [[(500, False), (201, True)], [(500, True), (201, True)]],
                         ids=["nothing-written", "written-then-500"])
def test_trigger_repeats_a_failed_call_with_the_same_run_id_and_makes_one_run(tmp_path, answers):
    api = _FlakyApi(answers)
    client = _client(api, tmp_path)
    try:
        run_id = client.trigger("medical_diagnosis", {"cases": 3})
    finally:
        api.server.shutdown()
    assert run_id.startswith("manual__") and api.runs == {run_id}
    assert [body["dag_run_id"] for body in api.bodies] == [run_id, run_id]
    assert all(body["conf"] == {"cases": 3} for body in api.bodies)


def test_trigger_does_not_repeat_a_refused_conf(tmp_path):
    from apportion.stack.airflow_client import ApiError

    api = _FlakyApi([(400, False), (201, True)])
    client = _client(api, tmp_path)
    try:
        with pytest.raises(ApiError, match="answered 400"):
            client.trigger("medical_diagnosis", {"cases": -1})
    finally:
        api.server.shutdown()
    assert len(api.bodies) == 1 and api.runs == set()

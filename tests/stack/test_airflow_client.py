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

"""The few calls of Airflow's REST API v2 the demo and its tests need."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from apportion.stack.errors import DemoError

FINISHED_STATES = ("success", "failed")


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
                    self.request("GET", f"/dags/{quote_part(dag_id)}")
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
        self.request("PATCH", f"/dags/{quote_part(dag_id)}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, attempts: int = 4) -> str:
        """Start a run of ``dag_id`` now with ``conf``; its run id. Airflow validates the conf
        against the DAG's Params first: a bad value is an ``ApiError`` with status 400.

        The run id is chosen here (as Airflow names a manual run), so the call can be repeated
        without a second run: on SQLite a busy scheduler can hold the database past the API
        server's lock timeout (500, "Database error", nothing written); the same run id is then
        asked for again, and a 409 means an earlier try made it."""
        run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": dict(conf or {})}
        for attempt in range(1, attempts + 1):
            try:
                return self.request("POST", f"/dags/{quote_part(dag_id)}/dagRuns", body)["dag_run_id"]
            except (ApiError, Unreachable) as error:
                status = getattr(error, "status", None)
                if status == 409 and attempt > 1:
                    return run_id
                if attempt == attempts or (status is not None and status < 500):
                    raise
            time.sleep(2.0 * attempt)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{quote_part(dag_id)}/dagRuns/{quote_part(run_id)}")

    def dag_runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        """The DAG's latest ``limit`` runs, newest first."""
        return self.request("GET", f"/dags/{quote_part(dag_id)}/dagRuns?limit={limit}&order_by=-id")["dag_runs"]

    def backfill(self, dag_id: str, from_date: datetime, to_date: datetime,
                 conf: Mapping[str, Any] | None = None, max_active_runs: int = 1) -> dict:
        """Create a backfill: one run (run type ``backfill``) per logical date of the DAG's
        timetable in ``[from_date, to_date]``, ``max_active_runs`` at a time. Airflow allows one
        unfinished backfill per DAG: another one is an ``ApiError`` with status 409 (the
        scheduler marks a backfill complete up to 30 s after its last run ended)."""
        body = {"dag_id": dag_id, "from_date": from_date.isoformat(), "to_date": to_date.isoformat(),
                "max_active_runs": max_active_runs, "dag_run_conf": dict(conf or {})}
        return self.request("POST", "/backfills", body)

    def close_backfill(self, backfill_id: int) -> None:
        """Mark a backfill whose runs have all ended complete now, not up to 30 s later when the
        scheduler would (the cancel call: it fails only the backfill's queued runs, here none).
        A backfill the scheduler closed already (409) is fine."""
        self.request("PUT", f"/backfills/{int(backfill_id)}/cancel", ok=(200, 409))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{quote_part(dag_id)}/dagRuns/{quote_part(run_id)}/taskInstances"
        return self.request("GET", path)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        path = (f"/dags/{quote_part(dag_id)}/dagRuns/{quote_part(run_id)}/taskInstances/{quote_part(task_id)}"
                f"/xcomEntries/{quote_part(key)}?map_index={int(map_index)}")
        value = self.request("GET", path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def wait_for_runs(self, runs: Mapping[str, str], timeout: float = 900.0, poll: float = 2.0) -> dict[str, dict]:
        """Poll the runs ``{dag_id: run_id}`` until each has finished; their last API records."""
        pending, done = dict(runs), {}
        started = time.monotonic()
        while pending:
            for dag_id, run_id in list(pending.items()):
                try:
                    run = self.dag_run(dag_id, run_id)
                except Unreachable:  # a busy API server (2 cores, four tasks starting) may not answer in time
                    continue
                if run["state"] in FINISHED_STATES:
                    done[dag_id] = run
                    del pending[dag_id]
            if pending and time.monotonic() - started > timeout:
                raise DemoError(f"runs not finished after {timeout:.0f} s: "
                                + ", ".join(f"{d} ({r})" for d, r in pending.items()))
            if pending:
                time.sleep(poll)
        return done

def quote_part(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def run_seconds(run: Mapping[str, Any]) -> float | None:
    """A DAG run's duration from its ``start_date`` and ``end_date``."""
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


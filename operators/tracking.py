"""MLflow tracking for workflow runs: one experiment per workflow, one run per DAG run.

A retried task finds its run again by the Airflow tags (``airflow.dag_id``,
``airflow.dag_run_id`` and, for a task's child run, ``airflow.task_id`` and
``airflow.map_index``) and resumes it, so a DAG run never gets a second run. Where the server
is comes from ``hooks.ApportionMlflowHook`` (an explicit URI, ``MLFLOW_TRACKING_URI``, or an
Airflow connection). MLflow itself is imported inside the functions that use it, so DAG files
and the CLI stay quick to import.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from apportion.operators.paths import path_component

log = logging.getLogger(__name__)

UI_URL_ENV = "APPORTION_MLFLOW_UI_URL"
ROLE_TAG = "apportion.role"
DAG_RUN_ROLE = "dag_run"
TASK_ROLE = "task"
PARENT_TAG = "mlflow.parentRunId"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
USER_TAG = "mlflow.user"
DATASET_CONTEXT_TAG = "mlflow.data.context"
# MLflow's limits for one log_batch call.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer; the run folder still holds every result."""


@dataclass(frozen=True)
class AirflowRef:
    """Which Airflow task instance a piece of work belongs to: names the run folder and the
    MLflow run, and links the run back to Airflow."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    logical_date: str | None = None
    task_url: str | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "AirflowRef":
        ti = context["ti"]
        logical_date = context.get("logical_date")
        try:
            task_url = ti.log_url
        except Exception:  # the URL needs [api] base_url; a missing one must not fail the task
            task_url = None
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
            try_number=int(ti.try_number or 1),
            logical_date=logical_date.isoformat() if logical_date is not None else None,
            task_url=task_url,
        )

    @property
    def task_label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    def dag_run_tags(self) -> dict[str, str]:
        tags = {"airflow.dag_id": self.dag_id, "airflow.dag_run_id": self.run_id, **_system_tags(self.dag_id)}
        if self.logical_date:
            tags["airflow.logical_date"] = self.logical_date
        return tags

    def task_tags(self) -> dict[str, str]:
        tags = {
            **self.dag_run_tags(),
            "airflow.task_id": self.task_id,
            "airflow.map_index": str(self.map_index),
            "airflow.try_number": str(self.try_number),
            SOURCE_NAME_TAG: f"airflow:{self.dag_id}.{self.task_id}",
        }
        if self.task_url:
            tags["airflow.task_url"] = self.task_url
        return tags


def _system_tags(dag_id: str) -> dict[str, str]:
    """The tags MLflow's UI shows as a run's source and user (the fluent API sets them; the
    client does not): the DAG as a job, and the account the worker runs as."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        user = "unknown"
    return {SOURCE_NAME_TAG: f"airflow:{dag_id}", SOURCE_TYPE_TAG: "JOB", USER_TAG: user}


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part (what may be logged, tagged or linked)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def ui_base_url(tracking_uri: str) -> str | None:
    """Where the MLflow UI lives: ``APPORTION_MLFLOW_UI_URL``, or an http(s) tracking URI."""
    explicit = os.environ.get(UI_URL_ENV)
    if explicit:
        return without_credentials(explicit).rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return without_credentials(tracking_uri).rstrip("/")
    return None


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    base = ui_base_url(tracking_uri)
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}" if base else None


def artifact_url(tracking_uri: str, experiment_id: str, run_id: str, path: str) -> str | None:
    base = run_url(tracking_uri, experiment_id, run_id)
    return f"{base}/artifactPath/{path}" if base else None


def check_reachable(tracking_uri: str, *, attempts: int = 3, backoff: float = 1.0, timeout: float = 5.0,
                    credentials: tuple[str, str] | None = None) -> None:
    """Fail fast, naming the URI, when an http(s) tracking server does not answer ``/health``.

    MLflow's own client would retry for minutes; ``attempts`` tries with growing pauses is
    enough to ride out a restart. ``credentials`` (username, password) log in with basic
    authentication. Local stores (sqlite, file) need no probe.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    request = urllib.request.Request(without_credentials(tracking_uri).rstrip("/") + "/health")
    if credentials is not None:
        import base64

        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if response.status == 200:
                    return
                error = RuntimeError(f"HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            error = exc
            if exc.code in (401, 403):  # wrong credentials stay wrong: no point in retrying
                break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = exc
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise TrackingUnavailable(
        f"MLflow tracking server {without_credentials(tracking_uri)} is unreachable after {attempt + 1} "
        f"attempts ({error})"
    )


# --- Runs --------------------------------------------------------------------------------------


def default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Next to a sqlite store (``<db dir>/mlartifacts/<experiment>``) instead of MLflow's
    default ``./mlruns`` under whatever directory the task happened to start in."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts" / path_component(experiment)).resolve().as_uri()
    return None


class Tracker:
    """Finds or creates experiments and runs by Airflow tags, and logs to them in batches."""

    def __init__(self, tracking_uri: str):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)

    def experiment_id(self, name: str, artifact_location: str | None = None) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return found.experiment_id
        location = artifact_location or default_artifact_location(self.tracking_uri, name)
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by a parallel task
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _search(self, experiment_id: str, tags: Mapping[str, str]) -> list:
        for key, value in tags.items():
            if "'" in value:
                raise ValueError(f"tag {key} contains a quote: {value!r}")
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([experiment_id], filter_string=where, max_results=100)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def _find_or_create(self, experiment_id: str, key_tags: dict[str, str], tags: dict[str, str],
                        run_name: str) -> tuple[str, bool]:
        """The run carrying ``key_tags``, resumed; or a new one. When parallel tasks both
        create one, the earliest wins and the others delete theirs. Returns (id, resumed)."""
        runs = self._search(experiment_id, key_tags)
        if runs:
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self.set_tags(run_id, tags)
            return run_id, True
        created = self.client.create_run(experiment_id, run_name=run_name, tags={**tags, **key_tags})
        runs = self._search(experiment_id, key_tags)
        keeper = runs[0].info.run_id if runs else created.info.run_id
        if keeper != created.info.run_id:
            self.client.delete_run(created.info.run_id)
        return keeper, False

    def dag_run(self, experiment_id: str, ref: AirflowRef, run_name: str | None = None) -> tuple[str, bool]:
        """The DAG run's run (named after it unless ``run_name``): (run id, resumed)."""
        key = {"airflow.dag_id": ref.dag_id, "airflow.dag_run_id": ref.run_id, ROLE_TAG: DAG_RUN_ROLE}
        return self._find_or_create(experiment_id, key, ref.dag_run_tags(), run_name or ref.run_id)

    def task_run(self, experiment_id: str, parent_id: str, ref: AirflowRef, run_name: str) -> tuple[str, bool]:
        """A task's child run under the DAG run's run: (run id, resumed)."""
        key = {
            "airflow.dag_id": ref.dag_id, "airflow.dag_run_id": ref.run_id, "airflow.task_id": ref.task_id,
            "airflow.map_index": str(ref.map_index), ROLE_TAG: TASK_ROLE,
        }
        return self._find_or_create(experiment_id, key, {**ref.task_tags(), PARENT_TAG: parent_id}, run_name)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
        for i in range(0, len(items), MAX_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=items[i:i + MAX_TAGS_PER_BATCH])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Params are immutable in MLflow: a resumed run keeps the values it has and a
        different new value is reported as a warning instead of failing the task."""
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        fresh = []
        for key, value in params.items():
            text = str(value)[:6000]
            if key not in existing:
                fresh.append(Param(key, text))
            elif existing[key] != text:
                log.warning("MLflow run %s keeps param %s=%r (this try has %r)", run_id, key, existing[key], text)
        for i in range(0, len(fresh), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=fresh[i:i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], steps: Iterable[tuple[str, float, int]] = ()) -> int:
        """Log scalar ``metrics`` (step 0) and ``(key, value, step)`` step metrics in batches
        of at most 1000; returns how many were logged. What a resumed run already holds (a
        scalar with the same value, any point of a step series) is not logged twice."""
        from mlflow.entities import Metric

        existing = self.client.get_run(run_id).data.metrics
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()
                 if _number(v) and existing.get(k) != float(v)]
        items += [Metric(k, float(v), now, int(step)) for k, v, step in steps if _number(v) and k not in existing]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i:i + MAX_METRICS_PER_BATCH])
        return len(items)

    def log_spec_datasets(self, run_id: str, specs: Mapping[str, tuple[str, Path, Mapping[str, Any]]]) -> None:
        """Log spec files as the run's input datasets: ``context -> (name, path, profile)``,
        e.g. ``"workload" -> ("medical_diagnosis", .../workload.json, {"tasks": 700})``. The
        source is the file among the run's artifacts (``runs:/<run id>/<file>``); the digest
        its content's, so a resumed run does not log the same dataset twice."""
        import hashlib
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        logged = {(d.dataset.name, d.dataset.digest) for d in self.client.get_run(run_id).inputs.dataset_inputs}
        inputs = []
        for context, (name, path, profile) in specs.items():
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
            if (name, digest) in logged:
                continue
            dataset = Dataset(name=name, digest=digest, source_type="mlflow_run_artifact",
                              source=json.dumps({"uri": f"runs:/{run_id}/{Path(path).name}"}),
                              profile=json.dumps(dict(profile)))
            inputs.append(DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context)]))
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def log_artifacts(self, run_id: str, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(float(value))


def history_steps(history: list[dict], prefix: str = "convergence/") -> list[tuple[str, float, int]]:
    """Per-generation history as ``(key, value, step)``: numbers as they are, one level of
    nested dicts (e.g. best value per objective) flattened to ``<key>_<name>``."""
    steps = []
    for i, entry in enumerate(history):
        step = int(entry.get("generation", entry.get("gen", i)))
        for key, value in entry.items():
            if key in ("generation", "gen"):
                continue
            if isinstance(value, Mapping):
                steps += [(f"{prefix}{key}_{k}", v, step) for k, v in value.items() if _number(v)]
            elif _number(value):
                steps.append((f"{prefix}{key}", value, step))
    return steps


# --- Comparing runs over time ------------------------------------------------------------------

# The param naming the hypervolume's reference box: runs with equal ids measured their fronts in
# the same box, so their ``search/hypervolume`` values compare (docs/metrics.md).
REFERENCE_BOX_PARAM = "search/reference_box/id"


def reference_box_params(box: Mapping[str, Any]) -> dict[str, Any]:
    """MLflow params of a run's reference box (``RunResult.reference_box``): its id, its
    reference point and each objective's ideal and nadir, natural units."""
    params = {REFERENCE_BOX_PARAM: box["id"], "search/reference_box/reference_point": box["reference_point"]}
    for name, bounds in box["objectives"].items():
        params.update({f"search/reference_box/{name}/{end}": value for end, value in bounds.items()})
    return params


# The metrics compared, by their MLflow names (docs/tracking.md, "Names").
COMPARE_COLUMNS = ("plan/makespan", "plan/utilization", "plan/imbalance", "search/hypervolume",
                   "warm_start/moved_tasks", "search/seconds")
ALGORITHM_PARAM = "search/algorithm"


def log_calibration(calibration, run_id: str, *, tracking_uri: str | None = None,
                    error_before: float | None = None, error_after: float | None = None,
                    prefix: str = "calibration/") -> None:
    """Record ``calibration`` (``apportion.core.calibrate.Calibration``) in the MLflow run
    ``run_id``: the JSON file as an artifact, its version and counts as parameters, and the
    median absolute prediction error of the step durations before (declared model) and after
    (calibrated) as metrics."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from apportion.core.calibrate import CALIBRATION_FILE, FORMAT_VERSION

    client = MlflowClient(tracking_uri)
    params = {"format_version": FORMAT_VERSION, "revision": calibration.revision,
              "runs": len(calibration.runs), "min_points": calibration.min_points, "window": calibration.window}
    metrics = {"observations": len(calibration.observations), "error_before": error_before,
               "error_after": error_after, "global_overhead": calibration.global_overhead}
    metrics.update({f"overhead/{o.node}": o.overhead for o in calibration.overheads})
    client.log_batch(
        run_id,
        params=[Param(prefix + k, str(v)) for k, v in params.items()],
        metrics=[Metric(prefix + k, float(v), 0, calibration.revision) for k, v in metrics.items()
                 if v is not None and math.isfinite(v)],
    )
    client.log_text(run_id, json.dumps(calibration.to_dict(), indent=2), f"calibration/{CALIBRATION_FILE}")


def compare_runs(experiment: str, tracking_uri: str | None = None, out: str | Path | None = None,
                 *, conn_id: str | None = None):
    """Print how the runs of one workflow evolved over time and plot it to ``out`` (PNG).

    One row per run that logged a plan (when, run, ``search/algorithm``, the id of the
    hypervolume's reference box, then ``COMPARE_COLUMNS``: plan makespan, utilisation and
    imbalance, the search's hypervolume, the tasks moved since the previous plan and the search's
    seconds), in order of ``when``: the
    Airflow logical date the run planned for (tag ``airflow.logical_date``), else its start, so
    a backfilled history lines up by the time of day it planned for. ``out`` defaults to
    ``<experiment>-runs.png`` in the working directory. Hypervolumes compare between runs of
    one reference box (the same instance); a note says when the runs span several. Returns
    the table (pandas DataFrame).
    """
    import pandas as pd

    from apportion.operators.hooks import ApportionMlflowHook

    hook = ApportionMlflowHook(conn_id or ApportionMlflowHook.default_conn_name, tracking_uri)
    tracker = hook.get_conn()  # checks the server answers first
    uri = tracker.tracking_uri
    found = tracker.client.get_experiment_by_name(experiment)
    if found is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} at {without_credentials(uri)}")
    rows, token = [], None
    while True:
        page = tracker.client.search_runs([found.experiment_id], max_results=1000, page_token=token)
        for run in page:
            metrics = run.data.metrics
            if COMPARE_COLUMNS[0] not in metrics:
                continue
            logical = run.data.tags.get("airflow.logical_date")
            rows.append({
                "when": pd.Timestamp(logical).tz_convert("UTC") if logical
                else pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
                "run": run.info.run_name,
                ALGORITHM_PARAM: run.data.params.get(ALGORITHM_PARAM, ""),
                REFERENCE_BOX_PARAM: run.data.params.get(REFERENCE_BOX_PARAM, ""),
                **{c: metrics.get(c, math.nan) for c in COMPARE_COLUMNS},
            })
        token = page.token
        if not token:
            break
    table = pd.DataFrame(rows, columns=["when", "run", ALGORITHM_PARAM, REFERENCE_BOX_PARAM, *COMPARE_COLUMNS])
    table = table.sort_values(["when", "run"], kind="stable").reset_index(drop=True)
    if table.empty:
        print(f"experiment {experiment!r} has no runs with plan metrics")
    else:
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        boxes = table[REFERENCE_BOX_PARAM].replace("", math.nan).nunique()
        if boxes > 1:
            print(f"note: these runs measured their hypervolume in {boxes} reference boxes (one per instance); "
                  f"compare search/hypervolume only between runs with the same {REFERENCE_BOX_PARAM}")
    target = Path(out) if out else Path(f"{path_component(experiment)}-runs.png")
    from apportion.operators.charts import evolution_chart

    evolution_chart(table, COMPARE_COLUMNS, target, title=f"{experiment}: runs over time", by=ALGORITHM_PARAM)
    print(f"wrote {target}")
    return table

"""Closing the loop: an enactment's observations calibrate the plans of the next runs.

One calibration file (``apportion.core.calibrate``'s format) per (scenario, cluster), in the
storage root: ``<root>/calibration/<scenario>/<cluster>.json`` (docs/calibration.md).

* What is learned: the stand-ins' items per second of each task kind and the overhead per
  step (the executor's share: task instance start to the stand-in's start), on this machine.
  Each enacted step gives two observations of the node ``LOCAL_NODE``: its items and realised
  duration, and zero items with its measured overhead, so the Theil-Sen line of every kind
  goes through both and the fitted overhead is the steps' median overhead.
* ``calibrate_enactment`` (after ``observe_enactment``) merges a DAG run's observations into
  the file under a lock (a compare-and-swap on the revision where the storage root is not a
  local file system), once per DAG run: the run key ``<dag_id>/<run_id>`` is in the file's
  ``runs``, so a retried task applies nothing twice. It logs the calibration to the DAG run's
  MLflow run once (``calibration/revision`` and the file as an artifact).
* ``planning_cluster`` (what ``allocate`` plans with when given ``calibration``): every node
  of the cluster as this machine, its speeds the learned items per second over the enactment
  scale (items per GFLOP), so the plan predicts the enactment's durations here. Wrong for
  workers on other hosts (Celery): every node is taken to be the machine that was measured.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.paths import path_component
from apportion.operators.storage import local_path, read_json, storage_root, write_json

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from apportion.core.calibrate import Calibration
    from apportion.core.model import Cluster

FOLDER = "calibration"
LOCAL_NODE = "this-machine"  # every observation's node: the stand-ins all ran here
MIN_POINTS = 2  # a kind's two points (its items, and zero items with the overhead) fit a line
CAS_ATTEMPTS = 5


def calibration_uri(scenario: str, cluster: str, output_root: str | None = None) -> ObjectStoragePath:
    """``<storage root>/calibration/<scenario>/<cluster>.json``."""
    return storage_root(output_root) / FOLDER / path_component(scenario) / f"{path_component(cluster)}.json"


def read_calibration(target: Any) -> Calibration:
    """The calibration stored at ``target``; an empty one (revision 0) when there is none yet."""
    from apportion.core.calibrate import Calibration
    from apportion.operators.storage import as_path

    target = as_path(target)
    if not target.exists():
        return Calibration(min_points=MIN_POINTS)
    return Calibration.from_dict(read_json(target), where=str(target))


def planning_cluster(cluster: Cluster, calibration: Calibration, scale: float) -> Cluster:
    """``cluster`` with every node as this machine: the calibration's overhead per step and, per
    task kind, its items per second divided by ``scale`` (items per GFLOP) as GFLOP/s. Kinds
    never observed keep their declared speed; an empty calibration changes nothing."""
    from apportion.core.calibrate import SpeedEstimate, apply_calibration
    from apportion.core.errors import SpecError

    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise SpecError("calibration_scale", f"must be a number > 0 (the enactment's items per GFLOP), got {scale!r}")
    speeds = [s for s in calibration.speeds if s.node == LOCAL_NODE]
    overhead = calibration.overhead(LOCAL_NODE)
    everywhere = dataclasses.replace(
        calibration,
        speeds=tuple(SpeedEstimate(node.id, s.kind, s.speed / scale, s.count, s.source)
                     for node in cluster.nodes for s in speeds),
        overheads=() if overhead is None else tuple(dataclasses.replace(overhead, node=node.id)
                                                    for node in cluster.nodes),
    )
    return apply_calibration(cluster, everywhere)


def enactment_observations(rows: Iterable[Mapping[str, Any]], run_key: str) -> list:
    """Two observations of ``LOCAL_NODE`` per enacted step (``enactment.observations`` rows):
    its items and realised duration, and zero items with its overhead."""
    from apportion.core.calibrate import Observation

    out = []
    for row in rows:
        out.append(Observation(LOCAL_NODE, row["kind"], float(row["items"]), float(row["realised_duration"]), run_key))
        out.append(Observation(LOCAL_NODE, row["kind"], 0.0, max(0.0, float(row["overhead"])), run_key))
    return out


@contextmanager
def _locked(target: ObjectStoragePath) -> Iterator[bool]:
    """An exclusive lock on ``<file>.lock`` beside a local file (yields True); elsewhere no lock
    (yields False: the caller compares and swaps on the revision)."""
    import fcntl

    path = local_path(target)
    if path is None:
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_once(target: Any, observations, *, run_key: str, fitted_at: str) -> tuple[Calibration, bool]:
    """Merge ``observations`` into the calibration at ``target`` unless ``run_key`` is already
    among its runs. Returns (the calibration, whether this call merged)."""
    from apportion.operators.storage import as_path

    target = as_path(target)
    for _ in range(CAS_ATTEMPTS):
        with _locked(target) as locked:
            current = read_calibration(target)
            if run_key in current.runs:
                return current, False
            merged = current.merge(observations, run_id=run_key, fitted_at=fitted_at)
            if not locked and read_calibration(target).revision != current.revision:
                continue  # another run saved in between: merge into its revision
            write_json(target, merged.to_dict())
            return merged, True
    raise RuntimeError(f"{target}: the calibration kept changing under {CAS_ATTEMPTS} attempts to update it")


def step_errors(rows: Iterable[Mapping[str, Any]], calibration: Calibration) -> tuple[float, float]:
    """Median |predicted - realised| / realised of the steps: as this run's plan predicted them,
    and as the new calibration predicts them (at the items the steps did)."""
    import numpy as np

    from apportion.core.calibrate import apply_calibration, median_abs_error
    from apportion.core.model import Cluster, Node

    rows = [r for r in rows if r["realised_duration"] > 0]
    before = [abs(r["predicted_duration"] - r["realised_duration"]) / r["realised_duration"] for r in rows]
    here = Cluster(nodes=(Node(LOCAL_NODE, "local", speed=1.0, memory=1.0),))
    steps = [o for o in enactment_observations(rows, "") if o.work > 0]
    after = median_abs_error(steps, apply_calibration(here, calibration)) if steps else math.nan
    return (float(np.median(before)) if before else math.nan), after


def calibrate_enactment(allocation: Mapping[str, Any], observation: Mapping[str, Any], *, scenario: str,
                        tracking_uri: str | None = None, mlflow_conn_id: str | None = DEFAULT_CONN_ID,
                        output_root: str | None = None, context: Mapping[str, Any] | None = None,
                        ref=None) -> dict[str, Any]:
    """Update the (scenario, cluster) calibration from one DAG run's observed enactment, once,
    and log it to the run's MLflow run, once. ``observation`` is ``observe_enactment``'s result
    (its ``artifact_uri`` holds enactment.json). Returns the file's URI, the revision this run's
    observations made (or found, on a retry), whether it merged now, and the errors. ``ref``
    names the task instance when there is no Airflow context (tests)."""
    from datetime import datetime, timezone

    from apportion.operators.paths import current_context
    from apportion.operators.tracking import AirflowRef, log_calibration

    ref = ref or AirflowRef.from_context(current_context(context))
    run_key = f"{ref.dag_id}/{ref.run_id}"
    rows = read_json(f"{observation['artifact_uri']}/enactment.json")["steps"]
    cluster = read_json(allocation["cluster"]).get("name") or "cluster"
    target = calibration_uri(scenario, cluster, output_root)
    fitted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    calibration, merged = merge_once(target, enactment_observations(rows, run_key), run_key=run_key,
                                     fitted_at=fitted_at)
    before, after = step_errors(rows, calibration)
    logged = False
    run_id = allocation.get("mlflow_run_id")
    if run_id:
        hook = ApportionMlflowHook(mlflow_conn_id, tracking_uri or allocation.get("tracking_uri"))
        with hook.upload_from(str(target)) as tracker:
            if "calibration/revision" not in tracker.client.get_run(run_id).data.params:
                log_calibration(calibration, run_id, tracking_uri=tracker.tracking_uri, error_before=before,
                                error_after=after)
                tracker.set_tags(run_id, {"apportion.calibration_uri": str(target)})
                logged = True
    return {"uri": str(target), "revision": calibration.revision, "merged": merged, "logged": logged,
            "error_before": before, "error_after": after}

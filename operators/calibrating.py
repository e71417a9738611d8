"""Closing the loop: an enactment's observations calibrate the plans of the next runs.

One calibration file (``apportion.core.calibrate``'s format) per (scenario, cluster), in the
storage root: ``<root>/calibration/<scenario>/<cluster>.json`` (docs/calibration.md).

* What is learned: per (node, task kind), the stand-ins' items per second, and per node the
  overhead per step (the executor's share: task instance start to the stand-in's start), each
  under the node that really ran the step (its worker's host on the CeleryExecutor, its pool
  here). Each enacted step gives two observations of that node: its items and realised
  duration, and zero items with its measured overhead, so the Theil-Sen line of every (node,
  kind) goes through both and the node's fitted overhead is its steps' median overhead.
* ``calibrate_enactment`` (after ``observe_enactment``) merges a DAG run's observations into
  the file under a lock (a compare-and-swap on the revision where the storage root is not a
  local file system), once per DAG run: the run key ``<dag_id>/<run_id>`` is in the file's
  ``runs``, so a retried task applies nothing twice. It logs the calibration to the DAG run's
  MLflow run once (``calibration/revision`` and the file as an artifact).
* ``planning_cluster`` (what ``allocate`` plans with when given ``calibration``): each node's
  learned overhead and items per second per kind, over the enactment scale (items per GFLOP)
  as GFLOP/s, so the plan predicts the enactment's durations. A node, or a kind on a node, that
  no enactment has run yet takes the estimate of every enacted step pooled (``POOLED_NODE``).
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
POOLED_NODE = "*"  # every enacted step whichever node ran it: what an unobserved node is planned with
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


def pooled(calibration: Calibration) -> Calibration:
    """``calibration`` refitted with every observation under ``POOLED_NODE``: one speed per task
    kind and one overhead for all the nodes that ran steps."""
    from apportion.core.calibrate import fit

    return fit([dataclasses.replace(o, node=POOLED_NODE) for o in calibration.observations],
               runs=calibration.runs, revision=calibration.revision, fitted_at=calibration.fitted_at,
               min_points=calibration.min_points, window=calibration.window)


def planning_cluster(cluster: Cluster, calibration: Calibration, scale: float) -> Cluster:
    """``cluster`` as the enactments measured it: each node's own overhead and, per task kind,
    its own items per second divided by ``scale`` (items per GFLOP) as GFLOP/s; where a node (or
    a kind on it) was never enacted, the pooled estimates (``pooled``). Kinds no enactment ran
    keep their declared speed; an empty calibration changes nothing."""
    from apportion.core.calibrate import SpeedEstimate, apply_calibration
    from apportion.core.errors import SpecError

    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
        raise SpecError("calibration_scale", f"must be a number > 0 (the enactment's items per GFLOP), got {scale!r}")
    everyone = pooled(calibration)
    kinds = sorted({s.kind for s in everyone.speeds})
    speeds, overheads = [], []
    for node in cluster.nodes:
        for kind in kinds:
            learned = calibration.speed(node.id, kind) or everyone.speed(POOLED_NODE, kind)
            speeds.append(SpeedEstimate(node.id, kind, learned.speed / scale, learned.count, learned.source))
        overhead = calibration.overhead(node.id) or everyone.overhead(POOLED_NODE)
        if overhead is not None:
            overheads.append(dataclasses.replace(overhead, node=node.id))
    return apply_calibration(cluster, dataclasses.replace(calibration, speeds=tuple(speeds),
                                                          overheads=tuple(overheads)))


def enactment_observations(rows: Iterable[Mapping[str, Any]], run_key: str) -> list:
    """Two observations per enacted step (``enactment.observations`` rows), of the node that ran
    it: its items and realised duration, and zero items with its overhead."""
    from apportion.core.calibrate import Observation

    out = []
    for row in rows:
        node = str(row["node"])
        out.append(Observation(node, row["kind"], float(row["items"]), float(row["realised_duration"]), run_key))
        out.append(Observation(node, row["kind"], 0.0, max(0.0, float(row["overhead"])), run_key))
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

    from apportion.core.calibrate import median_abs_error
    from apportion.core.model import Cluster, Node

    rows = [r for r in rows if r["realised_duration"] > 0]
    before = [abs(r["predicted_duration"] - r["realised_duration"]) / r["realised_duration"] for r in rows]
    steps = [o for o in enactment_observations(rows, "") if o.work > 0]
    if not steps:
        return (float(np.median(before)) if before else math.nan), math.nan
    # The steps' nodes at 1 GFLOP/s and one item per GFLOP: their durations as the new fit predicts.
    here = Cluster(nodes=tuple(Node(node, "any", speed=1.0, memory=1.0) for node in sorted({o.node for o in steps})))
    after = median_abs_error(steps, planning_cluster(here, calibration, 1.0))
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

"""Calibration: learn each node's real speed and per-task overhead from observed step durations.

A plan predicts a step's duration as ``overhead[node] + work / rate[node, kind]``. Realised
durations (an enacted run's steps, or any measured history) say how far off the declared
speeds are and what a task costs the executor before its work starts. The estimator is robust
and needs no tuning:

* **overhead** per node: in every (node, task kind) group with enough points
  (``min_points``) and at least two distinct work sizes, the Theil-Sen line (the median of the
  pairwise slopes) is fitted; each point's intercept ``duration - slope * work`` is taken, and
  the node's overhead is the median of those intercepts (clipped at 0). A node with no such
  group takes the global median intercept, and 0 when no group anywhere can be fitted.
* **speed** per (node, task kind): the median ratio ``work / (duration - overhead)`` over the
  group's points. A group with fewer than ``min_points`` points takes the node's pooled median
  ratio (all its kinds), and a node with too few points the global one. Each estimate says which
  it used (``source``: ``group``, ``node`` or ``global``).

A few outliers (a step that waited on a busy disk) move neither median. Estimates do not depend
on the order of the observations.

The calibration is kept between runs as a versioned JSON file (``save``/``load``): its
observations (a sliding window of the newest ``window`` per (node, task kind), so that a node
that changes is followed and the file stays small), which runs they came from, and the fitted
estimates. ``merge`` adds a run's observations and refits on everything kept.
``apply_calibration`` turns it into the cluster the next plan uses: each observed node's
``overhead`` and ``node_speed_factors[node][kind]``; groups never observed keep their declared
speed. ``apportion.operators.tracking.log_calibration`` records it in MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apportion.core.errors import SpecError, excerpt
from apportion.core.model import Cluster, Instance, Task, Workload

FORMAT = "apportion-calibration"
FORMAT_VERSION = 1
MIN_POINTS = 3
WINDOW = 200
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class Observation:
    """One step that ran: where, what kind, its declared work (GFLOP) and how long it took (s)."""

    node: str
    kind: str
    work: float
    duration: float
    run_id: str = ""


@dataclass(frozen=True)
class SpeedEstimate:
    node: str
    kind: str
    speed: float  # GFLOP/s of the node on this kind
    count: int  # the group's observations
    source: str  # group, node or global: the observations the speed comes from


@dataclass(frozen=True)
class OverheadEstimate:
    node: str
    overhead: float  # s per task
    count: int  # the node's observations
    source: str  # node, global or none


@dataclass(frozen=True)
class Calibration:
    """Fitted estimates and the observations they come from (see the module's docstring)."""

    speeds: tuple[SpeedEstimate, ...] = ()
    overheads: tuple[OverheadEstimate, ...] = ()
    observations: tuple[Observation, ...] = ()
    runs: tuple[str, ...] = ()  # the run ids fitted on, oldest first
    revision: int = 0  # how many merges made it
    fitted_at: str = ""  # supplied by the caller (ISO time), so that files are reproducible
    min_points: int = MIN_POINTS
    window: int = WINDOW
    global_speed: float | None = None
    global_overhead: float | None = None

    def speed(self, node: str, kind: str) -> SpeedEstimate | None:
        return next((s for s in self.speeds if s.node == node and s.kind == kind), None)

    def overhead(self, node: str) -> OverheadEstimate | None:
        return next((o for o in self.overheads if o.node == node), None)

    def merge(self, observations, *, run_id: str, fitted_at: str) -> Calibration:
        """A new calibration fitted on the kept observations plus ``observations`` (a run's);
        each (node, kind) keeps its newest ``window`` observations."""
        new = tuple(dataclasses.replace(o, run_id=o.run_id or run_id) for o in as_observations(observations))
        kept = _window(self.observations + new, self.window)
        runs = tuple(dict.fromkeys(self.runs + (run_id,)))
        return fit(kept, runs=runs, revision=self.revision + 1, fitted_at=fitted_at,
                   min_points=self.min_points, window=self.window)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "revision": self.revision,
            "fitted_at": self.fitted_at, "runs": list(self.runs), "min_points": self.min_points,
            "window": self.window, "count": len(self.observations),
            "global": {"speed": self.global_speed, "overhead": self.global_overhead},
            "overheads": [dataclasses.asdict(o) for o in self.overheads],
            "speeds": [dataclasses.asdict(s) for s in self.speeds],
            "observations": [dataclasses.asdict(o) for o in self.observations],
        }

    @classmethod
    def from_dict(cls, doc: object, where: str = "calibration") -> Calibration:
        """Read ``to_dict``'s output; the estimates are refitted from the observations, so a
        file edited by hand cannot disagree with itself."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SpecError(where, f"not a calibration file (no \"format\": \"{FORMAT}\")")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise SpecError(f"{where}.format_version",
                            f"this Apportion reads version {FORMAT_VERSION}, the file has {excerpt(version)}")
        try:
            observations = [Observation(**o) for o in doc["observations"]]
            runs = tuple(str(r) for r in doc["runs"])
            revision, min_points, window = int(doc["revision"]), int(doc["min_points"]), int(doc["window"])
            fitted_at = str(doc["fitted_at"])
        except (KeyError, TypeError, ValueError) as error:
            raise SpecError(where, f"malformed calibration file ({excerpt(str(error))})") from None
        return fit(observations, runs=runs, revision=revision, fitted_at=fitted_at, min_points=min_points,
                   window=window)


def as_observations(observations) -> tuple[Observation, ...]:
    """Observations from a list of ``Observation`` (or dicts with its fields), or a pandas
    frame with the columns ``node, kind, work, duration`` [``run_id``]; checked."""
    if hasattr(observations, "to_dict") and hasattr(observations, "columns"):
        missing = [c for c in ("node", "kind", "work", "duration") if c not in observations.columns]
        if missing:
            raise SpecError(f"observations.{missing[0]}", "missing required column")
        observations = observations.to_dict("records")
    out = []
    for i, o in enumerate(observations):
        if isinstance(o, Mapping):
            unknown = set(o) - {f.name for f in dataclasses.fields(Observation)}
            if unknown:
                raise SpecError(f"observations[{i}].{sorted(unknown)[0]}", "unknown field")
            try:
                o = Observation(**o)
            except TypeError as error:
                raise SpecError(f"observations[{i}]", str(error)) from None
        if not isinstance(o, Observation):
            raise SpecError(f"observations[{i}]", f"must be an Observation or a mapping, got {excerpt(o)}")
        out.append(_checked(o, i))
    return tuple(out)


def _checked(o: Observation, i: int) -> Observation:
    for name in ("node", "kind"):
        value = getattr(o, name)
        if not isinstance(value, str) or not value:
            raise SpecError(f"observations[{i}].{name}", f"must be a non-empty string, got {excerpt(value)}")
    numbers = {}
    for name in ("work", "duration"):
        value = getattr(o, name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value < 0:
            raise SpecError(f"observations[{i}].{name}", f"must be a finite number >= 0, got {excerpt(value)}")
        numbers[name] = float(value)
    return dataclasses.replace(o, run_id=str(o.run_id or ""), **numbers)


def _window(observations: Sequence[Observation], window: int) -> tuple[Observation, ...]:
    """The newest ``window`` observations of each (node, kind), in their original order."""
    seen: dict[tuple[str, str], int] = {}
    keep = [False] * len(observations)
    for i in range(len(observations) - 1, -1, -1):
        key = (observations[i].node, observations[i].kind)
        if seen.get(key, 0) < window:
            seen[key] = seen.get(key, 0) + 1
            keep[i] = True
    return tuple(o for o, k in zip(observations, keep, strict=True) if k)


def theil_sen(work: np.ndarray, duration: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of the Theil-Sen line through the points, or None with fewer than two
    distinct work sizes: the median of the slopes between every pair of points with different
    work, and the median of ``duration - slope * work``."""
    i, j = np.triu_indices(work.shape[0], k=1)
    dw = work[j] - work[i]
    distinct = dw != 0
    if not distinct.any():
        return None
    slope = float(np.median((duration[j] - duration[i])[distinct] / dw[distinct]))
    return slope, float(np.median(duration - slope * work))


def _median_speed(work: np.ndarray, duration: np.ndarray, overhead: float) -> float | None:
    """The median of ``work / (duration - overhead)`` over points with work and time left."""
    busy = duration - overhead
    usable = (work > 0) & (busy > 0)
    return float(np.median(work[usable] / busy[usable])) if usable.any() else None


def _check_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(name, f"must be an integer >= 1, got {excerpt(value)}")


_Columns = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (node, kind) -> (work, duration)


def _fit_overheads(columns: _Columns, counts: Mapping[str, int],
                   min_points: int) -> tuple[tuple[OverheadEstimate, ...], float | None]:
    """Each node's overhead (the median Theil-Sen intercept of its fitted groups) and the global one."""
    intercepts: dict[str, list[float]] = {}
    for (node, _), (w, d) in sorted(columns.items()):
        line = theil_sen(w, d) if w.shape[0] >= min_points else None
        if line is not None and line[0] > 0:
            intercepts.setdefault(node, []).extend((d - line[0] * w).tolist())
    pooled = [x for node in sorted(intercepts) for x in intercepts[node]]
    global_overhead = max(0.0, float(np.median(pooled))) if pooled else None
    overheads = []
    for node in sorted(counts):
        if node in intercepts:
            overheads.append(OverheadEstimate(node, max(0.0, float(np.median(intercepts[node]))), counts[node], "node"))
        elif global_overhead is not None:
            overheads.append(OverheadEstimate(node, global_overhead, counts[node], "global"))
        else:
            overheads.append(OverheadEstimate(node, 0.0, counts[node], "none"))
    return tuple(overheads), global_overhead


def _fit_speeds(columns: _Columns, overhead_of: Mapping[str, float],
                min_points: int) -> tuple[tuple[SpeedEstimate, ...], float | None]:
    """Each group's median-ratio speed, falling back to its node's pooled points, then to all."""
    def pooled(keys) -> float | None:
        keys = sorted(keys)
        if not keys:
            return None
        w = np.concatenate([columns[k][0] for k in keys])
        d = np.concatenate([columns[k][1] for k in keys])
        o = np.concatenate([np.full(columns[k][0].shape[0], overhead_of[k[0]]) for k in keys])
        return _median_speed(w, d, o) if w.shape[0] >= min_points else None

    global_speed = pooled(columns)
    speeds = []
    for (node, kind), (w, d) in sorted(columns.items()):
        estimate, source = None, "group"
        if w.shape[0] >= min_points:
            estimate = _median_speed(w, d, overhead_of[node])
        if estimate is None:
            estimate, source = pooled(k for k in columns if k[0] == node), "node"
        if estimate is None:
            estimate, source = global_speed, "global"
        if estimate is not None:
            speeds.append(SpeedEstimate(node, kind, estimate, int(w.shape[0]), source))
    return tuple(speeds), global_speed


def fit(observations, *, runs: Sequence[str] = (), revision: int = 1, fitted_at: str = "",
        min_points: int = MIN_POINTS, window: int = WINDOW) -> Calibration:
    """Fit speeds and overheads to ``observations`` (see the module's docstring)."""
    _check_count(min_points, "min_points")
    _check_count(window, "window")
    obs = _window(as_observations(observations), window)
    groups: dict[tuple[str, str], list[Observation]] = {}
    for o in obs:
        groups.setdefault((o.node, o.kind), []).append(o)
    columns = {key: (np.array([o.work for o in g]), np.array([o.duration for o in g])) for key, g in groups.items()}
    counts: dict[str, int] = {}
    for (node, _), g in groups.items():
        counts[node] = counts.get(node, 0) + len(g)
    overheads, global_overhead = _fit_overheads(columns, counts, min_points)
    speeds, global_speed = _fit_speeds(columns, {o.node: o.overhead for o in overheads}, min_points)
    return Calibration(speeds=speeds, overheads=overheads, observations=obs, runs=tuple(runs),
                       revision=revision, fitted_at=fitted_at, min_points=min_points, window=window,
                       global_speed=global_speed, global_overhead=global_overhead)


def apply_calibration(cluster: Cluster, calibration: Calibration) -> Cluster:
    """``cluster`` with each calibrated node's overhead and speeds (as ``node_speed_factors``
    over its declared speed); nodes and kinds the calibration has not seen keep their values."""
    overhead_of = {o.node: o.overhead for o in calibration.overheads}
    factors = {node: dict(f) for node, f in cluster.node_speed_factors.items()}
    declared = {nd.id: nd.speed for nd in cluster.nodes}
    for s in calibration.speeds:
        if s.node in declared:
            factors.setdefault(s.node, {})[s.kind] = s.speed / declared[s.node]
    nodes = tuple(dataclasses.replace(nd, overhead=overhead_of[nd.id]) if nd.id in overhead_of else nd
                  for nd in cluster.nodes)
    return dataclasses.replace(cluster, nodes=nodes, node_speed_factors=factors)


def predicted_durations(observations, cluster: Cluster) -> np.ndarray:
    """What the model (``Instance.build``'s duration table) predicts for each observation."""
    obs = as_observations(observations)
    if not obs:
        return np.empty(0)
    workload = Workload(tasks=tuple(Task(id=f"o{i}", work=o.work, kind=o.kind) for i, o in enumerate(obs)))
    inst = Instance.build(workload, cluster)
    column = {node_id: j for j, node_id in enumerate(inst.node_ids)}
    for i, o in enumerate(obs):
        if o.node not in column:
            raise SpecError(f"observations[{i}].node", f"unknown node {excerpt(o.node)} in cluster {cluster.name!r}")
    return inst.duration[np.arange(len(obs)), [column[o.node] for o in obs]]


def relative_errors(observations, cluster: Cluster) -> np.ndarray:
    """|predicted - realised| / realised for each observation with a realised duration > 0."""
    obs = as_observations(observations)
    predicted = predicted_durations(obs, cluster)
    realised = np.array([o.duration for o in obs])
    timed = realised > 0
    return np.abs(predicted[timed] - realised[timed]) / realised[timed]


def median_abs_error(observations, cluster: Cluster) -> float:
    """The median absolute relative prediction error of the step durations (0.2: 20 %)."""
    errors = relative_errors(observations, cluster)
    return float(np.median(errors)) if errors.size else math.nan


def save(calibration: Calibration, path: str | Path) -> Path:
    """Write the calibration as JSON (atomically: a reader never sees half a file)."""
    from apportion.core.atomic import write_json

    return write_json(path, calibration.to_dict())


def load(path: str | Path) -> Calibration:
    """Read a calibration file; a missing one is an empty calibration (nothing observed yet)."""
    path = Path(path)
    if not path.exists():
        return Calibration()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SpecError(str(path), f"cannot read calibration: {excerpt(str(error))}") from None
    return Calibration.from_dict(doc, where=str(path))


@dataclass(frozen=True)
class CalibrationUpdate:
    calibration: Calibration  # after this run
    cluster: Cluster  # the declared cluster calibrated: what the next plan uses
    error_before: float  # median abs error of this run's steps under the model it planned with
    error_after: float  # the same under the new calibration


def update(path: str | Path, observations, cluster: Cluster, *, run_id: str, fitted_at: str) -> CalibrationUpdate:
    """One run's calibration step: merge its observations into the file at ``path`` (created if
    missing), save it, and say how well the model predicted this run before and after.
    ``cluster`` is the declared one."""
    observations = as_observations(observations)
    previous = load(path)
    calibration = previous.merge(observations, run_id=run_id, fitted_at=fitted_at)
    calibrated = apply_calibration(cluster, calibration)
    before = median_abs_error(observations, apply_calibration(cluster, previous))
    after = median_abs_error(observations, calibrated)
    save(calibration, path)
    return CalibrationUpdate(calibration, calibrated, before, after)


def group_table(calibration: Calibration) -> list[dict]:
    """One row per (node, kind): speed, its source and count, and the node's overhead."""
    overhead_of = {o.node: o for o in calibration.overheads}
    return [{"node": s.node, "kind": s.kind, "speed": s.speed, "speed_source": s.source, "count": s.count,
             "overhead": overhead_of[s.node].overhead, "overhead_source": overhead_of[s.node].source}
            for s in calibration.speeds]


def observations_of(records: Iterable[Mapping]) -> tuple[Observation, ...]:
    """Observations from step records with ``node``, ``kind``, ``work``, ``start`` and ``end``
    (what an enactment's observe step collects): duration = end - start. For the overhead to be
    learned, ``start`` should be when the step was ready (queued, or its last input's end), not
    when Airflow recorded it running."""
    return as_observations([{"node": r["node"], "kind": r["kind"], "work": r["work"],
                             "duration": float(r["end"]) - float(r["start"]), "run_id": r.get("run_id", "")}
                            for r in records])

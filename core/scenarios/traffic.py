"""Intelligent traffic (background article, 8.3): one request per city region per 5-min cycle.

Regions lie on a grid (rows = floor(sqrt(regions)), row-major); consecutive blocks of regions
belong to the district whose edge cabinet hosts their sensors and cameras. Per region ``r{i}``
(5 tasks):

    ingest  (loop-detector feed, ETL)       edge box of the region's district only
    detect  (camera incident detection)     edge box of the region's district only
    forecast (Graph WaveNet-style)          anywhere; inputs: own ingest + detect, and the
                                            ingest of the 4-neighbour regions (cross-request)
    route   (route planning, graph search)  anywhere; input: forecast
    signal  (signal control policy)         anywhere; inputs: forecast, detect

Load follows the time of day of the run's logical date (``load_factor``): vehicle counts scale
the detection/re-identification work, the ingest work, the track data sent to the forecaster and
the number of routing queries. Every region's cycle is released at 0 and must finish within the
cycle (the next forecast is due then).
"""

from __future__ import annotations

import math
from datetime import datetime
from itertools import pairwise

import numpy as np

from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Edge, Request, Task, Workload
from apportion.core.scenarios import profiles as P
from apportion.core.scenarios._validate import count, number
from apportion.core.scenarios.clusters import city_cluster, zones_of

TASKS_PER_REGION = 5
EDGE = ("edge",)
DEFAULT_LOGICAL_DATE = datetime(2024, 3, 4, 8, 0)  # a Monday, in the morning rush

# Load multiplier (1 = an ordinary daytime hour) by hour of day, linearly interpolated.
# Stylised two-peak weekday profile with the rush windows 7-9 and 16-19 at 1.6-2.0x and the
# night at 0.25x: peak/night = 8, in line with the usual urban pattern where the peak hour
# carries ~8-10% of daily traffic and the small hours ~1% (assumption). Weekends have no rush,
# a broad midday hump instead (assumption).
WEEKDAY_CURVE = ((0, 0.25), (5, 0.25), (6, 0.6), (7, 1.6), (8, 2.0), (9, 1.6), (10, 1.0), (15, 1.0),
                 (16, 1.6), (17, 2.0), (18, 2.0), (19, 1.5), (21, 0.8), (24, 0.25))
WEEKEND_CURVE = ((0, 0.3), (6, 0.3), (9, 0.9), (12, 1.2), (18, 1.1), (22, 0.6), (24, 0.3))

# Per-region workload parameters (assumptions, per 5-minute cycle):
FRAMES_PER_CAMERA = 300  # 1 frame/s analysed for 300 s
VEHICLES_PER_FRAME = 8.0  # detections per frame at load 1
TRACK_RECORD_BYTES = 64  # one tracked detection: id, box, class, speed, time
READINGS_PER_SENSOR = 10  # loop detectors report every 30 s
OPS_PER_READING = 1e4  # parse, clean, impute
VEHICLES_PER_SENSOR = 100.0  # per cycle at load 1 (~1,200 veh/h on a lane)
OPS_PER_VEHICLE_EVENT = 1e3
SENSOR_FEATURES = 3  # flow, occupancy, speed
BOUNDARY_SHARE = 0.25  # share of a neighbour's sensors the forecaster reads
QUERIES_AT_LOAD_1 = 20_000  # navigation requests per region per cycle
OPS_PER_QUERY = 1e6  # A* over a few-thousand-node district graph (~5e4 relaxations x 20 ops)
DECISIONS_PER_CYCLE = 60  # one signal decision per intersection every 5 s
POLICY_FLOP = 2 * (64 * 256 + 256 * 256 + 256 * 8)  # MLP policy 64-256-256-8 per decision


def _interpolate(curve, hour: float) -> float:
    for (h0, v0), (h1, v1) in pairwise(curve):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    raise AssertionError(f"hour {hour} outside the curve")


def load_factor(when: datetime) -> float:
    """Traffic load at local time ``when`` (1 = ordinary daytime hour; see the curves)."""
    hour = when.hour + when.minute / 60 + when.second / 3600
    return _interpolate(WEEKEND_CURVE if when.weekday() >= 5 else WEEKDAY_CURVE, hour)


def _logical_date(value) -> datetime:
    if value is None:
        return DEFAULT_LOGICAL_DATE
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise SpecError("logical_date", f"must be an ISO date-time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise SpecError("logical_date", f"must be a datetime, an ISO string or None, got {value!r}")
    return value


def grid_shape(regions: int) -> tuple[int, int]:
    rows = max(1, math.isqrt(regions))
    return rows, math.ceil(regions / rows)


def neighbours(regions: int) -> list[list[int]]:
    """4-neighbours of each region on the row-major grid."""
    rows, cols = grid_shape(regions)
    out = []
    for i in range(regions):
        r, c = divmod(i, cols)
        near = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        out.append([a * cols + b for a, b in near if 0 <= a < rows and 0 <= b < cols and a * cols + b < regions])
    return out


def _gwn_gflop(n_sensors: float) -> float:
    """Graph WaveNet forward FLOPs on ``n_sensors`` graph nodes, times the MC samples."""
    per_step = (2 * n_sensors ** 2 * P.GWN_CHANNELS * P.GWN_ORDER * P.GWN_SUPPORTS
                + 2 * n_sensors * P.GWN_CHANNELS ** 2 * 6)
    return P.GWN_LAYERS * P.GWN_STEPS * per_step * P.GWN_SAMPLES / 1e9


def traffic_prediction(regions: int, nodes: int, seed: int, logical_date=None, *,
                       cycle: float = 300.0) -> tuple[Workload, Cluster]:
    """One prediction cycle for ``regions`` city regions on a city cluster of ``nodes`` nodes.

    :param logical_date: local date-time of the run (datetime or ISO string); None uses
        ``DEFAULT_LOGICAL_DATE``. Airflow's logical date is UTC: convert to the city's time zone.
    :param cycle: seconds per cycle; every region's request has this deadline.
    """
    count("regions", regions)
    cycle = number("cycle", cycle, strict=True)
    load = load_factor(_logical_date(logical_date))
    cluster = city_cluster(nodes)
    districts = zones_of(cluster, "district")
    rng = np.random.default_rng(seed)

    sensors = rng.integers(40, 121, regions)
    cameras = rng.integers(4, 13, regions)
    intersections = rng.integers(20, 61, regions)
    near = neighbours(regions)
    vehicles_per_frame = VEHICLES_PER_FRAME * load

    tasks: list[Task] = []
    edges: list[Edge] = []
    requests: list[Request] = []
    for i in range(regions):
        rid = f"r{i}"
        home = (districts[i * len(districts) // regions],)
        requests.append(Request(id=rid, release=0.0, deadline=cycle))

        def task(step, work, kind, memory, **rules):
            tasks.append(Task(id=f"{rid}.{step}", work=float(work), kind=kind, memory=memory, request=rid, **rules))

        frames = cameras[i] * FRAMES_PER_CAMERA
        task("ingest", sensors[i] * (READINGS_PER_SENSOR * OPS_PER_READING
                                     + VEHICLES_PER_SENSOR * load * OPS_PER_VEHICLE_EVENT) / 1e9,
             "etl", 0.5, allowed_kinds=EDGE, allowed_zones=home)
        task("detect", frames * (P.YOLOV8N_GFLOP + vehicles_per_frame * P.OSNET_GFLOP), "cnn",
             P.DETECTOR_MEMORY, allowed_kinds=EDGE, allowed_zones=home)
        graph_size = sensors[i] + BOUNDARY_SHARE * sum(sensors[j] for j in near[i])
        task("forecast", _gwn_gflop(graph_size), "gnn", P.GNN_MEMORY)
        task("route", QUERIES_AT_LOAD_1 * load * OPS_PER_QUERY / 1e9, "graph_search", 2.0)
        task("signal", intersections[i] * DECISIONS_PER_CYCLE * POLICY_FLOP / 1e9, "tabular", 0.5)

        def edge(source, target, data):
            # float(): the counts are NumPy integers; a spec holds plain Python numbers.
            edges.append(Edge(source, target, float(data)))

        feed_mb = sensors[i] * P.GWN_STEPS * SENSOR_FEATURES * 4 / 1e6
        edge(f"{rid}.ingest", f"{rid}.forecast", feed_mb)
        edge(f"{rid}.detect", f"{rid}.forecast", frames * vehicles_per_frame * TRACK_RECORD_BYTES / 1e6)
        edge(f"{rid}.detect", f"{rid}.signal", 0.01)  # incident events
        # Forecast: 12 horizons x 3 features x 3 quantiles per sensor, float32.
        forecast_mb = graph_size * P.GWN_STEPS * SENSOR_FEATURES * 3 * 4 / 1e6
        edge(f"{rid}.forecast", f"{rid}.route", forecast_mb)
        edge(f"{rid}.forecast", f"{rid}.signal", forecast_mb)
        for j in near[i]:
            edge(f"r{j}.ingest", f"{rid}.forecast", BOUNDARY_SHARE * sensors[j] * P.GWN_STEPS * SENSOR_FEATURES * 4 / 1e6)

    workload = Workload(tasks=tuple(tasks), edges=tuple(edges), requests=tuple(requests),
                        name=f"traffic_prediction-{regions}-s{seed}")
    return workload, cluster

"""traffic_prediction's stand-ins: sensor series ingested, incidents detected, flows forecast,
routes and signal splits planned."""

from __future__ import annotations

from typing import Mapping

from apportion.operators.steps.kit import OTHER_UNITS, batches, digit_slices, rng_for

_SENSORS = 16
_READINGS = 1000  # loop-detector readings per sensor and item


def _sensor_series(seed: int, items: int):
    """The region's loop-detector flows: an AR(2) process per sensor, ``items`` x 1,000
    readings, with the morning peak as a slow sine."""
    import numpy as np

    rng = rng_for(seed, "sensors")
    length = items * _READINGS
    noise = rng.normal(0.0, 1.0, (length, _SENSORS))
    flow = np.zeros((length, _SENSORS))
    for t in range(2, length):  # the AR recursion is sequential: one row of sensors per step
        flow[t] = 0.6 * flow[t - 1] + 0.3 * flow[t - 2] + noise[t]
    return flow + 20.0 + 5.0 * np.sin(np.arange(length) / 300.0)[:, None]


def ingest(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Read and aggregate ``items`` x 1,000 readings of each of the region's 16 sensors."""
    flow = _sensor_series(seed, items)
    return {"readings": int(flow.size), "flow_mean": round(float(flow.mean()), 4), "series_seed": seed,
            "series_items": items}


def detect(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Count vehicles in ``items`` camera frames (background subtraction, threshold, connected
    components) and flag frames whose count is far above the others (incidents)."""
    import numpy as np
    from scipy import ndimage

    rng = rng_for(seed, "detect")
    counts = []
    for size in batches(items):
        frames = digit_slices(rng, size)
        foreground = ndimage.uniform_filter(frames, size=(1, 3, 3)) > 0.5
        counts.extend(int(ndimage.label(frame)[1]) for frame in foreground)
    counts = np.array(counts, dtype=float)
    spread = counts.std() or 1.0
    return {"frames": items, "vehicles_mean": round(float(counts.mean()), 4),
            "incidents": int(((counts - counts.mean()) / spread > 3.0).sum())}


def forecast(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Fit an AR(4) model per sensor by least squares on the ingested series (``items`` passes
    over it, each on a bootstrap of the windows) and forecast the next 12 readings, shifted by
    the neighbouring regions' spill-over (their ingested flows, ``other_units``)."""
    import numpy as np

    flow = _sensor_series(inputs["ingest"]["series_seed"], inputs["ingest"]["series_items"]).mean(axis=1)
    lags = np.column_stack([flow[3 - k:len(flow) - 1 - k] for k in range(4)])
    target = flow[4:]
    rng = rng_for(seed, "forecast")
    coefficients = []
    for _ in range(items):
        rows = rng.integers(0, len(target), len(target))
        design = np.column_stack([lags[rows], np.ones(len(rows))])
        coefficients.append(np.linalg.lstsq(design, target[rows], rcond=None)[0])
    beta = np.mean(coefficients, axis=0)
    history, ahead = list(flow[-4:]), []
    for _ in range(12):
        ahead.append(float(np.dot(beta[:4], history[::-1][:4]) + beta[4]))
        history.append(ahead[-1])
    slowdown = 1.0 + 0.05 * min(inputs["detect"]["incidents"], 10)
    # Traffic from the neighbouring regions (their ingested flows, when they were enacted too)
    # spills over: a tenth of how much busier they are than this region.
    neighbours = inputs.get(OTHER_UNITS, {})
    spill = 0.0
    if neighbours:
        spill = 0.1 * (np.mean([out["flow_mean"] for out in neighbours.values()]) - inputs["ingest"]["flow_mean"])
    return {"forecast": [round((v + spill) * slowdown, 3) for v in ahead], "fits": items,
            "incidents": inputs["detect"]["incidents"], "neighbours": sorted(neighbours),
            "spill": round(float(spill), 4)}


def route(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Answer ``items`` x 16 routing queries on the region's 32 x 32 street grid, edge costs
    from the forecast congestion (Dijkstra)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    rng = rng_for(seed, "route")
    side = 32
    congestion = float(np.mean(inputs["forecast"]["forecast"])) / 20.0
    ids = np.arange(side * side).reshape(side, side)
    a = np.concatenate([ids[:, :-1].ravel(), ids[:-1, :].ravel()])
    b = np.concatenate([ids[:, 1:].ravel(), ids[1:, :].ravel()])
    cost = congestion * rng.uniform(0.5, 1.5, len(a))
    graph = coo_matrix((np.concatenate([cost, cost]), (np.concatenate([a, b]), np.concatenate([b, a]))),
                       shape=(side * side, side * side)).tocsr()
    times = []
    for _ in range(items):
        origins = rng.integers(0, side * side, 16)
        distances = dijkstra(graph, indices=origins)
        times.append(distances[np.arange(16), rng.integers(0, side * side, 16)])
    return {"queries": items * 16, "mean_travel_time": round(float(np.mean(times)), 4)}


def signal(items: int, seed: int, inputs: Mapping[str, dict]) -> dict:
    """Choose green splits for ``items`` x 64 intersection cycles from the forecast flows
    (the split that minimises Webster's delay, searched on a grid), longer with incidents."""
    import numpy as np

    rng = rng_for(seed, "signal")
    flow = np.mean(inputs["forecast"]["forecast"])
    splits = np.linspace(0.2, 0.8, 61)
    chosen = []
    for _ in range(items):
        main = flow * rng.uniform(0.8, 1.2, 64)[:, None]
        cross = flow * rng.uniform(0.3, 0.7, 64)[:, None]
        delay = main / np.maximum(splits - main / 100.0, 1e-3) + cross / np.maximum(1 - splits - cross / 100.0, 1e-3)
        chosen.append(splits[np.argmin(delay, axis=1)])
    extension = 5.0 * min(inputs["detect"]["incidents"], 6)
    return {"cycles": items * 64, "green_share_mean": round(float(np.mean(chosen)), 4),
            "incident_extension_s": extension}

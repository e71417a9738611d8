"""Plain-Python reference of the calibration estimator (core/calibrate.py), written out with
loops and ``statistics.median``."""

from __future__ import annotations

import statistics


def _groups(observations):
    groups = {}
    for o in observations:
        groups.setdefault((o.node, o.kind), []).append((o.work, o.duration))
    return groups


def naive_overheads(groups, min_points):
    """Each node's overhead: the median Theil-Sen intercept of its groups, else the global one, else 0."""
    intercepts = {}
    for (node, _), points in groups.items():
        if len(points) < min_points:
            continue
        slopes = [(points[b][1] - points[a][1]) / (points[b][0] - points[a][0])
                  for a in range(len(points)) for b in range(a + 1, len(points)) if points[b][0] != points[a][0]]
        if not slopes or statistics.median(slopes) <= 0:
            continue
        slope = statistics.median(slopes)
        intercepts.setdefault(node, []).extend(d - slope * w for w, d in points)
    everything = [x for xs in intercepts.values() for x in xs]
    overhead = {}
    for node, _ in groups:
        if node in intercepts:
            overhead[node] = max(0.0, statistics.median(intercepts[node]))
        elif everything:
            overhead[node] = max(0.0, statistics.median(everything))
        else:
            overhead[node] = 0.0
    return overhead


def naive_fit(observations, min_points=3):
    """(overhead by node, speed by (node, kind)) as ``fit`` defines them."""
    groups = _groups(observations)
    overhead = naive_overheads(groups, min_points)

    def ratio(points):
        ratios = [w / (d - overhead[node]) for node, w, d in points if w > 0 and d - overhead[node] > 0]
        return statistics.median(ratios) if len(points) >= min_points and ratios else None

    every = [(node, w, d) for (node, _), points in groups.items() for w, d in points]
    speed = {}
    for (node, kind), points in groups.items():
        estimate = ratio([(node, w, d) for w, d in points])
        if estimate is None:
            estimate = ratio([(nd, w, d) for (nd, _), pts in groups.items() if nd == node for w, d in pts])
        if estimate is None:
            estimate = ratio(every)
        if estimate is not None:
            speed[(node, kind)] = estimate
    return overhead, speed

"""Plain-Python CPoP (as published) and BIL (as SAGA adapts it), written out directly."""

from __future__ import annotations

import heapq
import math

import numpy as np

from apportion.core.model import Instance
from tests.reference.naive_baselines import candidates, data_ready, transfer


def _children(inst: Instance, t: int):
    for e in range(inst.child_ptr[t], inst.child_ptr[t + 1]):
        yield int(inst.child_idx[e]), float(inst.child_data[e])


def _means(inst: Instance):
    m = inst.n_nodes
    eligible = [[j for j in range(m) if inst.eligible[t, j]] for t in range(inst.n_tasks)]
    wbar = [sum(inst.duration[t, j] for j in eligible[t]) / len(eligible[t]) for t in range(inst.n_tasks)]
    pairs = [(a, b) for a in range(m) for b in range(m) if a != b and math.isfinite(inst.inv_bandwidth[a, b])]
    if not pairs:
        return wbar, lambda data: 0.0
    latency = sum(inst.latency[a, b] for a, b in pairs) / len(pairs)
    bandwidth = sum(1.0 / inst.inv_bandwidth[a, b] for a, b in pairs) / len(pairs)
    return wbar, lambda data: latency + data / bandwidth


def _first_gap(timeline, ready, d):
    """(start, index): the first idle gap of a sorted timeline at or after ``ready`` holding
    ``d``, else after its last task."""
    prev_end = 0.0
    for i, (s_i, e_i) in enumerate(timeline):
        if max(ready, prev_end) + d <= s_i:
            return max(ready, prev_end), i
        prev_end = e_i
    return max(ready, prev_end), len(timeline)


def cpop_reference(inst: Instance):
    """CPoP of Topcuoglu et al. (2002): (assignment, start, end)."""
    n, m = inst.n_tasks, inst.n_nodes
    wbar, cbar = _means(inst)
    topo = inst.topo_order.tolist()
    up, down = [0.0] * n, [0.0] * n
    for t in reversed(topo):
        up[t] = wbar[t] + max((cbar(d) + up[c] for c, d in _children(inst, t)), default=0.0)
    for t in topo:
        for c, d in _children(inst, t):
            down[c] = max(down[c], down[t] + wbar[t] + cbar(d))
    prio = [up[t] + down[t] for t in range(n)]
    entries = [t for t in range(n) if inst.parent_ptr[t + 1] == inst.parent_ptr[t]]
    length = max(prio[t] for t in entries)
    critical = {t for t in range(n) if np.isclose(prio[t], length)}
    fit = [j for j in range(m) if all(inst.eligible[t, j] for t in critical)]
    cp_node = min(fit, key=lambda j: (sum(inst.duration[t, j] for t in critical), j)) if fit else None
    position = {t: i for i, t in enumerate(topo)}
    waiting = [int(inst.parent_ptr[t + 1] - inst.parent_ptr[t]) for t in range(n)]
    heap = [(-prio[t], position[t], t) for t in entries]
    heapq.heapify(heap)
    assign = np.full(n, -1, dtype=np.int32)
    start, end = [0.0] * n, [0.0] * n
    timelines = [[] for _ in range(m)]
    while heap:
        _, _, t = heapq.heappop(heap)
        nodes = [cp_node] if (t in critical and cp_node is not None) else range(m)
        best = None
        for j in nodes:
            if not inst.eligible[t, j]:
                continue
            d = inst.duration[t, j]
            slot, at = _first_gap(timelines[j], data_ready(inst, t, j, assign, end), d)
            if best is None or slot + d < best[0]:
                best = (slot + d, j, slot, at)
        _, j, s, at = best
        timelines[j].insert(at, (s, s + inst.duration[t, j]))
        assign[t], start[t], end[t] = j, s, s + inst.duration[t, j]
        for c, _ in _children(inst, t):
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(heap, (-prio[c], position[c], c))
    return assign, np.asarray(start), np.asarray(end)


def bil_reference(inst: Instance):
    """BIL as in SAGA, on eligible nodes: (assignment, order, end)."""
    n, m = inst.n_tasks, inst.n_nodes
    bil = [[math.inf] * m for _ in range(n)]
    for t in reversed(inst.topo_order.tolist()):
        for j in range(m):
            if not inst.eligible[t, j]:
                continue
            tail = 0.0
            for c, d in _children(inst, t):
                options = [bil[c][j]] + [bil[c][k] + transfer(inst, d, j, k) for k in range(m)
                                         if k != j and inst.eligible[c, k]]
                tail = max(tail, min(options))
            bil[t][j] = inst.duration[t, j] + tail
    free = [0.0] * m
    assign = np.full(n, -1, dtype=np.int32)
    end = [0.0] * n
    order = []
    waiting = [int(inst.parent_ptr[t + 1] - inst.parent_ptr[t]) for t in range(n)]
    ready_tasks = {t for t in range(n) if waiting[t] == 0}
    while ready_tasks:
        def key(t):
            return sorted((free[j] + bil[t][j] for j in range(m) if inst.eligible[t, j]), reverse=True)
        best = None
        for t in sorted(ready_tasks):  # lexicographic, as Python compares lists; ties keep the lower index
            if best is None or key(t) > key(best):
                best = t
        t = best
        ready_tasks.remove(t)
        nodes = candidates(inst, t, assign, end)
        j = min(nodes, key=lambda k: (free[k] + bil[t][k], k))
        s = max(free[j], data_ready(inst, t, j, assign, end))
        assign[t], end[t] = j, s + inst.duration[t, j]
        free[j] = end[t]
        order.append(t)
        for c, _ in _children(inst, t):
            waiting[c] -= 1
            if waiting[c] == 0:
                ready_tasks.add(c)
    return assign, np.asarray(order, dtype=np.int32), np.asarray(end)

"""Textbook insertion-based HEFT in plain Python."""

from __future__ import annotations

import numpy as np

from apportion.core.algorithms.heft import heft_priority
from apportion.core.model import Instance
from tests.reference.naive_baselines import data_ready


def heft_reference(inst: Instance):
    """Textbook insertion-based HEFT in plain Python (each node's timeline a sorted list)."""
    n = inst.n_tasks
    assign = np.full(n, -1, dtype=np.int32)
    start, end = [0.0] * n, [0.0] * n
    timelines = [[] for _ in range(inst.n_nodes)]  # (start, end) in time order
    for t in heft_priority(inst).tolist():
        best = None
        for j in range(inst.n_nodes):
            if not inst.eligible[t, j]:
                continue
            ready = data_ready(inst, t, j, assign, end)
            d = inst.duration[t, j]
            prev_end, slot, at = 0.0, None, len(timelines[j])
            for i, (s_i, e_i) in enumerate(timelines[j]):
                s = max(ready, prev_end)
                if s + d <= s_i:
                    slot, at = s, i
                    break
                prev_end = e_i
            if slot is None:
                slot = max(ready, prev_end)
            if best is None or slot + d < best[0]:
                best = (slot + d, j, slot, at)
        finish, j, s, at = best
        timelines[j].insert(at, (s, s + inst.duration[t, j]))
        assign[t], start[t], end[t] = j, s, s + inst.duration[t, j]
    return assign, np.asarray(start), np.asarray(end)

"""Textbook insertion decoding in plain Python: the reference for core.algorithms.local_search."""

from __future__ import annotations

import numpy as np

from apportion.core.model import Instance
from tests.reference.naive_baselines import data_ready


def insertion_reference(inst: Instance, priority, assign, choose: bool = False):
    """(assignment, start, end): tasks in ``priority`` order, each at the earliest idle gap of
    its node (or, with ``choose``, of the eligible node where it finishes earliest, lowest
    index on ties) that starts after its inputs arrive and holds it. A node is free from its
    ``available_from`` and after its pinned tasks, which keep their times."""
    n, m = inst.n_tasks, inst.n_nodes
    assign = np.array(assign, dtype=np.int32)
    start, end = np.zeros(n), np.zeros(n)
    free = [float(inst.available_from[j]) for j in range(m)]
    for t in range(n):
        if inst.pinned_node[t] >= 0:
            j = int(inst.pinned_node[t])
            free[j] = max(free[j], float(inst.pinned_end[t]))
    timelines = [[] for _ in range(m)]  # (start, end) of each node's tasks, in time order
    for t in (int(x) for x in priority):
        if inst.pinned_node[t] >= 0:
            start[t], end[t] = inst.pinned_start[t], inst.pinned_end[t]
            continue
        best = None
        for j in (range(m) if choose else [int(assign[t])]):
            if not inst.eligible[t, j]:
                continue
            ready, d = data_ready(inst, t, j, assign, end), float(inst.duration[t, j])
            previous_end, slot, at = free[j], None, len(timelines[j])
            for i, (s_i, e_i) in enumerate(timelines[j]):
                s = max(ready, previous_end)
                if s + d <= s_i:
                    slot, at = s, i
                    break
                previous_end = e_i
            if slot is None:
                slot = max(ready, previous_end)
            if best is None or slot + d < best[0]:
                best = (slot + d, j, slot, at)
        finish, j, s, at = best
        timelines[j].insert(at, (s, finish))
        assign[t], start[t], end[t] = j, s, finish
    return assign, start, end

"""CPoP and BIL, two more of SAGA's list heuristics (``heft`` has HEFT, ``list_heuristics`` and
``baselines`` the batch-mode ones), and ``rank_seeds``: their plans and HEFT's under the two
readings of HEFT's mean transfer cost, as extra NSGA-II seeds.

* CPoP (critical path on a processor; Topcuoglu, Hariri and Wu 2002): priority = upward rank +
  downward rank (mean runtimes and mean transfers as HEFT's); the tasks whose priority equals
  the critical path's length (``np.isclose``, as SAGA) all run on the one node that runs them
  fastest in total; the ready task of highest priority goes next (ties: topological position),
  on the node where it finishes earliest, inserted into an idle gap as HEFT does.
* BIL (best imaginary level; Oh and Ha 1996, as SAGA adapts it to heterogeneous links):
  BIL(t, j) = runtime of t on j + the largest, over t's children c, of the least of
  BIL(c, j) and BIL(c, k) + transfer from j to k over the other nodes k. Each step takes the
  ready task whose best imaginary makespans (node free time + BIL over its eligible nodes,
  sorted from the largest) are lexicographically largest (a prefix is the smaller; ties: lowest
  task index), appends
  it on the node of least free time + BIL (ties: lowest index) among the eligible nodes its
  inputs reach (all eligible nodes if none). SAGA's "revised" BIM adds runtime x max(ready / n - 1,
  0), which is always 0, so it is left out. Scans the ready tasks at each step, so it runs as
  a seed only when ``list_heuristics.affordable``.

Eligibility: only eligible nodes are candidates; transfers over missing links do not count.
"""

from __future__ import annotations

import heapq

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import SLICE_TASKS, ConstructiveAllocator, data_ready, planned_on_slots
from apportion.core.algorithms.heft import _heft, heft_priority, heft_ranks, mean_runtime, mean_transfer, schedule_order
from apportion.core.algorithms.list_heuristics import affordable
from apportion.core.algorithms.registry import register
from apportion.core.evaluate import Plan, link_arrays
from apportion.core.model import ROWS_AT_ONCE, Instance


def _harmonic_runtime(instance: Instance) -> np.ndarray:
    """Each task's work over the mean speed of its eligible nodes: the harmonic mean of its
    runtimes there (0 when one of them is 0)."""
    inst = instance
    harmonic = np.empty(inst.n_tasks)
    for lo in range(0, inst.n_tasks, ROWS_AT_ONCE):  # a block of rows at a time: no tasks x nodes temporary
        rows = slice(lo, lo + ROWS_AT_ONCE)
        eligible, duration = inst.eligible[rows], inst.duration[rows]
        d = np.where(eligible, duration, np.inf)
        with np.errstate(divide="ignore"):
            inverse = np.where(eligible, 1.0 / d, 0.0).sum(axis=1)
        zero = (eligible & (duration == 0)).any(axis=1)
        harmonic[rows] = np.where(zero, 0.0, eligible.sum(axis=1) / np.where(zero, 1.0, inverse))
    return harmonic


def downward_ranks(instance: Instance, transfer: str = "rate", saga: bool = False) -> np.ndarray:
    """CPoP's downward rank: the largest (rank + mean runtime + mean transfer) over the parents.
    ``saga``: as anrg-saga 2.0.2 computes it, the largest (rank + mean transfer) over the
    parents plus the task's own work over the mean speed (so priority counts a task's own
    runtime twice, and only the heaviest entry task's priority equals the critical path's)."""
    inst = instance
    wbar = mean_runtime(inst)
    cbar_child = mean_transfer(inst, transfer)  # in child_ptr order
    own = _harmonic_runtime(inst) if saga else None
    # SAGA joins several entry tasks under a zero-cost source, so they too count their own work.
    several = int((np.diff(inst.parent_ptr) == 0).sum()) > 1
    rank = np.zeros(inst.n_tasks)
    for t in inst.topo_order.tolist():
        if saga and (several or inst.parent_ptr[t + 1] > inst.parent_ptr[t]):
            rank[t] += own[t]
        a, b = inst.child_ptr[t], inst.child_ptr[t + 1]
        if b > a:
            kids = inst.child_idx[a:b]
            np.maximum.at(rank, kids, rank[t] + (0.0 if saga else wbar[t]) + cbar_child[a:b])
    return rank


def cpop_schedule(instance: Instance, transfer: str = "rate",
                  saga: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CPoP's (priority list, assignment, start, end); ``saga``: SAGA's downward rank
    (``downward_ranks``)."""
    inst = instance
    n = inst.n_tasks
    priority_value = heft_ranks(inst, transfer) + downward_ranks(inst, transfer, saga)
    entries = np.flatnonzero(np.diff(inst.parent_ptr) == 0)
    critical_length = priority_value[entries].max()
    critical = np.isclose(priority_value, critical_length)
    if saga and entries.size > 1:  # SAGA's critical path is its zero-cost source alone
        critical[:] = False
    eligible = inst.eligible
    on_all = eligible[critical].all(axis=0)
    if critical.any() and on_all.any():
        totals = np.where(on_all, inst.duration[critical].sum(axis=0), np.inf)
        cp_node = int(np.argmin(totals))
        eligible = eligible.copy()
        eligible[critical] = False
        eligible[critical, cp_node] = True
    position = np.empty(n, dtype=np.int64)
    position[inst.topo_order] = np.arange(n)
    waiting = np.diff(inst.parent_ptr).astype(np.int64)
    heap = [(-priority_value[t], position[t], t) for t in entries.tolist()]
    heapq.heapify(heap)
    order = np.empty(n, dtype=np.int32)
    child_ptr, child_idx = inst.child_ptr, inst.child_idx
    for k in range(n):
        _, _, t = heapq.heappop(heap)
        order[k] = t
        for c in child_idx[child_ptr[t]:child_ptr[t + 1]].tolist():
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(heap, (-priority_value[c], position[c], c))
    return _heft(inst, order, eligible)


def insertion_plan(schedule: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Plan:
    """The plan under which the evaluator decodes an insertion schedule exactly."""
    priority, assign, start, end = schedule
    return Plan(assign, schedule_order(start, end, priority))


@register
class CpopAllocator(ConstructiveAllocator):
    """CPoP (Topcuoglu, Hariri and Wu 2002): the critical path on its fastest node, the other
    tasks by upward + downward rank at their earliest finish, inserted into idle gaps."""

    name = "cpop"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return insertion_plan(cpop_schedule(instance))


@jit
def _bil_levels(topo, duration, eligible, child_ptr, child_idx, child_data, latency, inv_bw):
    """BIL(t, j) of the module docstring (inf where t is not eligible on j)."""
    n, m = duration.shape
    bil = np.full((n, m), np.inf)
    for i in range(n - 1, -1, -1):
        t = topo[i]
        for j in range(m):
            if not eligible[t, j]:
                continue
            tail = 0.0
            for e in range(child_ptr[t], child_ptr[t + 1]):
                c = child_idx[e]
                best = bil[c, j]
                for k in range(m):
                    if k != j and eligible[c, k] and np.isfinite(latency[j, k]):
                        v = bil[c, k] + (latency[j, k] + child_data[e] * inv_bw[j, k])
                        if v < best:
                            best = v
                if best > tail:
                    tail = best
            bil[t, j] = duration[t, j] + tail
    return bil


@jit
def _bil_key(t, free, bil, eligible, key):
    """Task t's imaginary makespans on its eligible nodes, largest first, in ``key``; the count."""
    count = 0
    for j in range(free.shape[0]):
        if eligible[t, j]:
            key[count] = free[j] + bil[t, j]
            count += 1
    key[:count] = np.sort(key[:count])[::-1]
    return count


@jit
def _bil_pick(pool, size, free, bil, eligible, key, best_key):
    """Position in ``pool`` of the task of lexicographically largest sorted imaginary makespans.
    The largest makespan alone decides most comparisons; the sorted lists are built only for
    the leader and for tasks that tie with it."""
    m = free.shape[0]
    best_i, best_t, best_len, best_top = -1, -1, 0, -np.inf
    for i in range(size):
        t = pool[i]
        top, count = -np.inf, 0
        for j in range(m):
            if eligible[t, j]:
                count += 1
                v = free[j] + bil[t, j]
                if v > top:
                    top = v
        if best_i != -1 and top < best_top:
            continue
        if best_i != -1 and top == best_top:
            count = _bil_key(t, free, bil, eligible, key)
            better, decided = False, False
            for r in range(min(count, best_len)):
                if key[r] != best_key[r]:
                    better = key[r] > best_key[r]
                    decided = True
                    break
            if not decided:  # one a prefix of the other: the longer is larger (a total order)
                better = count > best_len if count != best_len else t < best_t
            if not better:
                continue
        best_i, best_t, best_top = i, t, top
        best_len = _bil_key(t, free, bil, eligible, best_key)
    return best_i


@jit
def _bil_schedule(first, last, state, pool, waiting, bil, free, duration, eligible, parent_ptr, parent_idx,
                  parent_data, child_ptr, child_idx, latency, inv_bw, release, assign, end, order):
    """Place tasks ``first..last-1`` by BIL's rule; ``state`` = [candidates] between calls."""
    n, m = duration.shape
    size = state[0]
    if first == 0:
        for t in range(n):
            if waiting[t] == 0:
                pool[size] = t
                size += 1
    key = np.empty(m)
    best_key = np.empty(m)
    for k in range(first, last):
        best_i = _bil_pick(pool, size, free, bil, eligible, key, best_key)
        t = pool[best_i]
        size -= 1
        pool[best_i] = pool[size]
        reachable = False
        for j in range(m):
            key[j] = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
            if eligible[t, j] and np.isfinite(key[j]):
                reachable = True
        best_j, best_v = -1, np.inf
        for j in range(m):
            if not eligible[t, j] or (reachable and not np.isfinite(key[j])):
                continue
            if best_j == -1 or free[j] + bil[t, j] < best_v:
                best_j, best_v = j, free[j] + bil[t, j]
        s = max(free[best_j], key[best_j])
        assign[t] = best_j
        end[t] = s + duration[t, best_j]
        free[best_j] = end[t]
        order[k] = t
        for e in range(child_ptr[t], child_ptr[t + 1]):
            c = child_idx[e]
            waiting[c] -= 1
            if waiting[c] == 0:
                pool[size] = c
                size += 1
    state[0] = size


def bil_plan(instance: Instance) -> Plan:
    inst = instance
    n, m = inst.n_tasks, inst.n_nodes
    latency, inv_bw = link_arrays(inst)
    duration = np.ascontiguousarray(inst.duration)
    bil = _bil_levels(inst.topo_order.astype(np.int64), duration, inst.eligible, inst.child_ptr, inst.child_idx,
                      inst.child_data, latency, inv_bw)
    assign = np.full(n, -1, dtype=np.int32)
    order = np.empty(n, dtype=np.int32)
    args = (np.zeros(1, np.int64), np.empty(n, np.int64), np.diff(inst.parent_ptr).astype(np.int64), bil,
            np.zeros(m), duration, inst.eligible, inst.parent_ptr, inst.parent_idx, inst.parent_data, inst.child_ptr,
            inst.child_idx, latency, inv_bw, inst.release, assign, np.zeros(n), order)
    for first in range(0, n, SLICE_TASKS):
        _bil_schedule(first, min(n, first + SLICE_TASKS), *args)
    return Plan(assign, order)


@register
class BilAllocator(ConstructiveAllocator):
    """BIL (Oh and Ha 1996, with SAGA's heterogeneous links): the ready task of largest best
    imaginary makespan on the node of least imaginary level, appended."""

    name = "bil"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return bil_plan(instance)


@planned_on_slots
def rank_seeds(instance: Instance) -> dict[str, Plan]:
    """Extra NSGA-II seeds: CPoP under both mean-transfer readings and as SAGA computes it,
    HEFT under the ``"time"`` reading (HEFT's default plan is a baseline already), and BIL when affordable."""
    seeds = {"cpop": insertion_plan(cpop_schedule(instance, "rate")),
             "cpop-time": insertion_plan(cpop_schedule(instance, "time")),
             "cpop-saga": insertion_plan(cpop_schedule(instance, "time", saga=True)),
             "heft-time": insertion_plan(_heft(instance, heft_priority(instance, "time")))}
    if affordable(instance):
        seeds["bil"] = bil_plan(instance)
    return seeds

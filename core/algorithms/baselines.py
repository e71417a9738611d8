"""Constructive baseline allocators: each builds one plan, scored by the shared evaluator.

Every baseline places tasks one at a time and, like the evaluator's decoder, appends each task
to its node's queue (HEFT alone inserts into idle gaps, and emits a dispatch order the decoder
reproduces exactly). All of them

* use only a task's eligible nodes (``Instance.eligible``);
* avoid nodes that a parent's output cannot reach (no link: infinite arrival) and nodes from
  which a child could not be fed (``Instance.viable``), unless every eligible node is
  unreachable, in which case the plan is unroutable and the evaluator says so;
* estimate times with the cost model of ``core.evaluate``: start = max(node free, release,
  inputs arrived), transfer = 0 on the same node else latency + data / bandwidth;
* break ties towards the lowest task index and the lowest node index.

``baseline_plans`` runs them all (NSGA-II seeds its population with the result).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from apportion.core._jit import jit, jit_inline
from apportion.core.algorithms.base import AllocationResult, Allocator
from apportion.core.algorithms.registry import register
from apportion.core.errors import SpecError
from apportion.core.evaluate import STATS, Evaluator, Plan
from apportion.core.model import Instance


def _link_arrays(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """Latency and inverse bandwidth as the decoder uses them: a missing link is infinite
    latency (so even 0 MB cannot cross it) and 0 s/MB, which keeps 0 * inf out of the sums."""
    no_link = ~np.isfinite(inst.inv_bandwidth)
    latency = np.ascontiguousarray(np.where(no_link, np.inf, inst.latency))
    inv_bw = np.ascontiguousarray(np.where(no_link, 0.0, inst.inv_bandwidth))
    return latency, inv_bw


@jit_inline
def _data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw):
    """When task ``t`` could start on node ``j``: its release, or its last input's arrival
    there (the cost model's transfer: latency + data / bandwidth, zero on the same node)."""
    ready = release[t]
    for e in range(parent_ptr[t], parent_ptr[t + 1]):
        p = parent_idx[e]
        pj = assign[p]
        arrival = end[p] + (latency[pj, j] + parent_data[e] * inv_bw[pj, j])
        if arrival > ready:
            ready = arrival
    return ready


@jit
def _heap_less(key, task, a, b):
    return key[a] < key[b] or (key[a] == key[b] and task[a] < task[b])


@jit
def _heap_swap(key, task, a, b):
    key[a], key[b] = key[b], key[a]
    task[a], task[b] = task[b], task[a]


@jit
def _heap_push(key, task, size, value, t):
    """Add (value, t) to the binary min-heap held in ``key[:size]``/``task[:size]``."""
    key[size] = value
    task[size] = t
    i = size
    while i > 0 and _heap_less(key, task, i, (i - 1) // 2):
        _heap_swap(key, task, i, (i - 1) // 2)
        i = (i - 1) // 2
    return size + 1


@jit
def _heap_sift_down(key, task, size):
    i = 0
    while True:
        smallest = i
        for c in (2 * i + 1, 2 * i + 2):
            if c < size and _heap_less(key, task, c, smallest):
                smallest = c
        if smallest == i:
            return
        _heap_swap(key, task, i, smallest)
        i = smallest


# Placement rules of the list-scheduling kernel (one compiled kernel serves every appending
# baseline: fewer functions to load from the Numba cache in a fresh process).
_RANDOM, _ROUND_ROBIN, _BEST_FIT, _LEAST_LOADED, _EARLIEST_FINISH, _WEIGHTED = range(6)


@jit
def _first_min(values, mask):
    """Lowest index of the smallest value within ``mask`` (the first masked index if all inf)."""
    best, best_value, first = -1, np.inf, -1
    for j in range(values.shape[0]):
        if mask[j]:
            if first == -1:
                first = j
            if values[j] < best_value:
                best, best_value = j, values[j]
    return best if best != -1 else first


@jit
def _normalise(values, mask, out):
    """``out = values / max(values[mask])`` on the finite masked entries, 1 elsewhere; 0 on
    them when that maximum is not positive."""
    top = -np.inf
    for j in range(values.shape[0]):
        if mask[j] and np.isfinite(values[j]) and values[j] > top:
            top = values[j]
    for j in range(values.shape[0]):
        if mask[j] and np.isfinite(values[j]):
            out[j] = values[j] / top if top > 0 else 0.0
        else:
            out[j] = 1.0


@jit
def _list_schedule(rule, queue_key, draws, capacity, time_weight, load_weight, topo, duration, eligible, viable,
                   parent_ptr, parent_idx, parent_data, child_ptr, child_idx, latency, inv_bw, release, assign,
                   order):
    """Place tasks one at a time, each appended to its node's queue, by ``rule``.

    Tasks come in ``topo`` order, or, when ``queue_key`` is not empty, as the ready task of
    smallest (key, index). Candidates for task t: ``viable`` nodes every input reaches, else
    eligible nodes every input reaches, else all eligible nodes. Times follow the decoder's
    arithmetic, so the placement order decodes to exactly this schedule.
    """
    n, m = duration.shape
    end = np.zeros(n)
    node_free = np.zeros(m)
    busy = np.zeros(m)
    ready = np.empty(m)
    mask = np.empty(m, dtype=np.bool_)
    score = np.empty(m)
    load = np.empty(m)
    scaled = np.empty(m)
    fit = np.empty(m, dtype=np.bool_)
    use_heap = queue_key.shape[0] > 0
    waiting = parent_ptr[1:] - parent_ptr[:-1]
    key = np.empty(n)
    task = np.empty(n, np.int64)
    size = 0
    if use_heap:
        for t in range(n):
            if waiting[t] == 0:
                size = _heap_push(key, task, size, queue_key[t], t)
    cursor = 0
    for k in range(n):
        if use_heap:
            t = task[0]
            size -= 1
            _heap_swap(key, task, 0, size)
            _heap_sift_down(key, task, size)
        else:
            t = topo[k]
        for j in range(m):
            ready[j] = _data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
        found = False
        for j in range(m):
            mask[j] = viable[t, j] and np.isfinite(ready[j])
            found = found or mask[j]
        if not found:
            for j in range(m):
                mask[j] = eligible[t, j] and np.isfinite(ready[j])
                found = found or mask[j]
        if not found:
            for j in range(m):
                mask[j] = eligible[t, j]
        if rule == _RANDOM:
            pick = int(draws[t] * mask.sum())
            j = 0
            while not mask[j] or pick > 0:
                if mask[j]:
                    pick -= 1
                j += 1
        elif rule == _ROUND_ROBIN:
            j = cursor
            for step in range(m):
                j = (cursor + step) % m
                if mask[j]:
                    break
            cursor = (j + 1) % m
        elif rule == _BEST_FIT:
            fits = False
            for i in range(m):
                score[i] = capacity - busy[i] - duration[t, i]
                fit[i] = mask[i] and score[i] >= 0
                fits = fits or fit[i]
            if fits:
                j = _first_min(score, fit)
            else:
                j = _first_min(-score, mask)
        elif rule == _LEAST_LOADED:
            j = _first_min(busy, mask)
        else:
            for i in range(m):
                score[i] = max(node_free[i], ready[i]) + duration[t, i] if mask[i] else np.inf
            if rule == _WEIGHTED:
                for i in range(m):
                    load[i] = busy[i] + duration[t, i] if mask[i] else np.inf
                _normalise(score, mask, scaled)
                _normalise(load, mask, load)
                for i in range(m):
                    score[i] = time_weight * scaled[i] + load_weight * load[i]
            j = _first_min(score, mask)
        s = max(node_free[j], ready[j])
        d = duration[t, j]
        assign[t] = j
        end[t] = s + d
        node_free[j] = s + d
        busy[j] += d
        order[k] = t
        if use_heap:
            for e in range(child_ptr[t], child_ptr[t + 1]):
                c = child_idx[e]
                waiting[c] -= 1
                if waiting[c] == 0:
                    size = _heap_push(key, task, size, queue_key[c], c)


def _list_plan(inst: Instance, rule: int, *, queue_key=None, draws=None, capacity: float = 0.0,
               time_weight: float = 0.0, load_weight: float = 0.0) -> Plan:
    """The plan ``_list_schedule`` builds with ``rule`` (placement order = dispatch order)."""
    n = inst.n_tasks
    latency, inv_bw = _link_arrays(inst)
    assign = np.full(n, -1, dtype=np.int32)
    order = np.empty(n, dtype=np.int32)
    empty = np.empty(0)
    _list_schedule(rule, empty if queue_key is None else np.ascontiguousarray(queue_key, dtype=np.float64),
                   empty if draws is None else draws, float(capacity), float(time_weight), float(load_weight),
                   inst.topo_order, np.ascontiguousarray(inst.duration), inst.eligible, inst.viable,
                   inst.parent_ptr, inst.parent_idx, inst.parent_data, inst.child_ptr, inst.child_idx, latency,
                   inv_bw, inst.release, assign, order)
    return Plan(assign, order)


class _Constructive(Allocator):
    """A baseline that builds one plan; ``allocate`` scores it with the shared evaluator."""

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        raise NotImplementedError

    def allocate(self, evaluator: Evaluator, *, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None) -> AllocationResult:
        """Build the plan and score it; ``progress`` is called once, with step 1 and the stats."""
        began = time.perf_counter()
        plan = self.build(evaluator.instance, seed)
        stats = evaluator.stats(plan.assignment, plan.order)
        seconds = time.perf_counter() - began
        if progress is not None:
            progress(1, dict(zip(STATS, stats[0].tolist())))
        return AllocationResult(algorithm=self.name, plans=[plan], stats=stats, evaluations=1,
                                seconds=seconds)


@register
class RandomAllocator(_Constructive):
    """Each task on a node drawn uniformly from its eligible (and reachable) nodes."""

    name = "random"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        draws = np.random.default_rng(seed).random(instance.n_tasks)
        return _list_plan(instance, _RANDOM, draws=draws)


@register
class RoundRobinAllocator(_Constructive):
    """Tasks in topological order each take the next node in a cycle over all nodes,
    skipping nodes the task may not use (or cannot receive its inputs on)."""

    name = "round-robin"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _ROUND_ROBIN)


@register
class GreedyAllocator(_Constructive):
    """The background article's greedy allocator (appendix B.1), made concrete.

    Repeatedly take the ready task with the highest priority and put it on the node whose
    remaining capacity minus the task's need is smallest but not negative (best fit); if the
    task fits nowhere, on the node it overflows least.

    * Need of task t on node j: its runtime there, ``duration[t, j]`` seconds.
    * Capacity of every node, in seconds of busy time: ``slack`` x the makespan the workload
      would have if each task's work were split over its eligible nodes in proportion to their
      speed, i.e. ``slack * sum_t 1 / sum_j (1 / duration[t, j])``. Each node's share of the
      work is thus proportional to its speed. Remaining capacity = capacity - busy time so far.
    """

    name = "greedy"

    def __init__(self, slack: float = 1.1):
        if not np.isfinite(slack) or slack <= 0:
            raise SpecError("slack", f"must be a finite number > 0, got {slack!r}")
        self.slack = float(slack)

    def capacity(self, instance: Instance) -> float:
        with np.errstate(divide="ignore"):
            rate = (1.0 / instance.duration).sum(axis=1)  # tasks per second over all its nodes
            return self.slack * float((1.0 / rate).sum())

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _BEST_FIT, queue_key=-instance.priority, capacity=self.capacity(instance))


@register
class LeastLoadedAllocator(_Constructive):
    """Tasks in topological order, each on the node with the least busy time so far."""

    name = "least-loaded"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _LEAST_LOADED)


@register
class ShortestFirstAllocator(_Constructive):
    """Repeatedly the ready task with the shortest runtime (on its fastest eligible node),
    on the node where it would finish earliest."""

    name = "shortest-first"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _EARLIEST_FINISH, queue_key=instance.duration.min(axis=1))


@register
class WeightedBalanceAllocator(_Constructive):
    """Tasks in topological order, each on the node minimising
    ``time_weight * finish / max finish + load_weight * load / max load`` over its candidate
    nodes, where finish is when the task would end there and load is the node's busy time
    including the task: a dial between earliest-finish-time and load balancing."""

    name = "weighted-balance"

    def __init__(self, time_weight: float = 0.5, load_weight: float = 0.5):
        for field, w in (("time_weight", time_weight), ("load_weight", load_weight)):
            if not np.isfinite(w) or w < 0:
                raise SpecError(field, f"must be a finite number >= 0, got {w!r}")
        if time_weight + load_weight == 0:
            raise SpecError("time_weight", "time_weight and load_weight cannot both be 0")
        self.time_weight = float(time_weight)
        self.load_weight = float(load_weight)

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _WEIGHTED, time_weight=self.time_weight, load_weight=self.load_weight)


@jit
def _earliest_completion(t, node_free, duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw,
                         release, assign, end, ready):
    """(completion time, node) of task ``t`` appended on its best node now, and its data-ready
    time per node in ``ready``. Candidates are the eligible nodes its inputs can reach (all
    eligible nodes if none can); if every candidate gives inf, the first candidate."""
    best_j = -1
    best = np.inf
    first_eligible = -1
    first_reachable = -1
    for j in range(node_free.shape[0]):
        if not eligible[t, j]:
            continue
        if first_eligible == -1:
            first_eligible = j
        r = _data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
        ready[j] = r
        if first_reachable == -1 and np.isfinite(r):
            first_reachable = j
        finish = max(node_free[j], r) + duration[t, j]
        if finish < best:
            best_j, best = j, finish
    if best_j == -1:
        best_j = first_reachable if first_reachable != -1 else first_eligible
    return best, best_j


@jit
def _min_min_kernel(duration, eligible, parent_ptr, parent_idx, parent_data, child_ptr, child_idx, latency, inv_bw,
                    release, assign, start, end, order):
    """Min-min with a lazily updated heap of (completion time, task) over the ready tasks."""
    n, m = duration.shape
    node_free = np.zeros(m)
    ready = np.empty(m)
    waiting = parent_ptr[1:] - parent_ptr[:-1]
    key = np.empty(n)
    task = np.empty(n, np.int64)
    size = 0
    for t in range(n):
        if waiting[t] == 0:
            value, _ = _earliest_completion(t, node_free, duration, eligible, parent_ptr, parent_idx, parent_data,
                                            latency, inv_bw, release, assign, end, ready)
            size = _heap_push(key, task, size, value, t)
    placed = 0
    while size > 0:
        t = task[0]
        value, j = _earliest_completion(t, node_free, duration, eligible, parent_ptr, parent_idx, parent_data,
                                        latency, inv_bw, release, assign, end, ready)
        if value != key[0]:
            key[0] = value
            _heap_sift_down(key, task, size)
            continue
        size -= 1
        _heap_swap(key, task, 0, size)
        _heap_sift_down(key, task, size)
        s = max(node_free[j], ready[j])
        assign[t] = j
        start[t] = s
        end[t] = s + duration[t, j]
        node_free[j] = end[t]
        order[placed] = t
        placed += 1
        for e in range(child_ptr[t], child_ptr[t + 1]):
            c = child_idx[e]
            waiting[c] -= 1
            if waiting[c] == 0:
                value, _ = _earliest_completion(c, node_free, duration, eligible, parent_ptr, parent_idx,
                                                parent_data, latency, inv_bw, release, assign, end, ready)
                size = _heap_push(key, task, size, value, c)


@register
class MinMinAllocator(_Constructive):
    """Min-min (Ibarra and Kim 1977; Braun et al. 2001): repeatedly, among the ready tasks,
    the one whose earliest completion time over its nodes is smallest, placed on that node.

    Completion times only grow as nodes fill, so a heap of possibly stale values is exact:
    a popped task whose recomputed value is unchanged is the true minimum (lazy updates).
    """

    name = "min-min"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        inst = instance
        n = inst.n_tasks
        latency, inv_bw = _link_arrays(inst)
        assign = np.full(n, -1, dtype=np.int32)
        start = np.empty(n)
        end = np.empty(n)
        order = np.empty(n, dtype=np.int32)
        _min_min_kernel(np.ascontiguousarray(inst.duration), inst.eligible, inst.parent_ptr, inst.parent_idx,
                        inst.parent_data, inst.child_ptr, inst.child_idx, latency, inv_bw, inst.release, assign,
                        start, end, order)
        return Plan(assign, order)


# --- HEFT -------------------------------------------------------------------------------------


def heft_ranks(instance: Instance) -> np.ndarray:
    """HEFT's upward rank: mean runtime over the task's eligible nodes plus the largest
    (mean transfer time + rank) over its children. The mean transfer of d MB is
    mean latency + d / mean bandwidth over ordered pairs of distinct, linked nodes (0 when
    there are none, e.g. one node)."""
    inst = instance
    m = inst.n_nodes
    wbar = np.where(inst.eligible, inst.duration, 0.0).sum(axis=1) / inst.eligible.sum(axis=1)
    linked = np.isfinite(inst.inv_bandwidth) & ~np.eye(m, dtype=bool)
    if linked.any():
        mean_bandwidth = (1.0 / inst.inv_bandwidth[linked]).mean()
        cbar = inst.latency[linked].mean() + inst.child_data / mean_bandwidth
    else:
        cbar = np.zeros_like(inst.child_data)
    rank = np.zeros(inst.n_tasks)
    for t in inst.topo_order[::-1].tolist():
        a, b = inst.child_ptr[t], inst.child_ptr[t + 1]
        tail = (cbar[a:b] + rank[inst.child_idx[a:b]]).max() if b > a else 0.0
        rank[t] = wbar[t] + tail
    return rank


def heft_priority(instance: Instance) -> np.ndarray:
    """Tasks by decreasing upward rank, ties in topological order (which keeps the list
    topological: a parent's rank is never below its child's)."""
    position = np.empty(instance.n_tasks, dtype=np.int64)
    position[instance.topo_order] = np.arange(instance.n_tasks)
    return np.lexsort((position, -heft_ranks(instance))).astype(np.int32)


@jit
def _heft_kernel(priority, duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw, release,
                 assign, start, end):
    """Insertion-based earliest-finish-time placement in ``priority`` order.

    Each node's timeline is a doubly linked list of its tasks in time order (``head``,
    ``nxt``, ``prv``). A task goes into the first idle gap on a node that starts at or after
    its data-ready time and is long enough, else after the node's last task.
    """
    n, m = duration.shape
    head = np.full(m, -1, np.int64)
    tail = np.full(m, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    for t in priority:
        best_j = -1
        best_finish = np.inf
        best_start = np.inf
        best_after = -1
        for j in range(m):
            if not eligible[t, j]:
                continue
            ready = _data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
            d = duration[t, j]
            # Gaps before tasks that start at or after ``ready`` are the only ones that can fit.
            after = tail[j]
            while after != -1 and start[after] >= ready:
                after = prv[after]
            prev_end = end[after] if after != -1 else 0.0
            nxt_task = nxt[after] if after != -1 else head[j]
            s = max(ready, prev_end)
            while nxt_task != -1 and s + d > start[nxt_task]:
                after = nxt_task
                s = max(ready, end[after])
                nxt_task = nxt[after]
            if best_j == -1 or s + d < best_finish:
                best_j, best_finish, best_start, best_after = j, s + d, s, after
        t_next = nxt[best_after] if best_after != -1 else head[best_j]
        prv[t] = best_after
        nxt[t] = t_next
        if best_after != -1:
            nxt[best_after] = t
        else:
            head[best_j] = t
        if t_next != -1:
            prv[t_next] = t
        else:
            tail[best_j] = t
        assign[t] = best_j
        start[t] = best_start
        end[t] = best_start + duration[t, best_j]


def _heft(instance: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = instance.n_tasks
    priority = heft_priority(instance)
    latency, inv_bw = _link_arrays(instance)
    assign = np.empty(n, dtype=np.int32)
    start = np.empty(n)
    end = np.empty(n)
    _heft_kernel(priority, np.ascontiguousarray(instance.duration), instance.eligible, instance.parent_ptr,
                 instance.parent_idx, instance.parent_data, latency, inv_bw, instance.release, assign, start, end)
    return priority, assign, start, end


def heft_schedule(instance: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HEFT (Topcuoglu, Hariri and Wu 2002): tasks by decreasing upward rank, each on the
    eligible node where it finishes earliest, inserted into an idle gap when one fits.

    Returns HEFT's own (assignment, start, end); task release times delay the data-ready time.
    """
    return _heft(instance)[1:]


def schedule_order(start: np.ndarray, end: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """A dispatch order under which the evaluator's decoder reproduces a schedule exactly:
    by start time, then end time (a zero-length task before the task starting at the same
    instant on its node), then position in ``priority`` (parents before children).
    The key strictly increases along every edge, so the order is topological."""
    position = np.empty(start.shape[0], dtype=np.int64)
    position[priority] = np.arange(start.shape[0])
    return np.lexsort((position, end, start)).astype(np.int32)


@register
class HeftAllocator(_Constructive):
    """HEFT; the plan's order makes the evaluator decode exactly HEFT's schedule."""

    name = "heft"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        priority, assign, start, end = _heft(instance)
        return Plan(assign, schedule_order(start, end, priority))


BASELINES: tuple[type[_Constructive], ...] = (
    RandomAllocator, RoundRobinAllocator, GreedyAllocator, LeastLoadedAllocator,
    ShortestFirstAllocator, WeightedBalanceAllocator, HeftAllocator, MinMinAllocator,
)


def baseline_plans(evaluator: Evaluator, seed: int = 0) -> dict[str, Plan]:
    """The plan of every baseline (default settings) for ``evaluator.instance``, by name."""
    return {cls.name: cls().build(evaluator.instance, seed) for cls in BASELINES}

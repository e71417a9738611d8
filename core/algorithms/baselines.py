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

import heapq
import time
from typing import Callable

import numpy as np

from core._jit import jit
from core.algorithms.base import AllocationResult, Allocator, register
from core.errors import SpecError
from core.evaluate import STATS, Evaluator, Plan
from core.model import Instance


def _link_arrays(inst: Instance) -> tuple[np.ndarray, np.ndarray]:
    """Latency and inverse bandwidth as the decoder uses them: a missing link is infinite
    latency (so even 0 MB cannot cross it) and 0 s/MB, which keeps 0 * inf out of the sums."""
    no_link = ~np.isfinite(inst.inv_bandwidth)
    latency = np.ascontiguousarray(np.where(no_link, np.inf, inst.latency))
    inv_bw = np.ascontiguousarray(np.where(no_link, 0.0, inst.inv_bandwidth))
    return latency, inv_bw


class _Placement:
    """The running schedule while a baseline appends tasks to node queues one at a time.

    Times are computed with the decoder's arithmetic, so the plan's order (the placement
    order) decodes to exactly these start and end times.
    """

    def __init__(self, inst: Instance):
        self.inst = inst
        n, m = inst.n_tasks, inst.n_nodes
        self.latency, self.inv_bw = _link_arrays(inst)
        self.assign = np.full(n, -1, dtype=np.int32)
        self.start = np.zeros(n)
        self.end = np.zeros(n)
        self.node_free = np.zeros(m)
        self.busy = np.zeros(m)
        self.order: list[int] = []

    def data_ready(self, t: int) -> np.ndarray:
        """Per node, when task ``t``'s release has passed and all its inputs have arrived
        there (inf where a parent's node has no link to it). Parents must be placed."""
        inst = self.inst
        ready = np.full(inst.n_nodes, inst.release[t])
        for e in range(inst.parent_ptr[t], inst.parent_ptr[t + 1]):
            p = inst.parent_idx[e]
            pj = self.assign[p]
            arrival = self.end[p] + (self.latency[pj] + inst.parent_data[e] * self.inv_bw[pj])
            np.maximum(ready, arrival, out=ready)
        return ready

    def candidates(self, t: int, ready: np.ndarray) -> np.ndarray:
        """Nodes every input can reach and from which every child can be fed
        (``Instance.viable``); failing that, eligible nodes every input can reach; failing
        that, all eligible nodes."""
        reached = np.isfinite(ready)
        for allowed in (self.inst.viable[t], self.inst.eligible[t]):
            mask = allowed & reached
            if mask.any():
                return mask
        return self.inst.eligible[t]

    def finish_times(self, t: int, ready: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """When ``t`` would end on each node if appended now; inf outside ``mask``."""
        finish = np.maximum(self.node_free, ready) + self.inst.duration[t]
        return np.where(mask, finish, np.inf)

    def place(self, t: int, j: int, ready: np.ndarray) -> None:
        s = max(self.node_free[j], ready[j])
        d = self.inst.duration[t, j]
        self.assign[t] = j
        self.start[t] = s
        self.end[t] = s + d
        self.node_free[j] = s + d
        self.busy[j] += d
        self.order.append(t)

    def plan(self) -> Plan:
        return Plan(self.assign.copy(), np.asarray(self.order, dtype=np.int32))


def _first_min(values: np.ndarray, mask: np.ndarray) -> int:
    """Lowest index of the smallest value within ``mask`` (the first masked index if all inf)."""
    masked = np.where(mask, values, np.inf)
    j = int(np.argmin(masked))
    return j if mask[j] else int(np.flatnonzero(mask)[0])


class _ReadyQueue:
    """Tasks whose parents have all been placed, popped by a key (smallest first)."""

    def __init__(self, inst: Instance, key: Callable[[int], object]):
        self.inst = inst
        self.key = key
        self.waiting = np.diff(inst.parent_ptr).astype(np.int64)
        self.heap = [(key(t), t) for t in np.flatnonzero(self.waiting == 0).tolist()]
        heapq.heapify(self.heap)

    def __bool__(self) -> bool:
        return bool(self.heap)

    def pop(self) -> int:
        return heapq.heappop(self.heap)[1]

    def push(self, t: int) -> None:
        heapq.heappush(self.heap, (self.key(t), t))

    def peek(self) -> tuple[object, int]:
        return self.heap[0]

    def requeue_first(self, key) -> None:
        """Give the first task a new key (it stays queued)."""
        heapq.heapreplace(self.heap, (key, self.heap[0][1]))

    def release_children(self, t: int) -> list[int]:
        """Mark ``t`` placed; return the children that became ready (not yet queued)."""
        inst = self.inst
        ready = []
        for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]].tolist():
            self.waiting[c] -= 1
            if self.waiting[c] == 0:
                ready.append(c)
        return ready


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
        rng = np.random.default_rng(seed)
        draws = rng.random(instance.n_tasks)
        state = _Placement(instance)
        for t in instance.topo_order.tolist():
            ready = state.data_ready(t)
            nodes = np.flatnonzero(state.candidates(t, ready))
            state.place(t, int(nodes[int(draws[t] * nodes.size)]), ready)
        return state.plan()


@register
class RoundRobinAllocator(_Constructive):
    """Tasks in topological order each take the next node in a cycle over all nodes,
    skipping nodes the task may not use (or cannot receive its inputs on)."""

    name = "round-robin"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        m = instance.n_nodes
        state = _Placement(instance)
        cursor = 0
        for t in instance.topo_order.tolist():
            ready = state.data_ready(t)
            mask = state.candidates(t, ready)
            j = int(np.argmax(np.roll(mask, -cursor)) + cursor) % m
            state.place(t, j, ready)
            cursor = (j + 1) % m
        return state.plan()


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
        capacity = self.capacity(instance)
        state = _Placement(instance)
        queue = _ReadyQueue(instance, key=lambda t: -instance.priority[t])
        while queue:
            t = queue.pop()
            ready = state.data_ready(t)
            mask = state.candidates(t, ready)
            left = capacity - state.busy - instance.duration[t]
            fits = mask & (left >= 0)
            j = _first_min(left, fits) if fits.any() else _first_min(-left, mask)
            state.place(t, j, ready)
            for c in queue.release_children(t):
                queue.push(c)
        return state.plan()


@register
class LeastLoadedAllocator(_Constructive):
    """Tasks in topological order, each on the node with the least busy time so far."""

    name = "least-loaded"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        state = _Placement(instance)
        for t in instance.topo_order.tolist():
            ready = state.data_ready(t)
            state.place(t, _first_min(state.busy, state.candidates(t, ready)), ready)
        return state.plan()


@register
class ShortestFirstAllocator(_Constructive):
    """Repeatedly the ready task with the shortest runtime (on its fastest eligible node),
    on the node where it would finish earliest."""

    name = "shortest-first"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        fastest = instance.duration.min(axis=1)
        state = _Placement(instance)
        queue = _ReadyQueue(instance, key=lambda t: fastest[t])
        while queue:
            t = queue.pop()
            ready = state.data_ready(t)
            mask = state.candidates(t, ready)
            state.place(t, _first_min(state.finish_times(t, ready, mask), mask), ready)
            for c in queue.release_children(t):
                queue.push(c)
        return state.plan()


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
        state = _Placement(instance)
        for t in instance.topo_order.tolist():
            ready = state.data_ready(t)
            mask = state.candidates(t, ready)
            finish = state.finish_times(t, ready, mask)
            load = np.where(mask, state.busy + instance.duration[t], np.inf)
            score = (self.time_weight * _normalise(finish, mask)
                     + self.load_weight * _normalise(load, mask))
            state.place(t, _first_min(score, mask), ready)
        return state.plan()


def _normalise(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values / max(values[mask])`` with non-finite entries as 1 and an all-zero set as 0."""
    finite = mask & np.isfinite(values)
    if not finite.any():
        return np.where(mask, 1.0, np.inf)
    top = values[finite].max()
    scaled = values / top if top > 0 else np.zeros_like(values)
    return np.where(finite, scaled, 1.0)


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
        r = release[t]
        for e in range(parent_ptr[t], parent_ptr[t + 1]):
            p = parent_idx[e]
            pj = assign[p]
            arrival = end[p] + (latency[pj, j] + parent_data[e] * inv_bw[pj, j])
            if arrival > r:
                r = arrival
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
            ready = release[t]
            for e in range(parent_ptr[t], parent_ptr[t + 1]):
                p = parent_idx[e]
                pj = assign[p]
                arrival = end[p] + (latency[pj, j] + parent_data[e] * inv_bw[pj, j])
                if arrival > ready:
                    ready = arrival
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

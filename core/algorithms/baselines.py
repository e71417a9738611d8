"""Constructive baseline allocators: each builds one plan, scored by the shared evaluator.

Every baseline places tasks one at a time and, like the evaluator's decoder, appends each task
to its node's queue (HEFT, in ``heft``, alone inserts into idle gaps, and emits a dispatch
order the decoder reproduces exactly). All of them

* use only a task's eligible nodes (``Instance.eligible``);
* avoid nodes that a parent's output cannot reach (no link: infinite arrival) and nodes from
  which a child could not be fed (``Instance.viable``), unless every eligible node is
  unreachable, in which case the plan is unroutable and the evaluator says so;
* estimate times with the cost model of ``core.evaluate``: start = max(node free, release,
  inputs arrived), transfer = 0 on the same node else latency + data / bandwidth;
* break ties towards the lowest task index and the lowest node index.

``baseline_plans`` runs them all, HEFT included (NSGA-II seeds its population with the result).
"""

from __future__ import annotations

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import SLICE_TASKS, ConstructiveAllocator, data_ready
from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.algorithms.list_heuristics import MaxMinAllocator, SufferageAllocator, affordable
from apportion.core.algorithms.registry import register
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan, link_arrays
from apportion.core.model import ROWS_AT_ONCE, Instance


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
_RANDOM, _ROUND_ROBIN, _BEST_FIT, _LEAST_LOADED, _EARLIEST_FINISH, _WEIGHTED, _MIN_RUNTIME, _EARLIEST_FREE, \
    _NODE_KEY = range(9)


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


# One compiled kernel serves every appending rule (one function to load from the cache), hence
# its size.
@jit
def _list_schedule(first, last, rule, queue_key, values, capacity, time_weight, load_weight, topo,  # noqa: C901
                   duration, eligible, viable, parent_ptr, parent_idx, parent_data, child_ptr, child_idx, latency,
                   inv_bw, release, end, node_free, busy, waiting, key, task, counters, assign, order):
    """Place tasks ``first..last-1`` (in placement order) one at a time, each appended to its
    node's queue, by ``rule``; the state between calls lives in the arrays passed in
    (``counters`` = [heap size, round-robin cursor]), so Python can run it in slices.

    Tasks come in ``topo`` order, or, when ``queue_key`` is not empty, as the ready task of
    smallest (key, index). ``values`` holds a draw per task (``_RANDOM``) or a key per node
    (``_NODE_KEY``: the candidate of smallest key). Candidates for task t: ``viable`` nodes every input reaches, else
    eligible nodes every input reaches, else all eligible nodes. Times follow the decoder's
    arithmetic, so the placement order decodes to exactly this schedule.
    """
    n, m = duration.shape
    ready = np.empty(m)
    mask = np.empty(m, dtype=np.bool_)
    score = np.empty(m)
    load = np.empty(m)
    scaled = np.empty(m)
    fit = np.empty(m, dtype=np.bool_)
    use_heap = queue_key.shape[0] > 0
    size, cursor = counters[0], counters[1]
    if use_heap and first == 0:
        for t in range(n):
            if waiting[t] == 0:
                size = _heap_push(key, task, size, queue_key[t], t)
    for k in range(first, last):
        if use_heap:
            t = task[0]
            size -= 1
            _heap_swap(key, task, 0, size)
            _heap_sift_down(key, task, size)
        else:
            t = topo[k]
        for j in range(m):
            ready[j] = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
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
            pick = int(values[t] * mask.sum())
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
        elif rule == _MIN_RUNTIME:
            j = _first_min(duration[t], mask)
        elif rule == _EARLIEST_FREE:
            j = _first_min(node_free, mask)
        elif rule == _NODE_KEY:
            j = _first_min(values, mask)
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
    counters[0], counters[1] = size, cursor


def _list_plan(inst: Instance, rule: int, *, queue_key=None, values=None, capacity: float = 0.0,
               time_weight: float = 0.0, load_weight: float = 0.0) -> Plan:
    """The plan ``_list_schedule`` builds with ``rule`` (placement order = dispatch order),
    ``SLICE_TASKS`` placements per kernel call so Ctrl-C lands between calls."""
    n, m = inst.n_tasks, inst.n_nodes
    latency, inv_bw = link_arrays(inst)
    assign = np.full(n, -1, dtype=np.int32)
    order = np.empty(n, dtype=np.int32)
    empty = np.empty(0)
    args = (rule, empty if queue_key is None else np.ascontiguousarray(queue_key, dtype=np.float64),
            empty if values is None else np.ascontiguousarray(values, dtype=np.float64), float(capacity), float(time_weight), float(load_weight),
            inst.topo_order, np.ascontiguousarray(inst.duration), inst.eligible, inst.viable, inst.parent_ptr,
            inst.parent_idx, inst.parent_data, inst.child_ptr, inst.child_idx, latency, inv_bw, inst.release,
            np.zeros(n), np.zeros(m), np.zeros(m), inst.parent_ptr[1:] - inst.parent_ptr[:-1], np.empty(n),
            np.empty(n, np.int64), np.zeros(2, np.int64), assign, order)
    for first in range(0, n, SLICE_TASKS):
        _list_schedule(first, min(n, first + SLICE_TASKS), *args)
    return Plan(assign, order)


@register
class RandomAllocator(ConstructiveAllocator):
    """Each task on a node drawn uniformly from its eligible (and reachable) nodes."""

    name = "random"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        draws = np.random.default_rng(seed).random(instance.n_tasks)
        return _list_plan(instance, _RANDOM, values=draws)


@register
class RoundRobinAllocator(ConstructiveAllocator):
    """Tasks in topological order each take the next node in a cycle over all nodes,
    skipping nodes the task may not use (or cannot receive its inputs on)."""

    name = "round-robin"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _ROUND_ROBIN)


@register
class GreedyAllocator(ConstructiveAllocator):
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
        rate = np.empty(instance.n_tasks)  # tasks per second over all its nodes
        with np.errstate(divide="ignore"):
            for lo in range(0, instance.n_tasks, ROWS_AT_ONCE):  # no tasks x nodes temporary
                rate[lo:lo + ROWS_AT_ONCE] = (1.0 / instance.duration[lo:lo + ROWS_AT_ONCE]).sum(axis=1)
            return self.slack * float((1.0 / rate).sum())

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _BEST_FIT, queue_key=-instance.priority, capacity=self.capacity(instance))


@register
class LeastLoadedAllocator(ConstructiveAllocator):
    """Tasks in topological order, each on the node with the least busy time so far."""

    name = "least-loaded"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _LEAST_LOADED)


@register
class ShortestFirstAllocator(ConstructiveAllocator):
    """Repeatedly the ready task with the shortest runtime (on its fastest eligible node),
    on the node where it would finish earliest."""

    name = "shortest-first"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _EARLIEST_FINISH, queue_key=instance.duration.min(axis=1))


@register
class WeightedBalanceAllocator(ConstructiveAllocator):
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


@register
class MctAllocator(ConstructiveAllocator):
    """MCT, minimum completion time (Armstrong et al. 1998; Braun et al. 2001): tasks in
    topological order, each appended on the node where it would finish earliest."""

    name = "mct"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _EARLIEST_FINISH)


@register
class MetAllocator(ConstructiveAllocator):
    """MET, minimum execution time (Braun et al. 2001): tasks in topological order, each on
    the node where it runs fastest, however busy that node is."""

    name = "met"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _MIN_RUNTIME)


@register
class OlbAllocator(ConstructiveAllocator):
    """OLB, opportunistic load balancing (Braun et al. 2001): tasks in topological order, each
    on the node that becomes free first, however slow it runs the task there."""

    name = "olb"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _list_plan(instance, _EARLIEST_FREE)


@register
class FastestNodeAllocator(ConstructiveAllocator):
    """Every task on the fastest node (highest speed) it may use: SAGA's FastestNode, which
    runs the whole workflow on the fastest node, under Apportion's placement rules."""

    name = "fastest-node"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        speed = np.array([node.speed for node in instance.cluster.nodes], dtype=np.float64)
        return _list_plan(instance, _NODE_KEY, values=-speed)


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
        r = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
        ready[j] = r
        if first_reachable == -1 and np.isfinite(r):
            first_reachable = j
        finish = max(node_free[j], r) + duration[t, j]
        if finish < best:
            best_j, best = j, finish
    if best_j == -1:
        best_j = first_reachable if first_reachable != -1 else first_eligible
    return best, best_j


# Min-min's per-node index. Each node keeps the current batch's tasks eligible on it in three parts: a
# min-tree over the tasks sorted by (runtime there, index), holding the index of those whose
# inputs are already there when the node frees ("active": they would finish at free +
# runtime); the others ("waiting") sorted by (ready + runtime, index); and the waiting ones
# sorted by (ready time, index), which move to active as the node's free time passes them.
# Only a batch's tasks are ever in the index (the children they free wait for the next batch),
# and they all enter when the batch starts, with ready times fixed (their parents are placed):
# so the two waiting lists are sorted once, read from a cursor (entries no longer waiting are
# skipped), and hold task ids only, the key of each head recomputed when the cursor moves. The
# earliest (finish, index) on a node is then found in O(log n), and the next task in O(m log n).
# The index is rebuilt for each batch in arrays sized for the largest: memory scales as the
# widest batch x nodes, not tasks x nodes (100,000 tasks on 1,000 nodes needed several GB).
_NOT_READY, _WAITING, _ACTIVE, _DONE = 0, 1, 2, 3


@jit
def _tree_set(tree, base, size, pos, value):
    """Set leaf ``pos`` of the min-tree in ``tree[base:base + 2 * size]`` and its ancestors."""
    i = size + pos
    tree[base + i] = value
    i //= 2
    while i >= 1:
        tree[base + i] = min(tree[base + 2 * i], tree[base + 2 * i + 1])
        i //= 2


@jit
def _tree_leftmost(tree, base, size, none):
    """Position of the leftmost leaf holding a value below ``none``; -1 when there is none."""
    if tree[base + 1] >= none:
        return -1
    i = 1
    while i < size:
        i = 2 * i if tree[base + 2 * i] < none else 2 * i + 1
    return i - size


@jit
def _tree_min(tree, base, size, lo, hi):
    """Smallest value among the leaves ``lo..hi`` (inclusive)."""
    best = np.int64(9223372036854775807)
    a, b = lo + size, hi + size + 1
    while a < b:
        if a & 1:
            best = min(best, tree[base + a])
            a += 1
        if b & 1:
            b -= 1
            best = min(best, tree[base + b])
        a //= 2
        b //= 2
    return best


@jit
def _node_earliest(j, node_free, n, state, slot_of, duration, sorted_t, soff, pos_of, tree, toff, tsize, wlist, wpos,
                   whead, rlist, rpos, rhead, wlen, release, parent_ptr, parent_idx, parent_data, assign, end, latency,
                   inv_bw):
    """(finish, task): the ready task that would finish earliest appended on node ``j`` (lowest
    index on ties), ``task == n`` when none is ready there."""
    free = node_free[j]
    base, size = soff[j], wlen[j]
    while rpos[j] < size and rhead[j] <= free:
        t = rlist[base + rpos[j]]
        rpos[j] += 1
        if rpos[j] < size:
            rhead[j] = data_ready(rlist[base + rpos[j]], j, release, parent_ptr, parent_idx, parent_data, assign, end,
                                  latency, inv_bw)
        if state[slot_of[t], j] == _WAITING:
            state[slot_of[t], j] = _ACTIVE
            _tree_set(tree, toff[j], tsize[j], pos_of[slot_of[t], j], t)
    moved = False
    while wpos[j] < size and state[slot_of[wlist[base + wpos[j]]], j] != _WAITING:
        wpos[j] += 1
        moved = True
    best_f, best_t = np.inf, n
    if wpos[j] < size:
        best_t = wlist[base + wpos[j]]
        if moved:
            whead[j] = data_ready(best_t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency,
                                  inv_bw) + duration[best_t, j]
        best_f = whead[j]
    lo = _tree_leftmost(tree, toff[j], tsize[j], n)
    if lo >= 0:
        finish = free + duration[sorted_t[base + lo], j]
        # Runtimes are sorted, so the tasks finishing at exactly ``finish`` (rounding can join
        # different runtimes) are a run of positions; the lowest index among them wins.
        a, b = lo, soff[j + 1] - base - 1
        while a < b:
            mid = (a + b + 1) // 2
            if free + duration[sorted_t[base + mid], j] <= finish:
                a = mid
            else:
                b = mid - 1
        t = _tree_min(tree, toff[j], tsize[j], lo, a)
        if finish < best_f or (finish == best_f and t < best_t):
            best_f, best_t = finish, t
    return best_f, best_t


@jit
def _min_min_enter(batch, node_free, duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw,
                   release, assign, end, state, pos_of, tree, toff, tsize, soff, wlist, wpos, whead, rlist, rpos,
                   rhead, wlen, tasks, keys, finish):
    """Enter the batch's tasks ``batch`` (ascending; all their inputs placed) into the index of
    every node they may use: active, or waiting in both lists."""
    for j in range(node_free.shape[0]):
        c = 0
        for i in range(batch.shape[0]):
            t = batch[i]
            if not eligible[t, j]:
                continue
            r = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
            if r <= node_free[j]:
                state[i, j] = _ACTIVE
                _tree_set(tree, toff[j], tsize[j], pos_of[i, j], t)
            else:
                state[i, j] = _WAITING
                tasks[c] = t
                keys[c] = r
                finish[c] = r + duration[t, j]
                c += 1
        base = soff[j]
        by_ready = np.argsort(keys[:c], kind="mergesort")  # stable: ties stay in index order
        by_finish = np.argsort(finish[:c], kind="mergesort")
        for p in range(c):
            rlist[base + p] = tasks[by_ready[p]]
            wlist[base + p] = tasks[by_finish[p]]
        wlen[j], rpos[j], wpos[j] = c, 0, 0
        if c > 0:
            rhead[j], whead[j] = keys[by_ready[0]], finish[by_finish[0]]


@jit
def _min_min_index(batch, n, duration, eligible, state, slot_of, pos_of, sorted_t, soff, tree, toff, tsize, tasks,
                   keys):
    """Make each node's index empty for the tasks ``batch`` (ascending): slot ``i`` of ``state``
    and ``pos_of`` is ``batch[i]``; node ``j``'s tasks sorted by (runtime there, index) are
    positions ``soff[j]..soff[j + 1]`` of ``sorted_t`` and the leaves of its min-tree."""
    m = duration.shape[1]
    for i in range(batch.shape[0]):
        slot_of[batch[i]] = i
        state[i, :] = _NOT_READY
    off, toffset = 0, 0
    for j in range(m):
        c = 0
        for i in range(batch.shape[0]):
            t = batch[i]
            if eligible[t, j]:
                tasks[c] = i
                keys[c] = duration[t, j]
                c += 1
        by_runtime = np.argsort(keys[:c], kind="mergesort")  # stable: ties stay in index order
        soff[j] = off
        for p in range(c):
            i = tasks[by_runtime[p]]
            sorted_t[off + p] = batch[i]
            pos_of[i, j] = p
        off += c
        size = 1
        while size < c:
            size *= 2
        tsize[j], toff[j] = size, toffset
        tree[toffset:toffset + 2 * size] = n
        toffset += 2 * size
    soff[m] = off


@jit
def _min_min_sizes(waiting, child_ptr, child_idx, eligible):
    """(widest batch, most (task, node) pairs of a batch, most min-tree leaves of a batch): the
    batches are the DAG's levels (a task enters the batch after its last parent's)."""
    n, m = eligible.shape
    waiting = waiting.copy()
    level = np.empty(n, np.int64)
    held = 0
    for t in range(n):
        if waiting[t] == 0:
            level[held] = t
            held += 1
    counts = np.empty(m, np.int64)
    widest, pairs, leaves = 0, 0, 0
    lo = 0
    while lo < held:
        hi = held
        counts[:] = 0
        for k in range(lo, hi):
            t = level[k]
            for j in range(m):
                if eligible[t, j]:
                    counts[j] += 1
            for e in range(child_ptr[t], child_ptr[t + 1]):
                c = child_idx[e]
                waiting[c] -= 1
                if waiting[c] == 0:
                    level[held] = c
                    held += 1
        widest = max(widest, hi - lo)
        pairs = max(pairs, counts.sum())
        total = 0
        for j in range(m):
            size = 1
            while size < counts[j]:
                size *= 2
            total += 2 * size
        leaves = max(leaves, total)
        lo = hi
    return widest, pairs, leaves


@jit
def _min_min_kernel(steps, progress, pending, node_free, waiting, duration, eligible, parent_ptr, parent_idx,  # noqa: C901
                    parent_data, child_ptr, child_idx, latency, inv_bw, release, state, slot_of, sorted_t, soff, pos_of,
                    tree, toff, tsize, wlist, wpos, whead, rlist, rpos, rhead, wlen, scratch_tasks, scratch_keys,
                    scratch_finish, assign, start, end, order):
    """Place up to ``steps`` more tasks by min-min, a batch at a time: the tasks ready when a
    batch starts are all placed before the children they free (held in ``pending``) enter the
    index, which is rebuilt for each batch. ``progress`` = [tasks placed, tasks left in the
    batch, tasks pending] (all 0: enter the initially ready tasks first). Run in slices from
    Python, so Ctrl-C lands between them. One function for the whole step, hence its size."""
    n, m = duration.shape
    ready = np.empty(m)
    placed, batch, held = progress[0], progress[1], progress[2]
    if placed == 0 and batch == 0:
        for t in range(n):
            if waiting[t] == 0:
                pending[held] = t
                held += 1
    stop = min(n, placed + steps)
    while placed < stop:
        if batch == 0:
            members = np.sort(pending[:held])
            _min_min_index(members, n, duration, eligible, state, slot_of, pos_of, sorted_t, soff, tree, toff, tsize,
                           scratch_tasks, scratch_keys)
            _min_min_enter(members, node_free, duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw,
                           release, assign, end, state, pos_of, tree, toff, tsize, soff, wlist, wpos, whead, rlist,
                           rpos, rhead, wlen, scratch_tasks, scratch_keys, scratch_finish)
            batch, held = held, 0
        best_f, best_t = np.inf, n
        for j in range(m):
            f, t = _node_earliest(j, node_free, n, state, slot_of, duration, sorted_t, soff, pos_of, tree, toff, tsize,
                                  wlist, wpos, whead, rlist, rpos, rhead, wlen, release, parent_ptr, parent_idx,
                                  parent_data, assign, end, latency, inv_bw)
            if t < n and (f < best_f or (f == best_f and t < best_t)):
                best_f, best_t = f, t
        t = best_t
        _, j = _earliest_completion(t, node_free, duration, eligible, parent_ptr, parent_idx, parent_data, latency,
                                    inv_bw, release, assign, end, ready)
        s = max(node_free[j], ready[j])
        assign[t] = j
        start[t] = s
        end[t] = s + duration[t, j]
        node_free[j] = end[t]
        order[placed] = t
        placed += 1
        batch -= 1
        slot = slot_of[t]
        for i in range(m):
            if state[slot, i] == _ACTIVE:
                _tree_set(tree, toff[i], tsize[i], pos_of[slot, i], n)
            state[slot, i] = _DONE
        for e in range(child_ptr[t], child_ptr[t + 1]):
            c = child_idx[e]
            waiting[c] -= 1
            if waiting[c] == 0:
                pending[held] = c
                held += 1
    progress[0], progress[1], progress[2] = placed, batch, held


def _min_min_plan(inst: Instance) -> Plan:
    """Min-min's plan: index arrays sized for the widest batch, the kernel run ``SLICE_TASKS``
    tasks at a time."""
    n, m = inst.n_tasks, inst.n_nodes
    duration = np.ascontiguousarray(inst.duration)
    waiting = (inst.parent_ptr[1:] - inst.parent_ptr[:-1]).astype(np.int64)
    widest, pairs, leaves = _min_min_sizes(waiting, inst.child_ptr, inst.child_idx, inst.eligible)
    latency, inv_bw = link_arrays(inst)
    assign = np.full(n, -1, dtype=np.int32)
    start, end = np.empty(n), np.empty(n)
    order = np.empty(n, dtype=np.int32)
    progress = np.zeros(3, dtype=np.int64)
    # Positions within a node's batch are below the widest batch: 2 bytes each when they fit.
    position = np.uint16 if widest <= np.iinfo(np.uint16).max else np.int32
    args = (np.empty(n, np.int64), np.zeros(m), waiting, duration, inst.eligible, inst.parent_ptr, inst.parent_idx,
            inst.parent_data, inst.child_ptr, inst.child_idx, latency, inv_bw, inst.release,
            np.zeros((widest, m), np.int8), np.zeros(n, np.int64), np.empty(pairs, np.int32), np.zeros(m + 1, np.int64),
            np.zeros((widest, m), position), np.empty(leaves, np.int32), np.zeros(m, np.int64), np.zeros(m, np.int64),
            np.empty(pairs, np.int32), np.zeros(m, np.int64), np.empty(m), np.empty(pairs, np.int32),
            np.zeros(m, np.int64), np.empty(m), np.zeros(m, np.int64), np.empty(widest, np.int64), np.empty(widest),
            np.empty(widest), assign, start, end, order)
    while progress[0] < n:
        _min_min_kernel(SLICE_TASKS, progress, *args)
    return Plan(assign, order)


@register
class MinMinAllocator(ConstructiveAllocator):
    """Min-min (Ibarra and Kim 1977; Braun et al. 2001): repeatedly, among the tasks of the
    current batch, the one whose earliest completion time over its nodes is smallest, placed on
    that node. A batch is the set of tasks ready when it starts; the children it frees wait for
    the next batch, as in SAGA's MinMin. (Letting each child join as soon as it is freed let
    short successors overtake long ready tasks again and again: 5-10 % longer makespans on
    WfCommons workflows than SAGA's MinMin, benchmarks/bench_saga.py.)

    Each node indexes its batch's tasks (``_node_earliest``), so a step costs O(m log n) rather
    than a scan of every ready task: O((n + e) m log n) in all.
    """

    name = "min-min"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return _min_min_plan(instance)


BASELINES: tuple[type[ConstructiveAllocator], ...] = (
    RandomAllocator, RoundRobinAllocator, GreedyAllocator, LeastLoadedAllocator,
    ShortestFirstAllocator, WeightedBalanceAllocator, HeftAllocator, MinMinAllocator,
    MctAllocator, MetAllocator, OlbAllocator,
)
# Fastest-node is registered but seeds nothing: without speed factors its plan is MET's, and a
# duplicate seed only takes a random plan's place in the initial population.


# Heuristics that scan the ready tasks at every step: quadratic on wide workflows, so they seed
# only instances ``list_heuristics.affordable`` accepts. (Duplex's plan is min-min's or
# max-min's, both already there.)
SCANNING: tuple[type[ConstructiveAllocator], ...] = (MaxMinAllocator, SufferageAllocator)


def baseline_plans(evaluator: Evaluator, seed: int = 0) -> dict[str, Plan]:
    """The plan of every baseline (default settings) for ``evaluator.instance``, by name: the
    near-linear ones always, the scanning ones when affordable."""
    instance = evaluator.instance
    chosen = BASELINES + (SCANNING if affordable(instance) else ())
    return {cls.name: cls().build(instance, seed) for cls in chosen}

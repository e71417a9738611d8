"""HEFT (Topcuoglu, Hariri and Wu 2002): tasks by decreasing upward rank, each on the eligible
node where it finishes earliest, inserted into an idle gap when one fits.

Unlike the appending baselines it inserts into gaps, and emits a dispatch order under which
the evaluator's decoder reproduces its schedule exactly (``schedule_order``). Its priority
list (``heft_priority``) also seeds NSGA-II's pool of dispatch orders.
"""

from __future__ import annotations

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import SLICE_TASKS, ConstructiveAllocator, data_ready
from apportion.core.algorithms.registry import register
from apportion.core.evaluate import Plan, link_arrays
from apportion.core.model import ROWS_AT_ONCE, Instance


def mean_transfer(instance: Instance, transfer: str = "rate") -> np.ndarray:
    """Each edge's mean transfer time (in ``instance.child_ptr`` order), HEFT's c-bar.

    ``"rate"`` (Topcuoglu et al.'s formula, HEFT's default here): mean latency + d / mean
    bandwidth over ordered pairs of distinct, linked nodes. ``"time"``: the mean of the
    transfer time itself over the links of an undirected network, each pair of distinct
    linked nodes once and each node's link to itself once at zero cost: how SAGA's HEFT and
    CPoP average (with it, ``heft_priority`` gives SAGA's HEFT schedules on bench_saga).
    Where links differ tenfold (a slow link between two clusters) the mean bandwidth is
    dominated by the fast links and the mean time by the slow one; on montage-1000 over two
    clusters HEFT's plan is 14,907 s under the first and 9,078 s under the second (1,000genome-150:
    642 s and 454 s), and the weight of the self-links alone moves it (15,039 s with each
    ordered pair and self-pair once). 0 when no two distinct nodes are linked."""
    inst = instance
    same = inst.same_node()  # a slot instance's slots of one node are one node here
    linked = np.isfinite(inst.inv_bandwidth) & ~same
    if not linked.any():
        return np.zeros_like(inst.child_data)
    if transfer == "rate":
        mean_bandwidth = (1.0 / inst.inv_bandwidth[linked]).mean()
        return inst.latency[linked].mean() + inst.child_data / mean_bandwidth
    if transfer == "time":
        # Each unordered pair of linked nodes once (both directions, halved) and each node's
        # link to itself once, at zero cost.
        pairs = linked.sum() + 2 * same.sum()
        return inst.latency[linked].sum() / pairs + inst.child_data * (inst.inv_bandwidth[linked].sum() / pairs)
    raise ValueError(f"transfer must be 'rate' or 'time', got {transfer!r}")


def mean_runtime(instance: Instance) -> np.ndarray:
    """Each task's mean runtime over its eligible nodes (HEFT's w-bar)."""
    inst = instance
    wbar = np.empty(inst.n_tasks)  # a block of rows at a time: no tasks x nodes temporary
    for lo in range(0, inst.n_tasks, ROWS_AT_ONCE):
        rows = slice(lo, lo + ROWS_AT_ONCE)
        wbar[rows] = np.where(inst.eligible[rows], inst.duration[rows], 0.0).sum(axis=1) / inst.eligible[rows].sum(axis=1)
    return wbar


def heft_ranks(instance: Instance, transfer: str = "rate") -> np.ndarray:
    """HEFT's upward rank: mean runtime over the task's eligible nodes plus the largest
    (mean transfer time + rank) over its children. The mean transfer of d MB is
    mean latency + d / mean bandwidth over ordered pairs of distinct, linked nodes (0 when
    there are none, e.g. one node); ``transfer="time"`` averages the transfer time instead
    (``mean_transfer``)."""
    inst = instance
    wbar = mean_runtime(inst)
    cbar = mean_transfer(inst, transfer)
    rank = np.zeros(inst.n_tasks)
    for t in inst.topo_order[::-1].tolist():
        a, b = inst.child_ptr[t], inst.child_ptr[t + 1]
        tail = (cbar[a:b] + rank[inst.child_idx[a:b]]).max() if b > a else 0.0
        rank[t] = wbar[t] + tail
    return rank


def heft_priority(instance: Instance, transfer: str = "rate") -> np.ndarray:
    """Tasks by decreasing upward rank, ties in topological order (which keeps the list
    topological: a parent's rank is never below its child's)."""
    position = np.empty(instance.n_tasks, dtype=np.int64)
    position[instance.topo_order] = np.arange(instance.n_tasks)
    return np.lexsort((position, -heft_ranks(instance, transfer))).astype(np.int32)


# Each node's timeline is a skip list of its tasks in time order (level 0 is the plain list;
# node j's head is the sentinel ``n + j``, present at every level, ending at time 0), so the
# last task starting before a data-ready time is found in O(log n). Idle gaps are skipped with
# union-finds, one per gap size class: ``gap_root[c, v]`` leads to the first element at or
# after v followed by at least ``threshold[c]`` idle seconds (class 0: any idle time), or the
# last one. Gaps only ever shrink, so an element once skipped stays skipped. A task of
# duration d searches the class of threshold <= d / 2, which skips only gaps too short for it.
# Together they replace scans of the whole timeline, which made HEFT quadratic.


@jit
def _link_after(t, a, level, offset, fwd, bwd):
    """Insert element ``t`` right after ``a`` at each of its levels."""
    x = a
    for lv in range(level[t]):
        while level[x] <= lv:  # back along level lv - 1 to the last element present at level lv
            x = bwd[offset[x] + lv - 1]
        y = fwd[offset[x] + lv]
        fwd[offset[t] + lv], bwd[offset[t] + lv] = y, x
        fwd[offset[x] + lv] = t
        if y != -1:
            bwd[offset[y] + lv] = t


@jit
def _last_starting_before(head, ready, start, level, offset, fwd):
    """The last element of a timeline (``head`` if none) whose task starts before ``ready``."""
    x = head
    for lv in range(level[head] - 1, -1, -1):
        y = fwd[offset[x] + lv]
        while y != -1 and start[y] < ready:
            x = y
            y = fwd[offset[x] + lv]
    return x


@jit
def _gap_find(c, v, gap_root):
    while gap_root[c, v] != v:
        gap_root[c, v] = gap_root[c, gap_root[c, v]]
        v = gap_root[c, v]
    return v


@jit
def _gap_class(d, threshold):
    """The largest class whose threshold is at most d / 2 (0 when none is)."""
    c = 0
    while c + 1 < threshold.shape[0] and threshold[c + 1] <= 0.5 * d:
        c += 1
    return c


@jit
def _slot(j, ready, d, start, end, n, level, offset, fwd, gap_root, threshold, tail):
    """(start, element after which): the first idle gap on node j that starts at or after
    ``ready`` and holds ``d``, else after its last task; the textbook scan's answer."""
    a = _last_starting_before(n + j, ready, start, level, offset, fwd)
    s = max(ready, end[a] if a < n else 0.0)
    nxt = fwd[offset[a]]
    if nxt == -1 or s + d <= start[nxt]:
        return s, a
    last_end = end[tail[j]]
    # Every later candidate starts at its predecessor's end e <= last_end. When e + d / 2 > e
    # for all of those, a gap shorter than d / 2 cannot hold the task, so the union-finds
    # skip them; else (d below the resolution of the times) every gap is tried.
    skip = last_end + 0.5 * d > last_end
    c = _gap_class(d, threshold)
    a = nxt
    while True:
        if skip:
            a = _gap_find(c, a, gap_root)
        nxt = fwd[offset[a]]
        if nxt == -1 or end[a] + d <= start[nxt]:
            return end[a], a
        a = nxt


@jit
def _close_gaps(t, a, y, n, start, end, gap_root, threshold):
    """Update every class after inserting ``t`` between ``a`` and ``y`` (-1: none)."""
    for c in range(threshold.shape[0]):
        # t leads on to y unless it is last or followed by enough idle time.
        if y == -1 or (start[y] - end[t] > 0.0 if c == 0 else start[y] - end[t] >= threshold[c]):
            gap_root[c, t] = t
        else:
            gap_root[c, t] = y
        idle = start[t] - (end[a] if a < n else 0.0)
        if gap_root[c, a] == a and not (idle > 0.0 if c == 0 else idle >= threshold[c]):
            gap_root[c, a] = t


@jit
def _heft_kernel(priority, duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw, release,
                 assign, start, end, level, offset, fwd, bwd, gap_root, threshold, tail):
    """Insertion-based earliest-finish-time placement of the tasks in ``priority`` order, onto
    the timelines built so far (so the priority list can be placed a slice at a time)."""
    n, m = duration.shape
    for t in priority:
        best_j, best_finish, best_start, best_after = -1, np.inf, np.inf, -1
        for j in range(m):
            if not eligible[t, j]:
                continue
            ready = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
            s, a = _slot(j, ready, duration[t, j], start, end, n, level, offset, fwd, gap_root, threshold, tail)
            if best_j == -1 or s + duration[t, j] < best_finish:
                best_j, best_finish, best_start, best_after = j, s + duration[t, j], s, a
        a = best_after
        y = fwd[offset[a]]
        assign[t] = best_j
        start[t] = best_start
        end[t] = best_start + duration[t, best_j]
        _link_after(t, a, level, offset, fwd, bwd)
        if y == -1:
            tail[best_j] = t
        _close_gaps(t, a, y, n, start, end, gap_root, threshold)


def _gap_thresholds(instance: Instance, classes: int = 12) -> np.ndarray:
    """Idle-time thresholds of the gap classes: 0 (any idle time), then half the shortest
    positive runtime times powers of 4, up to half the longest (at most ``classes`` more)."""
    shortest, longest = np.inf, -np.inf
    for lo in range(0, instance.n_tasks, ROWS_AT_ONCE):  # a block of rows at a time: no tasks x nodes temporary
        duration = instance.duration[lo:lo + ROWS_AT_ONCE]
        runtimes = duration[instance.eligible[lo:lo + ROWS_AT_ONCE] & (duration > 0)]
        if runtimes.size:
            shortest, longest = min(shortest, float(runtimes.min())), max(longest, float(runtimes.max()))
    if shortest == np.inf:
        return np.zeros(1)
    low, high = 0.5 * shortest, 0.5 * longest
    with np.errstate(over="ignore", divide="ignore"):
        ratio = high / low
    # Runtimes spanning more than float range (1e-308 beside 1.0): their logs still differ finitely.
    span = np.log(ratio) if np.isfinite(ratio) else np.log(longest) - np.log(shortest)
    steps = min(classes, int(np.ceil(span / np.log(4.0))) + 1)
    return np.concatenate(([0.0], low * 4.0 ** np.arange(steps)))


def _skip_levels(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Levels of the skip-list elements (tasks geometric, from a hash of the index; node heads
    at the top) and each element's offset into the pointer arrays."""
    top = max(1, int(np.ceil(np.log2(n + 1))))
    h = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    low_bit = (h & (~h + np.uint64(1))).astype(np.float64)
    level = np.minimum(1 + np.where(h == 0, top, np.log2(np.where(low_bit > 0, low_bit, 1.0))), top)
    level = np.concatenate((level, np.full(m, top))).astype(np.int64)
    offset = np.concatenate(([0], np.cumsum(level))).astype(np.int64)
    return level, offset


def _heft(instance: Instance, priority: np.ndarray | None = None,
          eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HEFT's (priority, assignment, start, end); placed ``SLICE_TASKS`` at a time so Ctrl-C
    lands between kernel calls. ``priority`` (a topological order; default HEFT's) and
    ``eligible`` (default the instance's) let other insertion-based list heuristics (CPoP)
    share the placement."""
    n, m = instance.n_tasks, instance.n_nodes
    if priority is None:
        priority = heft_priority(instance)
    if eligible is None:
        eligible = instance.eligible
    latency, inv_bw = link_arrays(instance)
    assign = np.empty(n, dtype=np.int32)
    start = np.empty(n)
    end = np.empty(n)
    level, offset = _skip_levels(n, m)
    fwd = np.full(offset[-1], -1, dtype=np.int64)
    bwd = np.full(offset[-1], -1, dtype=np.int64)
    threshold = _gap_thresholds(instance)
    gap_root = np.tile(np.arange(n + m, dtype=np.int32), (threshold.size, 1))
    tail = np.arange(n, n + m, dtype=np.int64)
    duration = np.ascontiguousarray(instance.duration)
    for first in range(0, n, SLICE_TASKS):
        _heft_kernel(priority[first:first + SLICE_TASKS], duration, eligible, instance.parent_ptr,
                     instance.parent_idx, instance.parent_data, latency, inv_bw, instance.release, assign, start, end,
                     level, offset, fwd, bwd, gap_root, threshold, tail)
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
class HeftAllocator(ConstructiveAllocator):
    """HEFT; the plan's order makes the evaluator decode exactly HEFT's schedule."""

    name = "heft"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        priority, assign, start, end = _heft(instance)
        return Plan(assign, schedule_order(start, end, priority))

"""HEFT (Topcuoglu, Hariri and Wu 2002): tasks by decreasing upward rank, each on the eligible
node where it finishes earliest, inserted into an idle gap when one fits.

Unlike the appending baselines it inserts into gaps, and emits a dispatch order under which
the evaluator's decoder reproduces its schedule exactly (``schedule_order``). Its priority
list (``heft_priority``) also seeds NSGA-II's pool of dispatch orders.
"""

from __future__ import annotations

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import ConstructiveAllocator, data_ready
from apportion.core.algorithms.registry import register
from apportion.core.evaluate import Plan, link_arrays
from apportion.core.model import Instance


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
            ready = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
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
    latency, inv_bw = link_arrays(instance)
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
class HeftAllocator(ConstructiveAllocator):
    """HEFT; the plan's order makes the evaluator decode exactly HEFT's schedule."""

    name = "heft"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        priority, assign, start, end = _heft(instance)
        return Plan(assign, schedule_order(start, end, priority))

"""The plan evaluator: decodes (assignment, order) into a schedule and scores it.

Every algorithm, the NSGA-II population and the baselines alike, is scored here, so their
numbers are comparable. The cost model (README, "Cost model"):

* runtime of task t on node j = work_t / (speed_j * factor[kind_j][kind_t]);
* transfer of an edge = 0 on the same node, else latency + data / bandwidth; transfers start
  when the parent ends, do not contend with each other and overlap computation;
* tasks are taken in the plan's order (a topological order); each starts at
  max(its node is free, all inputs arrived, its request's release) and runs without preemption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import numba

from core._jit import jit, jit_parallel, prange
from core.model import Instance

# Columns of the statistics matrix every evaluation returns, in natural units.
STATS = (
    "makespan",  # s
    "utilization",  # busy time / (used nodes x makespan), 0..1
    "imbalance",  # coefficient of variation of busy time over all nodes
    "mean_response",  # priority-weighted mean of request end - release, s
    "energy",  # J, used nodes: busy power while busy, idle power otherwise until the makespan
    "cost",  # used nodes x makespan x price
    "lateness",  # total time past deadlines (tasks and requests), s
    "unroutable",  # edges whose ends sit on nodes with no link between them
)
STAT_INDEX = {name: i for i, name in enumerate(STATS)}


@dataclass(frozen=True, eq=False)
class Plan:
    """A node for every task and the order the tasks are dispatched in."""

    assignment: np.ndarray  # (n,) int32 node index per task
    order: np.ndarray  # (n,) int32 task indices, a topological order

    def __post_init__(self):
        object.__setattr__(self, "assignment", np.ascontiguousarray(self.assignment, dtype=np.int32))
        object.__setattr__(self, "order", np.ascontiguousarray(self.order, dtype=np.int32))


@dataclass(frozen=True, eq=False)
class Schedule:
    """The decoded plan: when and where each task runs."""

    plan: Plan
    start: np.ndarray  # (n,) s
    end: np.ndarray  # (n,) s
    busy: np.ndarray  # (m,) s of work per node
    stats: np.ndarray  # (len(STATS),)

    def stat(self, name: str) -> float:
        return float(self.stats[STAT_INDEX[name]])


@jit
def _evaluate_plan(assign, task_at, work, kind, rate, parent_ptr, parent_pos, parent_data, link_class, link, release,
                   deadline, request_of, req_release, req_deadline, req_priority, busy_power, idle_power,
                   cost_rate, node_of, start, end, node_free, busy, placed, req_end, out):
    """List-schedule one plan and write its STATS row to ``out``.

    Arrays are laid out by dispatch position (``task_at[k]`` is the k-th task), so parent lists
    are read front to back. Transfers between distinct nodes depend only on the nodes' link
    classes (their zones, unless node-pair links set them apart): ``link[ci * C + cj]`` holds
    (latency, 1 / bandwidth), a table small enough to stay in L1 however many nodes there are.
    """
    n, m = task_at.shape[0], rate.shape[0]
    n_classes = int(np.sqrt(link.shape[0]))
    for k in range(n):
        node_of[k] = assign[task_at[k]]
    node_free[:] = 0.0
    busy[:] = 0.0
    placed[:] = 0
    req_end[:] = 0.0
    makespan = 0.0
    lateness = 0.0
    for k in range(n):
        j = node_of[k]
        cj = link_class[j]
        ready = node_free[j]
        if release[k] > ready:
            ready = release[k]
        for e in range(parent_ptr[k], parent_ptr[k + 1]):
            q = parent_pos[e]
            pj = node_of[q]
            c = link_class[pj] * n_classes + cj
            transfer = link[c, 0] + parent_data[e] * link[c, 1]
            arrival = end[q] + (transfer if pj != j else 0.0)
            ready = arrival if arrival > ready else ready
        # The same division Instance.build makes for its duration table, so bit for bit equal;
        # reading a (tasks x nodes) table would miss the cache on large clusters.
        d = work[k] / rate[j, kind[k]]
        finish = ready + d
        start[k] = ready
        end[k] = finish
        node_free[j] = finish
        busy[j] += d
        placed[j] += 1
        if finish > makespan:
            makespan = finish
        if finish > deadline[k]:
            lateness += finish - deadline[k]
        r = request_of[k]
        if finish > req_end[r]:
            req_end[r] = finish

    total = 0.0
    n_used = 0
    energy = 0.0
    cost = 0.0
    for j in range(m):
        total += busy[j]
        if placed[j] > 0:
            n_used += 1
            energy += busy_power[j] * busy[j] + idle_power[j] * (makespan - busy[j])
            cost += cost_rate[j] * makespan
    mean = total / m
    var = 0.0
    for j in range(m):
        var += (busy[j] - mean) ** 2
    wsum = 0.0
    wresp = 0.0
    for r in range(req_end.shape[0]):
        wsum += req_priority[r]
        wresp += req_priority[r] * (req_end[r] - req_release[r])
        if req_end[r] > req_deadline[r]:
            lateness += req_end[r] - req_deadline[r]
    unroutable = 0.0
    if not np.isfinite(makespan):
        for k in range(n):
            for e in range(parent_ptr[k], parent_ptr[k + 1]):
                pj = node_of[parent_pos[e]]
                if pj != node_of[k] and not np.isfinite(link[link_class[pj] * n_classes + link_class[node_of[k]], 0]):
                    unroutable += 1.0
    out[0] = makespan
    out[1] = total / (n_used * makespan) if makespan > 0.0 else 1.0
    out[2] = np.sqrt(var / m) / mean if mean > 0.0 else 0.0
    out[3] = wresp / wsum if wsum > 0.0 else 0.0
    out[4] = energy
    out[5] = cost
    out[6] = lateness
    out[7] = unroutable


@jit
def _evaluate_rows(lo, hi, rows, assign, task_at, work, kind, rate, parent_ptr, parent_pos, parent_data, link_class, link,
                   release, deadline, request_of, req_release, req_deadline, req_priority, busy_power, idle_power,
                   cost_rate, out):
    n, m = task_at.shape[0], rate.shape[0]
    node_of = np.empty(n, dtype=np.int32)
    start = np.empty(n)
    end = np.empty(n)
    node_free = np.empty(m)
    busy = np.empty(m)
    placed = np.empty(m, dtype=np.int64)
    req_end = np.empty(req_release.shape[0])
    for r in range(lo, hi):
        i = rows[r]
        _evaluate_plan(assign[i], task_at, work, kind, rate, parent_ptr, parent_pos, parent_data, link_class, link, release,
                       deadline, request_of, req_release, req_deadline, req_priority, busy_power, idle_power,
                       cost_rate, node_of, start, end, node_free, busy, placed, req_end, out[i])


@jit
def _evaluate_kernel(rows, assign, *arrays):
    _evaluate_rows(0, rows.shape[0], rows, assign, *arrays)


@jit_parallel
def _evaluate_kernel_parallel(chunks, rows, assign, *arrays):
    for c in prange(chunks):
        _evaluate_rows(c * rows.shape[0] // chunks, (c + 1) * rows.shape[0] // chunks, rows, assign, *arrays)


def _link_classes(latency: np.ndarray, inv_bw: np.ndarray, zones: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group nodes whose links to every other node are the same (by zone when that holds,
    else one class per node); return the class of each node and the (C*C, 2) link table."""
    m = latency.shape[0]
    names = sorted(set(zones))
    candidates = [np.array([names.index(z) for z in zones], dtype=np.int32), np.arange(m, dtype=np.int32)]
    for cls in candidates:
        C = int(cls.max()) + 1
        table = np.full((C * C, 2), np.nan)
        off = ~np.eye(m, dtype=bool)
        a, b = np.nonzero(off)
        idx = cls[a] * C + cls[b]
        table[idx, 0] = latency[a, b]
        table[idx, 1] = inv_bw[a, b]
        if np.array_equal(table[idx, 0], latency[a, b]) and np.array_equal(table[idx, 1], inv_bw[a, b]):
            table[np.isnan(table)] = 0.0  # pairs never used: the same node, or an empty class
            return cls, table
    raise AssertionError("one class per node always reproduces the link matrices")


@dataclass(frozen=True, eq=False)
class _Layout:
    """The instance's task arrays permuted into one dispatch order."""

    task_at: np.ndarray
    work: np.ndarray
    kind: np.ndarray
    parent_ptr: np.ndarray
    parent_pos: np.ndarray
    parent_data: np.ndarray
    release: np.ndarray
    deadline: np.ndarray
    request_of: np.ndarray


class Evaluator:
    """Scores plans of one instance; build once, call many times.

    :param instance: the validated workload and cluster.
    :param parallel: spread a batch over Numba threads (workqueue layer).
    """

    _MAX_LAYOUTS = 32

    def __init__(self, instance: Instance, *, parallel: bool = False):
        self.instance = instance
        self.parallel = parallel
        no_link = ~np.isfinite(instance.inv_bandwidth)
        # A missing link shows as infinite latency so that 0 MB over it is still infinite.
        latency = np.where(no_link, np.inf, instance.latency)
        inv_bw = np.where(no_link, 0.0, instance.inv_bandwidth)
        zones = [node.zone for node in instance.cluster.nodes]
        self._link_class, self._link = _link_classes(latency, inv_bw, zones)
        self._rate = np.ascontiguousarray(instance.rate)
        self._layouts: dict[bytes, _Layout] = {}
        self.evaluations = 0

    def _layout(self, order: np.ndarray) -> _Layout:
        key = order.tobytes()
        layout = self._layouts.get(key)
        if layout is None:
            inst = self.instance
            position = np.empty_like(order)
            position[order] = np.arange(order.shape[0], dtype=order.dtype)
            counts = np.diff(inst.parent_ptr)[order]
            ptr = np.zeros(order.shape[0] + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            edges = np.concatenate([np.arange(inst.parent_ptr[t], inst.parent_ptr[t + 1]) for t in order]) \
                if inst.n_edges else np.zeros(0, dtype=np.int64)
            layout = _Layout(
                task_at=np.ascontiguousarray(order),
                work=np.ascontiguousarray(inst.work[order]),
                kind=np.ascontiguousarray(inst.kind_of[order]),
                parent_ptr=ptr,
                parent_pos=np.ascontiguousarray(position[inst.parent_idx[edges]], dtype=np.int32),
                parent_data=np.ascontiguousarray(inst.parent_data[edges]),
                release=np.ascontiguousarray(inst.release[order]),
                deadline=np.ascontiguousarray(inst.deadline[order]),
                request_of=np.ascontiguousarray(inst.request_of[order]),
            )
            if len(self._layouts) >= self._MAX_LAYOUTS:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[key] = layout
        return layout

    def _arrays(self, layout: _Layout):
        inst = self.instance
        return (layout.task_at, layout.work, layout.kind, self._rate, layout.parent_ptr, layout.parent_pos, layout.parent_data,
                self._link_class, self._link, layout.release, layout.deadline, layout.request_of,
                inst.request_release, inst.request_deadline, inst.request_priority, inst.busy_power,
                inst.idle_power, inst.cost_rate)

    def stats(self, assignment: np.ndarray, order: np.ndarray, *, check: bool = True) -> np.ndarray:
        """Statistics (columns ``STATS``) for a batch of plans.

        :param assignment: (P, n) node index per task, or (n,) for one plan.
        :param order: (P, n) dispatch orders, or (n,) shared by every plan in the batch.
        :param check: verify nodes are in range and eligible and orders are topological.
        """
        n = self.instance.n_tasks
        assign = np.ascontiguousarray(np.atleast_2d(assignment), dtype=np.int32)
        if assign.ndim != 2 or assign.shape[1] != n:
            raise ValueError(f"assignment must have shape (P, {n}), got {np.shape(assignment)}")
        order = np.ascontiguousarray(order, dtype=np.int32)
        if order.shape != (n,) and order.shape != assign.shape:
            raise ValueError(f"order must have shape ({n},) or {assign.shape}, got {order.shape}")
        if check:
            self.check(assign, np.broadcast_to(order, assign.shape))
        # Plans sharing an order are evaluated together on that order's layout.
        groups: dict[bytes, list[int]] = {}
        if order.ndim == 1:
            groups[b""] = list(range(assign.shape[0]))
        else:
            for i in range(assign.shape[0]):
                groups.setdefault(order[i].tobytes(), []).append(i)
        out = np.empty((assign.shape[0], len(STATS)))
        for rows in groups.values():
            layout = self._layout(order if order.ndim == 1 else order[rows[0]])
            rows = np.asarray(rows, dtype=np.int64)
            if self.parallel:
                chunks = min(len(rows), 4 * numba.get_num_threads())
                _evaluate_kernel_parallel(chunks, rows, assign, *self._arrays(layout), out)
            else:
                _evaluate_kernel(rows, assign, *self._arrays(layout), out)
        self.evaluations += assign.shape[0]
        return out

    def check(self, assign: np.ndarray, order: np.ndarray) -> None:
        """Raise ValueError unless every plan uses eligible nodes and a topological order."""
        inst = self.instance
        n, m = inst.n_tasks, inst.n_nodes
        if assign.min() < 0 or assign.max() >= m:
            raise ValueError(f"assignment holds node indices outside 0..{m - 1}")
        rows = np.arange(n)
        bad = ~inst.eligible[rows[None, :], assign]
        if bad.any():
            i, t = np.argwhere(bad)[0]
            raise ValueError(
                f"plan {i}: task {inst.task_ids[t]!r} on node {inst.node_ids[assign[i, t]]!r}, "
                "which its memory or placement rules exclude"
            )
        position = np.empty_like(order)
        for i in range(order.shape[0]):
            if not np.array_equal(np.sort(order[i]), rows):
                raise ValueError(f"plan {i}: order is not a permutation of the {n} tasks")
            position[i, order[i]] = rows
        child = np.repeat(rows, np.diff(inst.parent_ptr))
        late = position[:, inst.parent_idx] > position[:, child]
        if late.any():
            i, e = np.argwhere(late)[0]
            raise ValueError(
                f"plan {i}: order puts task {inst.task_ids[child[e]]!r} before its parent "
                f"{inst.task_ids[inst.parent_idx[e]]!r}"
            )

    def schedule(self, plan: Plan) -> Schedule:
        """Decode one plan into start and end times per task."""
        inst = self.instance
        self.check(np.atleast_2d(plan.assignment), np.atleast_2d(plan.order))
        layout = self._layout(plan.order)
        n, m = inst.n_tasks, inst.n_nodes
        start_p, end_p, busy, stats = np.empty(n), np.empty(n), np.empty(m), np.empty(len(STATS))
        _evaluate_plan(plan.assignment, *self._arrays(layout), np.empty(n, dtype=np.int32), start_p, end_p,
                       np.empty(m), busy, np.empty(m, dtype=np.int64), np.empty(len(inst.request_ids)), stats)
        self.evaluations += 1
        start, end = np.empty(n), np.empty(n)
        start[layout.task_at] = start_p
        end[layout.task_at] = end_p
        return Schedule(plan=plan, start=start, end=end, busy=busy, stats=stats)

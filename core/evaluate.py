"""The plan evaluator: decodes (assignment, order) into a schedule and scores it.

Every algorithm, the NSGA-II population and the baselines alike, is scored here, so their
numbers are comparable. The cost model (README, "Cost model"):

* runtime of task t on node j = work_t / (speed_j * factor[kind_j][kind_t]);
* transfer of an edge = 0 on the same node, else latency + data / bandwidth; transfers start
  when the parent ends, do not contend with each other and overlap computation;
* tasks are taken in the plan's order (a topological order); each starts at
  max(its node is free, all inputs arrived, its request's release) and runs without preemption;
* a node with k ``slots`` runs up to k tasks at once, each at the node's full speed: a task
  takes, among the node's slots free when it is ready, the one that became free last (best
  fit), and when none is, the one that becomes free first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from apportion.core._jit import jit, jit_inline, jit_parallel, prange
from apportion.core.model import Instance

# Columns of the statistics matrix every evaluation returns, in natural units.
STATS = (
    "makespan",  # s
    "utilization",  # busy time / (slots of the used nodes x makespan), 0..1
    "imbalance",  # coefficient of variation of busy time / slots over all nodes
    "mean_response",  # priority-weighted mean of request end - release, s
    "energy",  # J, used nodes: busy power per busy second, idle power for the rest (makespan - busy / slots)
    "cost",  # used nodes x makespan x price
    "lateness",  # total time past deadlines (tasks and requests), s
    "unroutable",  # edges whose ends sit on nodes with no link between them
    "moved",  # tasks placed on another node than the plan being revised put them (re-planning)
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


# Plans decoded in lockstep: list scheduling is a chain of dependent loads and maxima, so
# interleaving independent plans lets the processor overlap their latencies (about 2.4x here).
LANES = 4
# The decode keeps per-(task, plan) data in flat arrays and indexes them with unsigned
# integers: Numba then emits neither negative-index wraparound nor stride multiplications,
# which were most of the edge loop's instructions (1.7x).
_LANES = np.uint64(LANES)
_ONE = np.uint64(1)
# A tag is a node index in the low 32 bits and the row of the node's link class in ``link``
# (2 * C * class) in the high 32 bits.
_TAG_SHIFT = np.uint64(32)
_TAG_NODE = np.uint64(0xFFFFFFFF)


@jit_inline
def _arrival(ready, b, end, tag, jt, cj, data, link, same_class):
    """``ready`` raised to when the edge's data from the parent (record ``b``) reaches the node
    tagged ``jt`` (link-class column ``cj``).

    ``link`` holds (latency, 1/bandwidth) per pair of link classes. With one class per node
    (``same_class`` None) its diagonal is (0, 0), so a parent on the same node adds exactly
    0.0 (x + 0.0 == x). Classes of several nodes (zones on large clusters, keeping the table
    in L1) have a non-zero diagonal, so the transfer is computed either way and dropped on the
    same node: a select per lane and edge, without a branch.
    """
    pt = tag[b]
    c = (pt >> _TAG_SHIFT) + cj
    transfer = link[c] + data * link[c + _ONE]
    if same_class is None:
        arrival = end[b] + transfer
    else:
        arrival = end[b] + (transfer if pt != jt else 0.0)
    return arrival if arrival > ready else ready


@jit_inline
def _inputs_arrived(k, r0, r1, r2, r3, t0, t1, t2, t3, parent_ptr, parent_pos, parent_data, end, tag, node_col, link,
                    same_class):
    """The four lanes' ready times of the k-th task raised to its inputs' arrivals (lane i's
    node tagged ``ti``), the lanes interleaved: both decodes read a task's inputs here."""
    c0, c1 = node_col[t0 & _TAG_NODE], node_col[t1 & _TAG_NODE]
    c2, c3 = node_col[t2 & _TAG_NODE], node_col[t3 & _TAG_NODE]
    for e in range(parent_ptr[k], parent_ptr[k + 1]):
        q = np.uint64(parent_pos[e])
        data = parent_data[e]
        r0 = _arrival(r0, q, end, tag, t0, c0, data, link, same_class)
        r1 = _arrival(r1, q + _ONE, end, tag, t1, c1, data, link, same_class)
        r2 = _arrival(r2, q + np.uint64(2), end, tag, t2, c2, data, link, same_class)
        r3 = _arrival(r3, q + np.uint64(3), end, tag, t3, c3, data, link, same_class)
    return r0, r1, r2, r3


@jit_inline
def _place(b, jt, ready, work, rate, overhead, kind, end, node_free, busy):
    # The division Instance.build makes for its duration table, so bit for bit the same; a
    # (tasks x nodes) table measured no faster even at 8 nodes and misses the cache on large
    # clusters.
    j = jt & _TAG_NODE
    d = work / rate[j, kind]
    if overhead is not None:  # None when no node has one: compiled away
        d += overhead[j]
    end[b] = ready + d
    f = j * _LANES + (b % _LANES)
    node_free[f] = ready + d
    busy[f] += d


@jit_inline
def _tag_records(plans, task_at, node_tag, tag, used, busy):
    """Each record's node tag, whether each plan uses each node, and no busy time yet."""
    used[:] = False
    for k in range(task_at.shape[0]):
        t = task_at[k]
        for lane in range(LANES):
            j = plans[lane, t]
            tag[k * LANES + lane] = node_tag[j]
            used[j * LANES + lane] = True
    busy[:] = 0.0


@jit_inline
def take_slot(j, lane, lanes, ready, slot_ptr, slot_free):
    """(record, start) of the slot of node j a task ready at ``ready`` takes in ``lane``: among
    the slots free by then, the one that became free last (best fit), else the one that
    becomes free first; the lowest slot on ties. Slot records are ``slot * lanes + lane``
    (the simulator keeps one lane). Every slot-aware kernel takes its slots here."""
    best, best_free = -1, -np.inf
    first, first_free = -1, np.inf
    for s in range(slot_ptr[j], slot_ptr[j + 1]):
        f = s * lanes + lane
        x = slot_free[f]
        if x <= ready:
            if best == -1 or x > best_free:
                best, best_free = f, x
        elif first == -1 or x < first_free:
            first, first_free = f, x
    if best != -1:
        return best, ready
    return first, first_free


@jit
def _decode_slotted(plans, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag,
                    node_col, link, same_class, release, available_from, pinned_start, pinned_end, tag, start, end,
                    slot_free, busy, used, slot_ptr):
    """``_decode_lanes`` on nodes with several slots (``slot_ptr``: CSR offsets of each node's
    slots in ``slot_free``, records ``slot * LANES + lane``), one lane after another. Pinned
    tasks take their slots first, each by the same rule at its start (so tasks that ran side
    by side hold different slots), and then a node's slots are free from its
    ``available_from`` on at the earliest."""
    n, m = task_at.shape[0], available_from.shape[0]
    _tag_records(plans, task_at, node_tag, tag, used, busy)
    slot_free[:] = -np.inf
    n_pinned = pinned_start.shape[0]
    for k in range(n_pinned):
        for lane in range(LANES):
            b = np.uint64(k * LANES + lane)
            j = np.int64(tag[b] & _TAG_NODE)
            f, _ = take_slot(j, lane, LANES, pinned_start[k], slot_ptr, slot_free)
            if start is not None:
                start[b] = pinned_start[k]
            end[b] = pinned_end[k]
            slot_free[f] = max(slot_free[f], pinned_end[k])
            busy[j * LANES + lane] += pinned_end[k] - pinned_start[k]
    for j in range(m):
        for s in range(slot_ptr[j], slot_ptr[j + 1]):
            for lane in range(LANES):
                slot_free[s * LANES + lane] = max(slot_free[s * LANES + lane], available_from[j])
    ready = np.empty(LANES)
    for k in range(n_pinned, n):
        kb = np.uint64(k) * _LANES
        r = release[k]
        ready[0], ready[1], ready[2], ready[3] = _inputs_arrived(
            k, r, r, r, r, tag[kb], tag[kb + _ONE], tag[kb + np.uint64(2)], tag[kb + np.uint64(3)], parent_ptr,
            parent_pos, parent_data, end, tag, node_col, link, same_class)
        kind_k, w = kind[k], work[k]
        for lane in range(LANES):
            b = kb + np.uint64(lane)
            j = np.int64(tag[b] & _TAG_NODE)
            f, s0 = take_slot(j, lane, LANES, ready[lane], slot_ptr, slot_free)
            d = w / rate[j, kind_k]
            if overhead is not None:
                d += overhead[j]
            s0 = max(s0, ready[lane])
            end[b] = s0 + d
            slot_free[f] = s0 + d
            busy[j * LANES + lane] += d
            if start is not None:
                start[b] = s0


@jit
def _decode_lanes(plans, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag, node_col, link,
                  same_class, release, available_from, pinned_start, pinned_end, tag, start, end, node_free, busy,
                  used):
    """List-schedule ``LANES`` plans (rows of ``plans``) together.

    Per-(task, plan) arrays are flat: record ``k * LANES + lane`` is the k-th dispatched task
    (``task_at[k]``) in that plan, so parent lists are read front to back; ``parent_pos``
    holds the parents' records of lane 0. Per-(node, plan) arrays are flat the same way.
    ``tag`` receives each record's node tag and ``end`` its end; ``used`` whether the plan
    puts a task on the node, marked while the tags are written (cheaper than a pass of its
    own); ``start`` is None when only statistics are wanted (Numba compiles the stores away,
    and the decode's working set shrinks by a third). The first ``len(pinned_start)``
    positions hold pinned tasks (re-planning: they keep their node and times); every other
    task starts at max(node free, release, inputs arrived), a node being free from its
    ``available_from`` on.
    Nothing else happens in the main loop: every extra store would cost a reload of the rest.
    """
    n = task_at.shape[0]
    _tag_records(plans, task_at, node_tag, tag, used, busy)
    for j in range(available_from.shape[0]):
        for lane in range(LANES):
            node_free[j * LANES + lane] = available_from[j]
    n_pinned = pinned_start.shape[0]
    for k in range(n_pinned):
        for lane in range(LANES):
            b = k * LANES + lane
            f = (tag[b] & _TAG_NODE) * _LANES + np.uint64(lane)
            if start is not None:
                start[b] = pinned_start[k]
            end[b] = pinned_end[k]
            node_free[f] = max(node_free[f], pinned_end[k])
            busy[f] += pinned_end[k] - pinned_start[k]
    for k in range(n_pinned, n):
        kb = np.uint64(k) * _LANES
        b0, b1, b2, b3 = kb, kb + _ONE, kb + np.uint64(2), kb + np.uint64(3)
        t0, t1, t2, t3 = tag[b0], tag[b1], tag[b2], tag[b3]
        r = release[k]
        r0, r1, r2, r3 = _inputs_arrived(
            k, max(node_free[(t0 & _TAG_NODE) * _LANES], r), max(node_free[(t1 & _TAG_NODE) * _LANES + _ONE], r),
            max(node_free[(t2 & _TAG_NODE) * _LANES + np.uint64(2)], r),
            max(node_free[(t3 & _TAG_NODE) * _LANES + np.uint64(3)], r), t0, t1, t2, t3, parent_ptr, parent_pos,
            parent_data, end, tag, node_col, link, same_class)
        w, kd = work[k], kind[k]
        _place(b0, t0, r0, w, rate, overhead, kd, end, node_free, busy)
        _place(b1, t1, r1, w, rate, overhead, kd, end, node_free, busy)
        _place(b2, t2, r2, w, rate, overhead, kd, end, node_free, busy)
        _place(b3, t3, r3, w, rate, overhead, kd, end, node_free, busy)
        if start is not None:
            start[b0], start[b1], start[b2], start[b3] = r0, r1, r2, r3


# Complexity: one pass over a lane's tasks, nodes and requests: split, it would pass its 20 arrays between calls.
@jit
def _summarise(lane, tag, end, busy, used, req_end, last_pos, last_request, due_pos, due, parent_ptr, parent_pos,  # noqa: C901
               node_col, link, req_release, req_deadline, req_priority, busy_power, idle_power, cost_rate, slots, out):
    """Write one lane's STATS row to ``out``.

    A child ends no earlier than its parents, so a request ends at one of its tasks that has no
    child in the same request (``last_pos``): only those are read, and only tasks with a
    deadline (``due_pos``) for lateness. ``slots`` (float per node) is None when every node
    has one: the one-slot sums are compiled as they always were.
    """
    n, m = end.shape[0] // LANES, busy.shape[0] // LANES
    req_end[:] = 0.0
    makespan = 0.0
    for i in range(last_pos.shape[0]):
        finish = end[last_pos[i] * LANES + lane]
        r = last_request[i]
        if finish > req_end[r]:
            req_end[r] = finish
        if finish > makespan:
            makespan = finish
    lateness = 0.0
    for i in range(due_pos.shape[0]):
        finish = end[due_pos[i] * LANES + lane]
        if finish > due[i]:
            lateness += finish - due[i]
    total = 0.0
    n_used = 0.0
    energy = 0.0
    cost = 0.0
    for j in range(m):
        b = busy[j * LANES + lane]
        total += b
        if used[j * LANES + lane]:
            if slots is None:
                n_used += 1.0
                energy += busy_power[j] * b + idle_power[j] * (makespan - b)
            else:
                n_used += slots[j]
                energy += busy_power[j] * b + idle_power[j] * (makespan - b / slots[j])
            cost += cost_rate[j] * makespan
    var = 0.0
    if slots is None:
        mean = total / m
        for j in range(m):
            var += (busy[j * LANES + lane] - mean) ** 2
    else:
        mean = 0.0
        for j in range(m):
            mean += busy[j * LANES + lane] / slots[j]
        mean /= m
        for j in range(m):
            var += (busy[j * LANES + lane] / slots[j] - mean) ** 2
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
            jt = tag[k * LANES + lane]
            cj = node_col[jt & _TAG_NODE]
            for e in range(parent_ptr[k], parent_ptr[k + 1]):
                pt = tag[parent_pos[e] + lane]
                if pt != jt and not np.isfinite(link[(pt >> _TAG_SHIFT) + cj]):
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
def _evaluate_groups(first, last, rows, assign, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data,
                     node_tag, node_col, link, same_class, release, available_from, pinned_start, pinned_end, last_pos,
                     last_request, due_pos, due, req_release, req_deadline, req_priority, busy_power, idle_power,
                     cost_rate, slots, slot_ptr, out):
    """Evaluate groups ``first..last-1`` of ``LANES`` rows each; a short last group repeats
    its final row (computed twice, written identically). ``slot_ptr`` None: one slot per node."""
    n, m = task_at.shape[0], rate.shape[0]
    plans = np.empty((LANES, assign.shape[1]), dtype=np.int32)
    tag = np.empty(n * LANES, dtype=np.uint64)
    end = np.empty(n * LANES)
    node_free = np.empty((m if slot_ptr is None else slot_ptr[m]) * LANES)
    busy = np.empty(m * LANES)
    used = np.empty(m * LANES, dtype=np.bool_)
    req_end = np.empty(req_release.shape[0])
    for g in range(first, last):
        for lane in range(LANES):
            plans[lane] = assign[rows[min(g * LANES + lane, rows.shape[0] - 1)]]
        if slot_ptr is None:
            _decode_lanes(plans, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag,
                          node_col, link, same_class, release, available_from, pinned_start, pinned_end, tag, None, end,
                          node_free, busy, used)
        else:
            _decode_slotted(plans, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag,
                            node_col, link, same_class, release, available_from, pinned_start, pinned_end, tag, None,
                            end, node_free, busy, used, slot_ptr)
        for lane in range(LANES):
            i = rows[min(g * LANES + lane, rows.shape[0] - 1)]
            _summarise(lane, tag, end, busy, used, req_end, last_pos, last_request, due_pos, due, parent_ptr,
                       parent_pos, node_col, link, req_release, req_deadline, req_priority, busy_power,
                       idle_power, cost_rate, slots, out[i])


@jit
def _evaluate_kernel(rows, assign, *arrays):
    _evaluate_groups(0, (rows.shape[0] + LANES - 1) // LANES, rows, assign, *arrays)


@jit_parallel
def _evaluate_kernel_parallel(chunks, rows, assign, *arrays):
    groups = (rows.shape[0] + LANES - 1) // LANES
    for c in prange(chunks):
        _evaluate_groups(c * groups // chunks, (c + 1) * groups // chunks, rows, assign, *arrays)


@jit
def _group_rows(order):
    """Rows of ``order`` (P, n) grouped by equal contents: (row indices by group, start of each
    group in them), groups by first row, rows ascending within a group.

    A position-weighted sum hashes each row (a loop Numba vectorises), and a row joins a
    group only when it equals the group's first row: exact whatever the hashes, and a quarter
    of the cost of hashing row bytes in Python (0.1 ms, a sixth of a 100-plan batch here).
    """
    P, n = order.shape
    hashes = np.empty(P, dtype=np.uint64)
    for i in range(P):
        h = np.uint64(0)
        for k in range(n):
            h += np.uint64(order[i, k]) * (np.uint64(k) * np.uint64(0x9E3779B97F4A7C15) + _ONE)
        hashes[i] = h
    group = np.empty(P, dtype=np.int64)
    first = np.empty(P, dtype=np.int64)
    count = np.zeros(P + 1, dtype=np.int64)
    n_groups = 0
    for i in range(P):
        g = 0
        while g < n_groups:
            f = first[g]
            if hashes[f] == hashes[i]:
                differ = 0
                for k in range(n):
                    differ |= order[f, k] ^ order[i, k]
                if differ == 0:
                    break
            g += 1
        if g == n_groups:
            first[g] = i
            n_groups += 1
        group[i] = g
        count[g + 1] += 1
    ptr = np.cumsum(count[:n_groups + 1])
    by_group = np.empty(P, dtype=np.int64)
    fill = ptr[:n_groups].copy()
    for i in range(P):
        by_group[fill[group[i]]] = i
        fill[group[i]] += 1
    return by_group, ptr


def link_arrays(instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(latency, inverse bandwidth) between nodes as every kernel reads them: a missing link
    is infinite latency (so even 0 MB cannot cross it) and 0 s/MB (which keeps 0 * inf out
    of the sums). The one place this rule lives; the evaluator, the simulator and the
    constructive allocators all take their link arrays from here."""
    no_link = ~np.isfinite(instance.inv_bandwidth)
    latency = np.ascontiguousarray(np.where(no_link, np.inf, instance.latency))
    inv_bw = np.ascontiguousarray(np.where(no_link, 0.0, instance.inv_bandwidth))
    return latency, inv_bw


def _link_classes(latency: np.ndarray, inv_bw: np.ndarray, zones: list[str],
                  by_node: bool) -> tuple[np.ndarray, np.ndarray]:
    """Group nodes whose links to every other node are the same (by zone when that holds and
    not ``by_node``, else one class per node); return the class of each node and the (C*C, 2)
    link table."""
    m = latency.shape[0]
    names = sorted(set(zones))
    candidates = [np.arange(m, dtype=np.int32)]
    if not by_node:
        candidates.insert(0, np.array([names.index(z) for z in zones], dtype=np.int32))
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
    parent_pos: np.ndarray  # uint32 record of each parent in lane 0 (position * LANES)
    parent_data: np.ndarray
    release: np.ndarray
    pinned_start: np.ndarray  # the first len(pinned_start) positions hold the pinned tasks
    pinned_end: np.ndarray
    last_pos: np.ndarray  # positions of tasks with no child in their own request
    last_request: np.ndarray  # their requests
    due_pos: np.ndarray  # positions of tasks with a deadline
    due: np.ndarray  # their deadlines


@jit
def _permute_kernel(order, parent_ptr, parent_idx, parent_data, work, kind_of, release, position, ptr,
                    parent_pos_out, parent_data_out, work_out, kind_out, release_out):
    """The task arrays permuted into ``order``: each task's position, its in-edges (CSR rows in
    dispatch order) as their parents' lane-0 records and data, its work, kind and release."""
    n = order.shape[0]
    for k in range(n):
        position[order[k]] = k
    ptr[0] = 0
    for k in range(n):
        t = order[k]
        base = ptr[k]
        lo = parent_ptr[t]
        for e in range(lo, parent_ptr[t + 1]):
            parent_pos_out[base + e - lo] = np.uint32(position[parent_idx[e]] * LANES)
            parent_data_out[base + e - lo] = parent_data[e]
        ptr[k + 1] = base + parent_ptr[t + 1] - lo
        work_out[k] = work[t]
        kind_out[k] = kind_of[t]
        release_out[k] = release[t]


class Evaluator:
    """Scores plans of one instance; build once, call many times.

    :param instance: the validated workload and cluster.
    :param parallel: spread a batch over Numba threads (workqueue layer).
    """

    _MAX_LAYOUTS = 32
    # A (latency, 1/bandwidth) table per node pair, up to 32 nodes, stays in L1 and saves a
    # select per edge (~10% on 8 nodes); larger clusters use zone classes.
    _MAX_PAIR_TABLE_BYTES = 16 * 1024

    def __init__(self, instance: Instance, *, parallel: bool = False):
        self.instance = instance
        self.parallel = parallel
        latency, inv_bw = link_arrays(instance)
        zones = [node.zone for node in instance.cluster.nodes]
        m = instance.n_nodes
        link_class, link = _link_classes(latency, inv_bw, zones, by_node=m * m * 16 <= self._MAX_PAIR_TABLE_BYTES)
        # None when every node has a class of its own (see _arrival): a compile-time switch.
        self._same_class = None if len(link) == m * m else True
        # Each node's tag (its index and its class's row in the flat link table; both fit 32
        # bits below 46,000 nodes) and its class's column, so entry (row + column) is the link.
        cls = link_class.astype(np.uint64)
        row = 2 * np.uint64(np.sqrt(link.shape[0])) * cls
        self._node_tag = (row << _TAG_SHIFT) | np.arange(cls.shape[0], dtype=np.uint64)
        self._node_col = 2 * cls
        self._link = np.ascontiguousarray(link.ravel())
        self._rate = np.ascontiguousarray(instance.rate)
        self._overhead = np.ascontiguousarray(instance.overhead) if instance.overhead.any() else None
        self._layouts: dict[bytes, _Layout] = {}
        self._any_pinned = bool((instance.pinned_node >= 0).any())
        # None when every node has one slot: the kernels compile the one-slot path.
        self._slot_ptr = instance.slot_ptr
        self._slots = None if self._slot_ptr is None else instance.slots.astype(np.float64)
        self.evaluations = 0

    def _order_free_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What every layout needs and no order changes, computed once: the last tasks of their
        requests (no child in the same request) and those requests, the tasks with a deadline."""
        parts = self.__dict__.get("_order_free")
        if parts is None:
            inst = self.instance
            parent_of_edge = np.repeat(np.arange(inst.n_tasks), np.diff(inst.child_ptr))
            same_request = inst.request_of[parent_of_edge] == inst.request_of[inst.child_idx]
            last = np.flatnonzero(np.bincount(parent_of_edge[same_request], minlength=inst.n_tasks) == 0)
            parts = (last, np.ascontiguousarray(inst.request_of[last]), np.flatnonzero(np.isfinite(inst.deadline)))
            self._order_free = parts
        return parts

    def _layout(self, order: np.ndarray) -> _Layout:
        key = order.tobytes()
        layout = self._layouts.get(key)
        if layout is None:
            inst = self.instance
            # Pinned tasks go first, by start (their parents are pinned too, so the order stays
            # topological), whatever order the plan gives.
            n_pinned = 0
            if self._any_pinned:  # a plan's pinned tasks are the instance's
                pinned = inst.pinned_node[order] >= 0
                n_pinned = int(pinned.sum())
                if n_pinned:
                    head = order[pinned][np.argsort(inst.pinned_start[order[pinned]], kind="stable")]
                    order = np.concatenate([head, order[~pinned]])
            order = np.ascontiguousarray(order, dtype=np.int32)
            last, last_request, due = self._order_free_parts()
            n, n_edges = order.shape[0], inst.parent_idx.shape[0]
            position, ptr = np.empty(n, dtype=np.int32), np.empty(n + 1, dtype=np.int64)
            parent_pos, parent_data = np.empty(n_edges, dtype=np.uint32), np.empty(n_edges)
            work, kind, release = np.empty(n), np.empty(n, dtype=inst.kind_of.dtype), np.empty(n)
            _permute_kernel(order, inst.parent_ptr, inst.parent_idx, inst.parent_data, inst.work, inst.kind_of,
                            inst.release, position, ptr, parent_pos, parent_data, work, kind, release)
            due_pos = np.sort(position[due])
            layout = _Layout(
                task_at=order, work=work, kind=kind, parent_ptr=ptr, parent_pos=parent_pos,
                parent_data=parent_data, release=release,
                pinned_start=np.ascontiguousarray(inst.pinned_start[order[:n_pinned]]),
                pinned_end=np.ascontiguousarray(inst.pinned_end[order[:n_pinned]]),
                last_pos=np.ascontiguousarray(position[last], dtype=np.int32),
                last_request=last_request,
                due_pos=np.ascontiguousarray(due_pos),
                due=np.ascontiguousarray(inst.deadline[order[due_pos]]),
            )
            if len(self._layouts) >= self._MAX_LAYOUTS:
                self._layouts.pop(next(iter(self._layouts)))
            self._layouts[key] = layout
        return layout

    def _arrays(self, layout: _Layout):
        inst = self.instance
        return (layout.task_at, layout.work, layout.kind, self._rate, self._overhead, layout.parent_ptr, layout.parent_pos,
                layout.parent_data, self._node_tag, self._node_col, self._link, self._same_class, layout.release,
                inst.available_from, layout.pinned_start, layout.pinned_end, layout.last_pos, layout.last_request,
                layout.due_pos, layout.due, inst.request_release, inst.request_deadline, inst.request_priority,
                inst.busy_power, inst.idle_power, inst.cost_rate, self._slots, self._slot_ptr)

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
        if order.ndim == 1:
            by_group, group_ptr = np.arange(assign.shape[0], dtype=np.int64), np.array([0, assign.shape[0]])
        else:
            by_group, group_ptr = _group_rows(order)
        out = np.empty((assign.shape[0], len(STATS)))
        for g in range(group_ptr.shape[0] - 1):
            rows = by_group[group_ptr[g]:group_ptr[g + 1]]
            layout = self._layout(order if order.ndim == 1 else order[rows[0]])
            if self.parallel:
                chunks = min(-(-len(rows) // LANES), 4 * numba.get_num_threads())
                _evaluate_kernel_parallel(chunks, rows, assign, *self._arrays(layout), out)
            else:
                _evaluate_kernel(rows, assign, *self._arrays(layout), out)
        self._count_moves(assign, out)
        self.evaluations += assign.shape[0]
        return out

    def _count_moves(self, assign: np.ndarray, out: np.ndarray) -> None:
        previous = self.instance.previous_node
        known = previous >= 0
        out[:, STAT_INDEX["moved"]] = (assign[:, known] != previous[known]).sum(axis=1) if known.any() else 0.0

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
        (task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag, node_col, link, same_class,
         release, available_from, pinned_start, pinned_end, *rest) = self._arrays(layout)
        tag, used = np.empty(n * LANES, dtype=np.uint64), np.empty(m * LANES, dtype=np.bool_)
        start, end, busy = np.empty(n * LANES), np.empty(n * LANES), np.empty(m * LANES)
        plans = np.ascontiguousarray(np.broadcast_to(plan.assignment, (LANES, n)))
        last_pos, last_request, due_pos, due, *per_request_and_node, slot_ptr = rest
        decode = (_decode_lanes, ()) if slot_ptr is None else (_decode_slotted, (slot_ptr,))
        decode[0](plans, task_at, work, kind, rate, overhead, parent_ptr, parent_pos, parent_data, node_tag, node_col, link,
                  same_class, release, available_from, pinned_start, pinned_end, tag, start, end,
                  np.empty(len(inst.slot_nodes) * LANES), busy, used, *decode[1])
        stats = np.empty(len(STATS))
        _summarise(0, tag, end, busy, used, np.empty(len(inst.request_ids)), last_pos,
                   last_request, due_pos, due, parent_ptr, parent_pos, node_col, link, *per_request_and_node, stats)
        self._count_moves(plans[:1], stats[None, :])
        self.evaluations += 1
        start_t, end_t = np.empty(n), np.empty(n)
        start_t[layout.task_at] = start[::LANES]
        end_t[layout.task_at] = end[::LANES]
        return Schedule(plan=plan, start=start_t, end=end_t, busy=busy[::LANES].copy(), stats=stats)

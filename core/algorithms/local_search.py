"""Insertion decoding and a short makespan local search on plans (the memetic step of NSGA-II).

Insertion decoding places the tasks of a plan in a priority order (a topological order), each
on its node at the earliest idle gap that starts after its inputs arrive and holds it, as HEFT
does, instead of after the node's last task. ``plan_from_schedule`` turns such a schedule into
an append-only plan for the shared evaluator: the tasks by start time (ties by end, then by
priority), each on its node. Decoded append-style in that order a task starts no later than
in the insertion schedule (by induction: its node's previous task and its parents end no
later), and an insertion decode of a plan in its own order starts every task no later than
the evaluator's decode of it; so the evaluator scores the result no worse than the input.

``improve`` is the local search: from a plan, an insertion decode, then an earliest-finish
re-placement of every task in the plan's order (HEFT's rule with this priority list), then
critical-path moves (a task on the longest chain of the schedule moved to another eligible
node, kept when the insertion makespan drops, until no such move helps), within a budget of
decodes (the last decode of the result may come on top). Pinned tasks keep
their node and times, and a node is free from its ``available_from`` and after its pinned tasks,
as in the evaluator. The makespans here are insertion makespans, an upper bound of what the
evaluator computes for the plan returned; every plan is scored by the evaluator.

On a cluster where some node has several slots, the search runs on the instance's slots as
machines of their own (``Instance.slot_instance``): a plan's tasks start on the slots the
evaluator gives them (``slot_assignment``), moves go between slots, and the plan returned names
each slot's node. The evaluator may then pick other slots of a node, so there the insertion
makespan is an estimate, not a bound.
"""

from __future__ import annotations

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import data_ready, on_nodes
from apportion.core.algorithms.heft import schedule_order
from apportion.core.evaluate import Evaluator, Plan, link_arrays
from apportion.core.model import Instance


@jit
def _touching_point(j, ready, n, start, end, prv, nxt, tail):
    """(start, element after which) of a zero-length task on node j: ``ready`` unless a task
    runs across it, else the end of that task. Node j's timeline is a list of its tasks in
    time order, from the sentinel ``n + j`` (whose end is when the node becomes free) to
    ``tail[j]``."""
    x = tail[j]
    while x < n and end[x] > ready:  # back to the last task ending by ``ready`` (or the sentinel)
        x = prv[x]
    s = max(ready, end[x])
    y = nxt[x]
    while y != -1 and s > start[y]:
        x = y
        s = max(ready, end[x])
        y = nxt[x]
    return s, x


@jit
def _earliest_gap(j, ready, d, n, start, end, nxt, prv, tail, gaps, gap_head, gap_of):
    """(start, element after which, gap) of the earliest idle gap on node j at or after
    ``ready`` that holds ``d`` seconds. Each node keeps its idle gaps of positive length in
    time order (the last one endless), so the scan skips runs of tasks that touch; a
    zero-length task may also sit where two tasks touch, found on the task list."""
    if d == 0.0:
        s, x = _touching_point(j, ready, n, start, end, prv, nxt, tail)
        return s, x, gap_of[x]
    g = gap_head[j]
    while True:
        s = max(ready, gaps[g, 0])
        if s + d <= gaps[g, 1]:
            return s, np.int64(gaps[g, 2]), g
        g = np.int64(gaps[g, 3])


# Complexity: the four ways a task splits the gap it lands in.
@jit
def _place(t, j, s, d, after, g, n, start, end, nxt, prv, tail, gaps, gap_head, gap_of, n_gaps):  # noqa: C901
    """Put task t on node j at ``s`` after element ``after``, in gap ``g`` (-1 where two
    tasks touch), splitting the gap; returns the count of gap records in use."""
    e = s + d
    start[t], end[t] = s, e
    y = nxt[after]
    nxt[t], prv[t] = y, after
    nxt[after] = t
    if y == -1:
        tail[j] = t
    else:
        prv[y] = t
    gap_of[t] = -1
    if g == -1:
        return n_gaps
    left, right = s > gaps[g, 0], gaps[g, 1] > e
    if left and right:  # a new gap from e, after t, follows g
        h = n_gaps
        n_gaps += 1
        gaps[h, 0], gaps[h, 1], gaps[h, 2], gaps[h, 3], gaps[h, 4] = e, gaps[g, 1], t, gaps[g, 3], g
        if gaps[g, 3] >= 0:
            gaps[np.int64(gaps[g, 3]), 4] = h
        gaps[g, 1], gaps[g, 3] = s, h
        gap_of[t] = h
    elif left:
        gaps[g, 1] = s
    elif right:  # g now starts at e, after t
        gaps[g, 0], gaps[g, 2] = e, t
        gap_of[after], gap_of[t] = -1, g
    else:  # filled: unlink g
        nx, pv = np.int64(gaps[g, 3]), np.int64(gaps[g, 4])
        if pv >= 0:
            gaps[pv, 3] = nx
        else:
            gap_head[j] = nx
        if nx >= 0:
            gaps[nx, 4] = pv
        gap_of[after] = -1
    return n_gaps


@jit
def _insertion_decode(priority, assign, choose, duration, eligible, parent_ptr, parent_idx, parent_data, latency,
                      inv_bw, release, node_free, pinned_node, pinned_start, pinned_end, start, end, nxt, prv, tail,
                      gaps, gap_head, gap_of):
    """Insertion-decode the tasks in ``priority`` order on their nodes in ``assign`` or, with
    ``choose``, each on the eligible node where it finishes earliest (lowest index on ties),
    written to ``assign``. ``start``/``end``/``nxt``/``prv``/``gap_of`` have n + m entries (the
    sentinels' end: when the node is free); ``gaps`` (n + m, 5) holds the idle gaps' start, end,
    element after which, next and previous gap. Returns the makespan."""
    n, m = duration.shape
    for j in range(m):
        end[n + j] = node_free[j]
        nxt[n + j] = -1
        tail[j] = n + j
        gaps[j, 0], gaps[j, 1], gaps[j, 2], gaps[j, 3], gaps[j, 4] = node_free[j], np.inf, n + j, -1, -1
        gap_head[j] = j
        gap_of[n + j] = j
    n_gaps = m
    makespan = 0.0
    for t in priority:
        if pinned_node[t] >= 0:
            start[t], end[t] = pinned_start[t], pinned_end[t]
        else:
            best_j, best_s, best_after, best_gap = -1, np.inf, -1, -1
            lo, hi = (0, m) if choose else (assign[t], assign[t] + 1)
            for j in range(lo, hi):
                if not eligible[t, j]:
                    continue
                ready = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
                s, a, g = _earliest_gap(j, ready, duration[t, j], n, start, end, nxt, prv, tail, gaps, gap_head,
                                        gap_of)
                if best_j == -1 or s + duration[t, j] < best_s + duration[t, best_j]:
                    best_j, best_s, best_after, best_gap = j, s, a, g
            assign[t] = best_j
            n_gaps = _place(t, best_j, best_s, duration[t, best_j], best_after, best_gap, n, start, end, nxt, prv,
                            tail, gaps, gap_head, gap_of, n_gaps)
        makespan = max(makespan, end[t])
    return makespan


@jit
def _critical_tasks(assign, start, end, n, prv, parent_ptr, parent_idx, parent_data, latency, inv_bw, pinned_node,
                    out):
    """Write the tasks of the schedule's longest chain to ``out`` (last first), back from the
    last task to end: each one's predecessor is a parent whose data arrives exactly at its
    start, else the task before it on its node if that ends exactly then. Returns the count."""
    count = 0
    t = -1
    for u in range(n):
        if t == -1 or end[u] > end[t]:
            t = u
    while t != -1 and count < n:
        if pinned_node[t] >= 0:  # fixed times: the chain ends here
            break
        out[count] = t
        count += 1
        s, j, pred = start[t], assign[t], -1
        for e in range(parent_ptr[t], parent_ptr[t + 1]):
            p = parent_idx[e]
            if end[p] + (latency[assign[p], j] + parent_data[e] * inv_bw[assign[p], j]) == s:
                pred = p
                break
        if pred == -1 and prv[t] < n and end[prv[t]] == s:
            pred = prv[t]
        t = pred
    return count


# Complexity: one search loop over the critical tasks and their nodes, with its decode arrays.
@jit
def _improve_kernel(priority, assign, budget, rotate, duration, eligible, parent_ptr, parent_idx,  # noqa: C901
                    parent_data, latency, inv_bw, release, node_free, pinned_node, pinned_start, pinned_end, start,
                    end, nxt, prv, tail, gaps, gap_head, gap_of):
    """The local search of the module docstring on ``assign`` (changed in place; ``start`` and
    ``end`` then hold its insertion schedule). ``rotate`` in [0, 1) picks where the scan of
    critical tasks and nodes starts. Returns (makespan, decodes used)."""
    n, m = duration.shape
    args = (duration, eligible, parent_ptr, parent_idx, parent_data, latency, inv_bw, release, node_free,
            pinned_node, pinned_start, pinned_end)
    best = _insertion_decode(priority, assign, False, *args, start, end, nxt, prv, tail, gaps, gap_head, gap_of)
    used = 1
    fresh = True  # whether start, end and the timelines are assign's schedule
    trial = assign.copy()
    if used < budget:
        used += 1
        makespan = _insertion_decode(priority, trial, True, *args, start, end, nxt, prv, tail, gaps, gap_head, gap_of)
        fresh = makespan < best
        if fresh:
            best = makespan
            assign[:] = trial
    critical = np.empty(n, dtype=np.int64)
    improved = True
    while improved and used < budget:
        improved = False
        if not fresh:
            trial[:] = assign
            used += 1
            _insertion_decode(priority, trial, False, *args, start, end, nxt, prv, tail, gaps, gap_head, gap_of)
        count = _critical_tasks(assign, start, end, n, prv, parent_ptr, parent_idx, parent_data, latency, inv_bw,
                                pinned_node, critical)
        first = int(rotate * count)
        for i in range(count):
            t = critical[(first + i) % count]
            home = assign[t]
            for k in range(1, m):
                j = (home + k) % m
                if not eligible[t, j] or used >= budget:
                    continue
                trial[:] = assign
                trial[t] = j
                used += 1
                makespan = _insertion_decode(priority, trial, False, *args, start, end, nxt, prv, tail, gaps, gap_head, gap_of)
                fresh = makespan < best
                if fresh:
                    best = makespan
                    assign[t] = j
                    improved = True
                    break
            if improved or used >= budget:
                break
    if not fresh:
        trial[:] = assign
        used += 1
        _insertion_decode(priority, trial, False, *args, start, end, nxt, prv, tail, gaps, gap_head, gap_of)
    return best, used


def slot_assignment(instance: Instance, plan: Plan) -> np.ndarray:
    """The slot (a machine of ``instance.slot_instance``) the evaluator runs each task of
    ``plan`` on: in dispatch order (pinned tasks first, by start), of its node's slots free by
    its start the one free last, lowest on ties (the evaluator's rule, read off its start)."""
    inst = instance
    if inst.slot_ptr is None:  # a slot per node: the slots are the nodes
        return plan.assignment.copy()
    sched = Evaluator(inst).schedule(plan)
    pinned = inst.pinned_node >= 0
    order = plan.order[~pinned[plan.order]]
    head = plan.order[pinned[plan.order]]
    head = head[np.argsort(inst.pinned_start[head], kind="stable")]
    free = np.full(len(inst.slot_nodes), -np.inf)
    slot = np.empty(inst.n_tasks, dtype=np.int32)
    for k, t in enumerate(np.concatenate([head, order]).tolist()):
        if k == len(head):  # as in the evaluator: a node's slots are free from its available_from on
            free = np.maximum(free, inst.available_from[inst.slot_nodes])
        lo, hi = inst.slot_ptr[plan.assignment[t]], inst.slot_ptr[plan.assignment[t] + 1]
        span = free[lo:hi]
        idle = np.flatnonzero(span <= sched.start[t])
        i = int(idle[np.argmax(span[idle])]) if idle.size else int(np.argmin(span))
        slot[t] = lo + i
        span[i] = max(span[i], sched.end[t])
    return slot


class LocalSearch:
    """Insertion decoding and the local search of the module docstring on one instance."""

    def __init__(self, instance: Instance):
        self.instance = instance
        instance = instance.slot_instance  # the instance itself when no node has several slots
        latency, inv_bw = link_arrays(instance)
        inst = instance
        pinned = inst.pinned_node >= 0
        node_free = inst.available_from.astype(np.float64).copy()
        for t in np.flatnonzero(pinned).tolist():  # the evaluator starts free tasks after pinned ones
            node_free[inst.pinned_node[t]] = max(node_free[inst.pinned_node[t]], inst.pinned_end[t])
        self._arrays = (np.ascontiguousarray(inst.duration), inst.eligible, inst.parent_ptr, inst.parent_idx,
                        inst.parent_data, latency, inv_bw, inst.release, node_free, inst.pinned_node,
                        inst.pinned_start, inst.pinned_end)
        n, m = inst.n_tasks, inst.n_nodes
        self._start, self._end = np.empty(n + m), np.empty(n + m)
        self._nxt, self._prv = np.empty(n + m, dtype=np.int64), np.empty(n + m, dtype=np.int64)
        self._tail = np.empty(m, dtype=np.int64)
        self._gaps = np.empty((n + m, 5))  # start, end, element after which, next, previous gap
        self._gap_head, self._gap_of = np.empty(m, dtype=np.int64), np.empty(n + m, dtype=np.int64)
        self.decodes = 0

    def _work(self):
        return (self._start, self._end, self._nxt, self._prv, self._tail, self._gaps, self._gap_head,
                self._gap_of)

    def _check(self, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        n = self.instance.n_tasks
        if plan.assignment.shape != (n,) or plan.order.shape != (n,):
            raise ValueError(f"plan must have an assignment and an order of {n} tasks")
        return slot_assignment(self.instance, plan), plan.order

    def _plan(self, assign: np.ndarray, priority: np.ndarray) -> Plan:
        n = self.instance.n_tasks
        plan = Plan(assign, schedule_order(self._start[:n], self._end[:n], priority))
        return plan if self.instance.slot_ptr is None else on_nodes(self.instance, plan)

    def insertion_plan(self, plan: Plan, *, choose_nodes: bool = False) -> tuple[Plan, float]:
        """(the append-only plan of ``plan``'s insertion schedule, its insertion makespan);
        with ``choose_nodes`` each task goes to its earliest-finish eligible node instead,
        taken in ``plan.order``."""
        assign, priority = self._check(plan)
        makespan = _insertion_decode(priority, assign, choose_nodes, *self._arrays, *self._work())
        self.decodes += 1
        return self._plan(assign, priority), float(makespan)

    def improve(self, plan: Plan, budget: int, rotate: float = 0.0) -> tuple[Plan, float]:
        """(a plan the evaluator scores no slower than ``plan``, its insertion makespan), by
        the local search of the module docstring within ``budget`` decodes (at least 1)."""
        assign, priority = self._check(plan)
        makespan, used = _improve_kernel(priority, assign, max(1, int(budget)), float(rotate), *self._arrays,
                                         *self._work())
        self.decodes += int(used)
        return self._plan(assign, priority), float(makespan)


class MemeticStep:
    """Each generation, the local search on the fastest plan of the run's Pareto archive that
    it has not improved yet; the result joins the generation's children (``ArrayNSGA2``).

    A search that does not beat its plan's makespan makes the next ones wait: after k misses
    in a row, 2**k - 1 generations pass (at most ``MAX_WAIT``) without one, unless a new
    fastest plan has entered the archive. Most late searches miss (on bench_saga's instances
    fewer than one in eight of the last 150 beat their plan), so this keeps the searches that
    count at a fraction of the cost.

    :param budget: decodes per search; at 1,000 tasks a decode costs about as much as
        scoring three to four plans.
    """

    MAX_WAIT = 16

    def __init__(self, codec, archive, makespan_column: int, budget: int):
        self.codec = codec
        self.archive = archive
        self.column = makespan_column
        self.budget = budget
        self.search = LocalSearch(codec.instance)
        self._tried: set[bytes] = set()
        self._misses = 0
        self._wait = 0

    def propose(self, rng: np.random.Generator) -> np.ndarray:
        """(0 or 1, genes): the improved chromosome of the fastest untried archive plan."""
        archive = self.archive
        empty = np.empty((0, self.codec.n_genes), dtype=np.int32)
        if not len(archive):
            return empty
        by_makespan = np.argsort(archive.stats[:, self.column], kind="stable").tolist()
        if self._wait and archive.row(by_makespan[0]).tobytes() in self._tried:
            self._wait -= 1
            return empty
        for i in by_makespan:
            row = archive.row(i)
            key = row.tobytes()
            if key not in self._tried:
                self._tried.add(key)
                plan, makespan = self.search.improve(self.codec.decode(row), self.budget, rng.random())
                self._misses = 0 if makespan < archive.stats[i, self.column] else self._misses + 1
                self._wait = min(2 ** self._misses - 1, self.MAX_WAIT)
                return self.codec.encode(plan)[None, :]
        return empty

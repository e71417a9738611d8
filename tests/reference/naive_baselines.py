"""Plain-Python references for the constructive baselines: the cost model's data-ready time,
a decoder replay, and each placement rule written out directly."""

from __future__ import annotations

import math

import numpy as np

from apportion.core.algorithms import get_allocator
from apportion.core.evaluate import Plan
from apportion.core.model import Instance


def transfer(inst: Instance, data: float, src: int, dst: int) -> float:
    if src == dst:
        return 0.0
    if not math.isfinite(inst.inv_bandwidth[src, dst]):
        return math.inf
    return inst.latency[src, dst] + data * inst.inv_bandwidth[src, dst]


def parents(inst: Instance, t: int):
    for e in range(inst.parent_ptr[t], inst.parent_ptr[t + 1]):
        yield int(inst.parent_idx[e]), float(inst.parent_data[e])


def data_ready(inst: Instance, t: int, j: int, assign, end) -> float:
    """Plain-Python cost model: when ``t``'s release passed and its inputs are at node ``j``."""
    ready = float(inst.release[t])
    for p, data in parents(inst, t):
        ready = max(ready, end[p] + transfer(inst, data, int(assign[p]), j))
    return ready


def candidates(inst: Instance, t: int, assign, end) -> list[int]:
    eligible = [j for j in range(inst.n_nodes) if inst.eligible[t, j]]
    reachable = [j for j in eligible if math.isfinite(data_ready(inst, t, j, assign, end))]
    return reachable or eligible


def replay(inst: Instance, plan: Plan):
    """Walk a plan as the decoder would, yielding the state before each placement:
    (task, node, tasks ready then, node free times, node busy times, end times so far)."""
    n, m = inst.n_tasks, inst.n_nodes
    end = [0.0] * n
    free = [0.0] * m
    busy = [0.0] * m
    waiting = np.diff(inst.parent_ptr).tolist()
    ready = {t for t in range(n) if waiting[t] == 0}
    for t in plan.order.tolist():
        j = int(plan.assignment[t])
        assert t in ready, f"task {t} dispatched before its parents"
        yield t, j, sorted(ready), list(free), list(busy), end
        s = max(free[j], data_ready(inst, t, j, plan.assignment, end))
        end[t] = s + inst.duration[t, j]
        free[j] = end[t]
        busy[j] += inst.duration[t, j]
        ready.remove(t)
        for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]].tolist():
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.add(c)


def first_argmin(values: dict[int, float]) -> int:
    """Lowest key among the smallest values (values are keyed by node, in node order)."""
    best = min(values.values())
    return min(j for j, v in values.items() if v == best)


def finish_times(inst, t, free, assign, end) -> dict[int, float]:
    return {j: max(free[j], data_ready(inst, t, j, assign, end)) + inst.duration[t, j]
            for j in candidates(inst, t, assign, end)}


def appending_reference(inst: Instance, name: str, seed: int = 0, **options) -> Plan:
    """Plain-Python reference of the baselines that append tasks to node queues (the compiled
    list-scheduling kernel must match it exactly): task order, candidate nodes, placement rule."""
    n, m = inst.n_tasks, inst.n_nodes
    allocator = get_allocator(name, **options)
    assign = np.full(n, -1, dtype=np.int32)
    end, free, busy, order = [0.0] * n, [0.0] * m, [0.0] * m, []
    draws = np.random.default_rng(seed).random(n)
    key = {"greedy": lambda t: -inst.priority[t], "shortest-first": lambda t: inst.duration[t].min()}.get(name)
    speed = [node.speed for node in inst.cluster.nodes]
    waiting = np.diff(inst.parent_ptr).tolist()
    queued = {t for t in range(n) if waiting[t] == 0}
    topo = iter(inst.topo_order.tolist())
    cursor = 0

    def normalised(values: dict[int, float]) -> dict[int, float]:
        finite = [v for v in values.values() if math.isfinite(v)]
        top = max(finite, default=0.0)
        return {k: (v / top if top > 0 else 0.0) if math.isfinite(v) else 1.0 for k, v in values.items()}

    for _ in range(n):
        t = min(queued, key=lambda r: (key(r), r)) if key else next(topo)
        ready = {j: data_ready(inst, t, j, assign, end) for j in range(m)}
        eligible = [j for j in range(m) if inst.eligible[t, j]]
        nodes = ([j for j in eligible if inst.viable[t, j] and math.isfinite(ready[j])]
                 or [j for j in eligible if math.isfinite(ready[j])] or eligible)
        d = {j: float(inst.duration[t, j]) for j in nodes}
        finish = {j: max(free[j], ready[j]) + d[j] for j in nodes}
        # The rules that take the candidate of smallest value, by name.
        smallest = {"shortest-first": finish, "mct": finish, "met": d, "olb": {k: free[k] for k in nodes},
                    "fastest-node": {k: -speed[k] for k in nodes}, "least-loaded": {k: busy[k] for k in nodes}}
        if name in smallest:
            j = first_argmin(smallest[name])
        elif name == "random":
            j = nodes[int(draws[t] * len(nodes))]
        elif name == "round-robin":
            j = min(nodes, key=lambda k: (k - cursor) % m)
            cursor = (j + 1) % m
        elif name == "greedy":
            left = {k: allocator.capacity(inst) - busy[k] - d[k] for k in nodes}
            fitting = {k: v for k, v in left.items() if v >= 0}
            j = first_argmin(fitting) if fitting else first_argmin({k: -v for k, v in left.items()})
        else:
            by_time, by_load = normalised(finish), normalised({k: busy[k] + d[k] for k in nodes})
            j = first_argmin({k: allocator.time_weight * by_time[k] + allocator.load_weight * by_load[k]
                              for k in nodes})
        s = max(free[j], ready[j])
        assign[t], end[t], free[j] = j, s + d[j], s + d[j]
        busy[j] += d[j]
        order.append(t)
        queued.discard(t)
        for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]].tolist():
            waiting[c] -= 1
            if waiting[c] == 0:
                queued.add(c)
    return Plan(assign, np.asarray(order))


def batch_reference(inst: Instance, pick) -> Plan:
    """Min-min and max-min by brute force, in batches as Braun et al. (2001) and SAGA define
    them: the tasks ready at the start of a batch are all placed before their children join the
    next one. Each step recomputes every batch task's best completion (``finish_times``) and
    places the task ``pick`` chooses from {task: (completion, node)} on that node."""
    n = inst.n_tasks
    assign = np.full(n, -1, dtype=np.int32)
    end = [0.0] * n
    free = [0.0] * inst.n_nodes
    order = []
    waiting = np.diff(inst.parent_ptr).tolist()
    batch = {t for t in range(n) if waiting[t] == 0}
    while batch:
        following = set()
        while batch:
            best = {}
            for t in sorted(batch):
                finish = finish_times(inst, t, free, assign, end)
                j = first_argmin(finish)
                best[t] = (finish[j], j)
            t = pick(best)
            value, j = best[t]
            assign[t] = j
            end[t] = value
            free[j] = value
            order.append(t)
            batch.remove(t)
            for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]].tolist():
                waiting[c] -= 1
                if waiting[c] == 0:
                    following.add(c)
        batch = following
    return Plan(assign, np.asarray(order))


def min_min_reference(inst: Instance) -> Plan:
    """The task of smallest best completion (lowest index on ties)."""
    return batch_reference(inst, lambda best: min(best, key=lambda t: (best[t][0], t)))


def max_min_reference(inst: Instance) -> Plan:
    """The task of largest best completion (lowest index on ties)."""
    return batch_reference(inst, lambda best: min(best, key=lambda t: (-best[t][0], t)))


def sufferage_reference(inst: Instance) -> Plan:
    """Sufferage by brute force: every step, among all ready tasks, the one whose second-best
    completion exceeds its best by most (0 with one candidate node, or without a finite second
best; lowest index on ties), on
    its best node; a freed child is ready at once (no batches)."""
    n = inst.n_tasks
    assign = np.full(n, -1, dtype=np.int32)
    end = [0.0] * n
    free = [0.0] * inst.n_nodes
    order = []
    waiting = np.diff(inst.parent_ptr).tolist()
    ready = {t for t in range(n) if waiting[t] == 0}
    while ready:
        choice = None
        for t in sorted(ready):
            finish = finish_times(inst, t, free, assign, end)
            j = first_argmin(finish)
            values = sorted(finish.values())
            finite = len(values) > 1 and math.isfinite(values[1])  # values[1] finite: values[0] too
            loss = values[1] - values[0] if finite else 0.0
            if choice is None or loss > choice[0]:
                choice = (loss, t, j, finish[j])
        _, t, j, value = choice
        assign[t], end[t], free[j] = j, value, value
        order.append(t)
        ready.remove(t)
        for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]].tolist():
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.add(c)
    return Plan(assign, np.asarray(order))

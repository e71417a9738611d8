"""Plain-Python reference for the compiled evaluator: the cost model written out directly."""

import math


def pick_slot(free, ready):
    """The slot (index into ``free``, the times a node's slots become free) a task ready at
    ``ready`` takes: of those free by then the one free last, else the one free first; the
    lowest index on ties."""
    idle = [i for i, x in enumerate(free) if x <= ready]
    if idle:
        return max(idle, key=lambda i: (free[i], -i))
    return min(range(len(free)), key=lambda i: (free[i], i))


def naive_schedule(instance, assignment, order, slots=None):
    """Start and end per task and busy time per node, by the README's cost model.

    Re-planning: pinned tasks keep their times and are taken first (by start); other tasks
    start on a node no earlier than its ``available_from``. A node runs up to its ``slots``
    tasks at once (``pick_slot`` chooses each task's, pinned tasks' at their start before the
    node's ``available_from`` counts); ``slots`` overrides the instance's.
    """
    n, m = instance.n_tasks, instance.n_nodes
    slots = [int(k) for k in (instance.slots if slots is None else slots)]
    assignment = [int(a) for a in assignment]
    start, end = [0.0] * n, [0.0] * n
    slot_free, busy = [[-math.inf] * slots[j] for j in range(m)], [0.0] * m
    pinned = sorted((t for t in order if instance.pinned_node[t] >= 0), key=lambda t: instance.pinned_start[t])
    for t in pinned:
        j = assignment[t]
        start[t], end[t] = float(instance.pinned_start[t]), float(instance.pinned_end[t])
        i = pick_slot(slot_free[j], start[t])
        slot_free[j][i] = max(slot_free[j][i], end[t])
        busy[j] += end[t] - start[t]
    slot_free = [[max(x, float(instance.available_from[j])) for x in slot_free[j]] for j in range(m)]
    order = [t for t in order if instance.pinned_node[t] < 0]
    parents = [[] for _ in range(n)]
    for t in range(n):
        for e in range(instance.parent_ptr[t], instance.parent_ptr[t + 1]):
            parents[t].append((int(instance.parent_idx[e]), float(instance.parent_data[e])))
    for t in order:
        t = int(t)
        j = assignment[t]
        ready = float(instance.release[t])
        for p, data in parents[t]:
            pj = assignment[p]
            if pj == j:
                arrival = end[p]
            elif math.isinf(instance.inv_bandwidth[pj, j]):
                arrival = math.inf
            else:
                arrival = end[p] + (float(instance.latency[pj, j]) + data * float(instance.inv_bandwidth[pj, j]))
            ready = max(ready, arrival)
        i = pick_slot(slot_free[j], ready)
        duration = float(instance.duration[t, j])
        start[t] = max(ready, slot_free[j][i])
        end[t] = start[t] + duration
        slot_free[j][i] = end[t]
        busy[j] += duration
    return start, end, busy


def naive_stats(instance, assignment, order):
    """The evaluator's STATS row, computed the slow, obvious way. A node with k slots counts
    k times in utilisation, its busy time / k in the imbalance, and it idles for the makespan
    less busy / k."""
    start, end, busy = naive_schedule(instance, assignment, order)
    n, m = instance.n_tasks, instance.n_nodes
    slots = [int(k) for k in instance.slots]
    makespan = max(end)
    used = sorted(set(int(a) for a in assignment))
    total = sum(busy)
    per_slot = [busy[j] / slots[j] for j in range(m)]
    mean = sum(per_slot) / m
    std = math.sqrt(sum((b - mean) ** 2 for b in per_slot) / m)
    request_end = {}
    for t in range(n):
        r = int(instance.request_of[t])
        request_end[r] = max(request_end.get(r, 0.0), end[t])
    weights = [float(w) for w in instance.request_priority]
    responses = [request_end.get(r, 0.0) - float(instance.request_release[r]) for r in range(len(weights))]
    lateness = sum(end[t] - instance.deadline[t] for t in range(n) if end[t] > instance.deadline[t])
    lateness += sum(request_end.get(r, 0.0) - instance.request_deadline[r]
                    for r in range(len(weights)) if request_end.get(r, 0.0) > instance.request_deadline[r])
    energy = sum(instance.busy_power[j] * busy[j] + instance.idle_power[j] * (makespan - busy[j] / slots[j])
                 for j in used)
    cost = sum(instance.cost_rate[j] * makespan for j in used)
    moved = sum(int(assignment[t]) != instance.previous_node[t] for t in range(n) if instance.previous_node[t] >= 0)
    unroutable = 0
    if math.isinf(makespan):
        for t in range(n):
            for e in range(instance.parent_ptr[t], instance.parent_ptr[t + 1]):
                a, b = int(assignment[instance.parent_idx[e]]), int(assignment[t])
                unroutable += a != b and math.isinf(instance.inv_bandwidth[a, b])
    return [
        makespan,
        total / (sum(slots[j] for j in used) * makespan) if makespan > 0 else 1.0,
        std / mean if mean > 0 else 0.0,
        sum(w * r for w, r in zip(weights, responses, strict=True)) / sum(weights) if sum(weights) > 0 else 0.0,
        energy,
        cost,
        lateness,
        float(unroutable),
        float(moved),
    ]

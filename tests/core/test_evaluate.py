"""The compiled evaluator against the plain-Python reference, and schedule invariants."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.evaluate import STATS, Evaluator, Plan
from apportion.core.model import Cluster, Instance, Link, Node, Request
from apportion.core.synthetic import random_cluster, random_workload
from tests.reference.naive_evaluate import naive_schedule, naive_stats


def random_topological_order(instance, rng):
    """Kahn's algorithm taking a random ready task each step."""
    indeg = np.diff(instance.parent_ptr).copy()
    ready = [t for t in range(instance.n_tasks) if indeg[t] == 0]
    order = []
    while ready:
        t = ready.pop(int(rng.integers(len(ready))))
        order.append(t)
        for c in instance.child_idx[instance.child_ptr[t]:instance.child_ptr[t + 1]]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(int(c))
    return np.array(order, dtype=np.int32)


def random_assignment(instance, rng):
    return np.array([rng.choice(instance.eligible_nodes(t)) for t in range(instance.n_tasks)], dtype=np.int32)


def isolated_zone_cluster(n_nodes, seed):
    """Zones with links inside but none between them: some placements cannot talk."""
    base = random_cluster(n_nodes, seed=seed, n_zones=2)
    return Cluster(nodes=base.nodes, links=tuple(Link(z, z, 500.0, 0.001) for z in ("z0", "z1")),
                   speed_factors=base.speed_factors)


def with_overheads(cluster, seed):
    """The cluster with a per-task overhead on most nodes (0 to 2 s; some nodes keep none)."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    return replace(cluster, nodes=tuple(replace(nd, overhead=float(rng.choice([0.0, rng.uniform(0, 2)])))
                                        for nd in cluster.nodes))


def with_slots(cluster, slots):
    """The cluster with ``slots[j]`` slots on node j (nodes past the list keep 1); ``cluster``
    itself when ``slots`` is empty."""
    from dataclasses import replace

    if not slots:
        return cluster
    return replace(cluster, nodes=tuple(replace(nd, slots=slots[j] if j < len(slots) else 1)
                                        for j, nd in enumerate(cluster.nodes)))


# Slot counts 1..4 per node, or none given (every node one slot, the evaluator's one-slot path).
slot_lists = st.one_of(st.just([]), st.lists(st.integers(1, 4), min_size=1, max_size=7))

instances = st.builds(
    lambda n, density, m, zones, seed, isolated, gpu_share, deadline_share, overhead, slots: Instance.build(
        random_workload(n, int(n * density), seed=seed, n_requests=max(1, n // 7),
                        gpu_only_share=gpu_share, deadline_share=deadline_share),
        with_slots((with_overheads if overhead else lambda cluster, _: cluster)(
            isolated_zone_cluster(m, seed) if isolated and m >= 2 else random_cluster(m, seed=seed, n_zones=zones),
            seed), slots),
    ),
    n=st.integers(1, 60), density=st.floats(0, 3), m=st.integers(1, 7), zones=st.integers(1, 3),
    seed=st.integers(0, 10_000), isolated=st.booleans(), gpu_share=st.sampled_from([0.0, 0.3]),
    deadline_share=st.sampled_from([0.0, 0.5]), overhead=st.booleans(), slots=slot_lists,
)


def most_at_once(starts, ends) -> int:
    """The most of the spans [start, end) that overlap at any time (a span ending when another
    starts does not overlap it; an empty span overlaps nothing)."""
    events = sorted([(e, -1) for e in ends] + [(s, 1) for s in starts])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def replanning_state(instance, rng):
    """The same workload part-way through a random plan: what started before a random time is
    pinned, every task remembers its node, nodes take new work from that time on, and
    sometimes a node has failed. ``None`` when the random plan cannot run."""
    from dataclasses import replace

    plan = Plan(random_assignment(instance, rng), random_topological_order(instance, rng))
    sched = Evaluator(instance).schedule(plan)
    if not np.isfinite(sched.end).all():
        return None
    now = float(rng.uniform(0, sched.stat("makespan")))
    nodes = instance.cluster.nodes
    tasks = []
    for t, task in enumerate(instance.workload.tasks):
        node = nodes[plan.assignment[t]].id
        started = sched.start[t] < now
        tasks.append(replace(task, previous_node=node, pinned_node=node if started else None,
                             pinned_start=float(sched.start[t]) if started else None,
                             pinned_end=float(sched.end[t]) if started else None))
    failed = int(rng.integers(len(nodes))) if len(nodes) > 1 and rng.random() < 0.5 else -1
    cluster = replace(instance.cluster, nodes=tuple(replace(nd, available_from=now, failed=j == failed)
                                                    for j, nd in enumerate(nodes)))
    try:
        return Instance.build(replace(instance.workload, tasks=tuple(tasks)), cluster)
    except SpecError:  # the failed node was the only one some task fits
        return None


class ZoneClassEvaluator(Evaluator):
    """Large clusters' link tables (zone classes, the same-node select) on small instances."""

    _MAX_PAIR_TABLE_BYTES = 0


# Small clusters get a link table per node pair; ZoneClassEvaluator checks larger clusters' path.
evaluator_classes = pytest.mark.parametrize("evaluator_class", [Evaluator, ZoneClassEvaluator])


@evaluator_classes
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances, plan_seed=st.integers(0, 2**32 - 1), replanning=st.booleans())
def test_batch_matches_reference(evaluator_class, instance, plan_seed, replanning):
    rng = np.random.default_rng(plan_seed)
    if replanning:
        instance = replanning_state(instance, rng)
        assume(instance is not None)
    assign = np.stack([random_assignment(instance, rng) for _ in range(4)])
    orders = np.stack([random_topological_order(instance, rng) for _ in range(4)])
    got = evaluator_class(instance).stats(assign, orders)
    for i in range(4):
        want = naive_stats(instance, assign[i], orders[i])
        # Schedule-derived values are computed in the same order, so they match exactly;
        # sums over tasks may be added in another order.
        assert got[i, 0] == want[0]
        np.testing.assert_allclose(got[i], want, rtol=1e-9, atol=1e-9, err_msg=str(STATS))


@evaluator_classes
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances, plan_seed=st.integers(0, 2**32 - 1), replanning=st.booleans())
def test_schedule_is_valid_and_exact(evaluator_class, instance, plan_seed, replanning):
    rng = np.random.default_rng(plan_seed)
    if replanning:
        instance = replanning_state(instance, rng)
        assume(instance is not None)
    plan = Plan(random_assignment(instance, rng), random_topological_order(instance, rng))
    sched = evaluator_class(instance).schedule(plan)
    start, end, busy = naive_schedule(instance, plan.assignment, plan.order)
    assert np.array_equal(sched.start, start) and np.array_equal(sched.end, end)
    assert np.array_equal(sched.busy, busy)
    if not np.isfinite(sched.end).all():
        assert sched.stat("unroutable") > 0
        return
    assign = plan.assignment
    # Placement and memory rules.
    assert instance.eligible[np.arange(instance.n_tasks), assign].all()
    # Precedence, with the transfer time between different nodes.
    for t in range(instance.n_tasks):
        assert sched.start[t] >= instance.release[t]
        for e in range(instance.parent_ptr[t], instance.parent_ptr[t + 1]):
            p = instance.parent_idx[e]
            arrival = sched.end[p] + instance.transfer_time(instance.parent_data[e], assign[p], assign[t])
            assert sched.start[t] >= arrival - 1e-9
    # Re-planning: what started keeps its node and times; the rest waits for its node to take
    # new work and avoids failed nodes.
    pinned = instance.pinned_node >= 0
    assert np.array_equal(assign[pinned], instance.pinned_node[pinned])
    assert np.array_equal(sched.start[pinned], instance.pinned_start[pinned])
    assert np.array_equal(sched.end[pinned], instance.pinned_end[pinned])
    assert (sched.start[~pinned] >= instance.available_from[assign[~pinned]]).all()
    failed = np.array([nd.failed for nd in instance.cluster.nodes])
    assert not failed[assign[~pinned]].any()
    # At most its slots' tasks at a time on each node.
    for j in range(instance.n_nodes):
        on = np.flatnonzero(assign == j)
        assert most_at_once(sched.start[on], sched.end[on]) <= instance.slots[j]
        if instance.slots[j] == 1:
            spans = sorted(zip(sched.start[on], sched.end[on], strict=True))
            assert all(a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in pairwise(spans))


def test_parallel_equals_serial_and_groups_by_order():
    inst = Instance.build(random_workload(300, 900, seed=3, n_requests=5), random_cluster(8, seed=3))
    rng = np.random.default_rng(0)
    assign = np.stack([random_assignment(inst, rng) for _ in range(37)])
    pool = [random_topological_order(inst, rng) for _ in range(3)]
    orders = np.stack([pool[i % 3] for i in range(37)])
    serial = Evaluator(inst).stats(assign, orders)
    parallel = Evaluator(inst, parallel=True).stats(assign, orders)
    assert np.array_equal(serial, parallel)
    one_by_one = np.vstack([Evaluator(inst).stats(assign[i], orders[i]) for i in range(37)])
    assert np.array_equal(serial, one_by_one)


@pytest.fixture
def chain():
    from apportion.core.model import Edge, Task, Workload

    wl = Workload(tasks=(Task("a", 10.0, memory=1.0), Task("b", 10.0, memory=1.0, allowed_kinds=("gpu",))),
                  edges=(Edge("a", "b", 100.0),))
    cl = Cluster(nodes=(Node("g", "gpu", 10.0, 16.0), Node("c", "cpu", 5.0, 16.0)), default_bandwidth=50.0,
                 default_latency=0.5)
    return Instance.build(wl, cl)


def test_cost_model_by_hand(chain):
    ev = Evaluator(chain)
    # Same node: no transfer. a: 10/10 = 1 s, b: 1 s after it.
    same = ev.schedule(Plan([0, 0], [0, 1]))
    assert same.end.tolist() == [1.0, 2.0]
    # a on the CPU (10/5 = 2 s), then 0.5 s latency + 100 MB / 50 MB/s = 2.5 s transfer.
    apart = ev.schedule(Plan([1, 0], [0, 1]))
    assert apart.start.tolist() == [0.0, 4.5] and apart.end.tolist() == [2.0, 5.5]
    assert apart.stat("makespan") == 5.5
    assert apart.stat("utilization") == pytest.approx(3.0 / (2 * 5.5))


def test_check_rejects_bad_plans(chain):
    ev = Evaluator(chain)
    with pytest.raises(ValueError, match="task 'b' on node 'c'"):
        ev.stats([0, 1], [0, 1])
    with pytest.raises(ValueError, match="before its parent 'a'"):
        ev.stats([0, 0], [1, 0])
    with pytest.raises(ValueError, match="not a permutation"):
        ev.stats([0, 0], [0, 0])
    with pytest.raises(ValueError, match="outside 0..1"):
        ev.stats([0, 2], [0, 1])
    with pytest.raises(ValueError, match=r"shape \(P, 2\)"):
        ev.stats([0, 0, 0], [0, 1])


@settings(max_examples=50, deadline=None)
@given(pool=st.integers(1, 6), rows=st.integers(1, 40), n=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_group_rows_matches_grouping_by_bytes(pool, rows, n, seed):
    from apportion.core.evaluate import _group_rows

    rng = np.random.default_rng(seed)
    # Rows drawn from a small pool of orders, as NSGA-II's are.
    base = rng.permutation(n).astype(np.int32)
    candidates = np.stack([base] + [np.roll(base, i) for i in range(1, pool)])
    order = np.ascontiguousarray(candidates[rng.integers(0, pool, rows)])
    want: dict[bytes, list[int]] = {}
    for i in range(rows):
        want.setdefault(order[i].tobytes(), []).append(i)
    by_group, ptr = _group_rows(order)
    got = [by_group[ptr[g]:ptr[g + 1]].tolist() for g in range(len(ptr) - 1)]
    assert got == list(want.values())


def test_slots_run_tasks_side_by_side_and_pick_the_best_fitting_slot():
    from apportion.core.model import Task, Workload

    # On one node of 2 slots: a and b (2 s) side by side, c (1 s) when a slot frees at 2 s;
    # d, released at 3 s, finds both slots free (from 2 s and from 3 s) and takes the one free
    # last (best fit), so e (0.5 s, ready at once) still finds a slot free from 2 s.
    wl = Workload(tasks=(Task("a", 20.0), Task("b", 20.0), Task("c", 10.0), Task("d", 10.0, request="late"),
                         Task("e", 5.0)),
                  requests=(Request("late", release=3.0),))
    inst = Instance.build(wl, Cluster(nodes=(Node("n", "cpu", 10.0, 16.0, slots=2),)))
    plan = Plan([0] * 5, [0, 1, 2, 3, 4])
    sched = Evaluator(inst).schedule(plan)
    assert sched.start.tolist() == [0.0, 0.0, 2.0, 3.0, 2.0] and sched.end.tolist() == [2.0, 2.0, 3.0, 4.0, 2.5]
    assert sched.stat("makespan") == 4.0
    assert sched.stat("utilization") == pytest.approx(6.5 / (2 * 4.0))
    one_slot = Instance.build(wl, Cluster(nodes=(Node("n", "cpu", 10.0, 16.0),)))
    assert Evaluator(one_slot).schedule(plan).stat("makespan") == 6.5


def test_imbalance_is_over_busy_time_per_slot():
    from apportion.core.model import Task, Workload

    # 4 s of work on a node of 2 slots and 2 s on a node of 1: 2 s per slot on each, no imbalance.
    wl = Workload(tasks=(Task("a", 20.0), Task("b", 20.0), Task("c", 20.0)))
    inst = Instance.build(wl, Cluster(nodes=(Node("x", "cpu", 10.0, 16.0, slots=2), Node("y", "cpu", 10.0, 16.0))))
    stats = Evaluator(inst).schedule(Plan([0, 0, 1], [0, 1, 2]))
    assert stats.stat("imbalance") == 0.0 and stats.stat("utilization") == 1.0


def test_pinned_tasks_running_side_by_side_hold_their_slots():
    from apportion.core.model import Task, Workload

    # Re-planning at 1 s on a node of 2 slots: a and b started before and run until 3 s and
    # 5 s; c must wait for a's slot (3 s), not start at 1 s on a slot b holds.
    wl = Workload(tasks=(Task("a", 30.0, pinned_node="n", pinned_start=0.0, pinned_end=3.0),
                         Task("b", 50.0, pinned_node="n", pinned_start=0.5, pinned_end=5.0), Task("c", 10.0)))
    inst = Instance.build(wl, Cluster(nodes=(Node("n", "cpu", 10.0, 16.0, slots=2, available_from=1.0),)))
    sched = Evaluator(inst).schedule(Plan([0, 0, 0], [0, 1, 2]))
    assert sched.start.tolist() == [0.0, 0.5, 3.0] and sched.end.tolist() == [3.0, 5.0, 4.0]
    assert naive_schedule(inst, [0, 0, 0], [0, 1, 2])[0] == [0.0, 0.5, 3.0]


def test_slotted_batch_parallel_equals_serial_and_one_by_one():
    inst = Instance.build(random_workload(200, 500, seed=4, n_requests=5),
                          with_slots(random_cluster(6, seed=4), [2, 1, 3, 4, 1, 2]))
    rng = np.random.default_rng(1)
    assign = np.stack([random_assignment(inst, rng) for _ in range(13)])
    orders = np.stack([random_topological_order(inst, rng) for _ in range(13)])
    serial = Evaluator(inst).stats(assign, orders)
    assert np.array_equal(serial, Evaluator(inst, parallel=True).stats(assign, orders))
    schedules = [Evaluator(inst).schedule(Plan(assign[i], orders[i])) for i in range(13)]
    assert np.array_equal(serial, np.vstack([s.stats for s in schedules]))

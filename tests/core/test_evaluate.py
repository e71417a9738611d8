"""The compiled evaluator against the plain-Python reference, and schedule invariants."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.evaluate import STATS, Evaluator, Plan
from apportion.core.model import Cluster, Instance, Link, Node
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


instances = st.builds(
    lambda n, density, m, zones, seed, isolated, gpu_share, deadline_share, overhead: Instance.build(
        random_workload(n, int(n * density), seed=seed, n_requests=max(1, n // 7),
                        gpu_only_share=gpu_share, deadline_share=deadline_share),
        (with_overheads if overhead else lambda cluster, _: cluster)(
            isolated_zone_cluster(m, seed) if isolated and m >= 2 else random_cluster(m, seed=seed, n_zones=zones),
            seed),
    ),
    n=st.integers(1, 60), density=st.floats(0, 3), m=st.integers(1, 7), zones=st.integers(1, 3),
    seed=st.integers(0, 10_000), isolated=st.booleans(), gpu_share=st.sampled_from([0.0, 0.3]),
    deadline_share=st.sampled_from([0.0, 0.5]), overhead=st.booleans(),
)


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
    # One task at a time on each node.
    for j in range(instance.n_nodes):
        on = np.flatnonzero(assign == j)
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

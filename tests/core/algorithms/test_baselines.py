"""Baseline allocators: valid plans, their defining rules, the compiled kernels against
plain-Python references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms import algorithm_names, get_allocator
from apportion.core.algorithms.baselines import (
    BASELINES,
    GreedyAllocator,
    LeastLoadedAllocator,
    MinMinAllocator,
    RandomAllocator,
    RoundRobinAllocator,
    ShortestFirstAllocator,
    WeightedBalanceAllocator,
    baseline_plans,
)
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, STATS, Evaluator
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Task, Workload
from tests.core.algorithms.instances import SHAPES, independent, make_cluster, make_instance
from tests.reference.naive_baselines import (
    appending_reference,
    candidates,
    finish_times,
    first_argmin,
    min_min_reference,
    replay,
)

NAMES = [cls.name for cls in BASELINES]
# The heuristics outside BASELINES: those that scan the ready tasks (list_heuristics.py), and fastest-node.
OTHERS = ["max-min", "sufferage", "duplex", "fastest-node"]


# --- every baseline ------------------------------------------------------------------------------


def test_all_baselines_registered_and_buildable_by_name():
    assert set(NAMES) <= set(algorithm_names())
    assert len(NAMES) == 11
    assert set(OTHERS) <= set(algorithm_names())
    for name in NAMES + OTHERS:
        assert get_allocator(name).name == name


@pytest.mark.parametrize("name", NAMES + OTHERS)
@pytest.mark.parametrize("shape,m", [("random", 6), ("uniform", 3), ("split", 4), ("single", 1)])
def test_plan_is_valid_scored_and_deterministic(name, shape, m):
    inst = make_instance(80, 160, m, seed=3, shape=shape, requests=3, gpu_only=0.2)
    ev = Evaluator(inst)
    reports = []
    result = get_allocator(name).allocate(ev, seed=5, progress=lambda step, info: reports.append((step, info)))
    assert reports == [(1, {s: float(v) for s, v in zip(STATS, result.stats[0], strict=True)})]
    assert result.algorithm == name and len(result.plans) == 1 and result.evaluations == 1
    plan = result.plans[0]
    assert inst.eligible[np.arange(inst.n_tasks), plan.assignment].all()
    ev.check(plan.assignment[None, :], plan.order[None, :])  # eligible nodes, topological order
    np.testing.assert_array_equal(result.stats, ev.stats(plan.assignment, plan.order))
    again = get_allocator(name).allocate(Evaluator(inst), seed=5).plans[0]
    np.testing.assert_array_equal(plan.assignment, again.assignment)
    np.testing.assert_array_equal(plan.order, again.order)


@pytest.mark.parametrize("name", NAMES + OTHERS)
def test_avoids_nodes_without_a_link_to_the_parent(name):
    # An out-tree (one parent per task) on two zones with no link between them: every task
    # can always join its parent's zone, so a plan that crosses zones is the baseline's fault.
    tasks = tuple(Task(f"t{i}", work=5.0 + i % 7) for i in range(40))
    edges = tuple(Edge(f"t{(i - 1) // 2}", f"t{i}", data=3.0) for i in range(1, 40))
    inst = Instance.build(Workload(tasks=tasks, edges=edges), make_cluster("split", 6, seed=1))
    assert not np.isfinite(inst.inv_bandwidth).all()
    ev = Evaluator(inst)
    stats = get_allocator(name).allocate(ev).stats[0]
    assert stats[STAT_INDEX["unroutable"]] == 0
    assert np.isfinite(stats[STAT_INDEX["makespan"]])


@pytest.mark.parametrize("name", NAMES + OTHERS)
def test_unavoidable_unroutable_plan_is_still_valid(name):
    # Every edge alone is routable and every node of every task has a partner along each edge
    # (so Instance.build accepts it), but no placement routes all three: a on x1 forces b on
    # x2, hence c on y3, which x1 cannot reach (and symmetrically from y1).
    nodes = tuple(Node(f"{side}{k}", f"k{k}", 10.0, 8.0) for k in (1, 2, 3) for side in "xy")
    pairs = (("x1", "x2"), ("y1", "y2"), ("x2", "y3"), ("y2", "x3"), ("x1", "x3"), ("y1", "y3"))
    cluster = Cluster(nodes=nodes, links=tuple(Link(a, b, 10.0) for a, b in pairs))
    tasks = tuple(Task(name, 1.0, allowed_kinds=(f"k{k}",)) for k, name in enumerate("abc", start=1))
    edges = (Edge("a", "b", 1.0), Edge("b", "c", 1.0), Edge("a", "c", 1.0))
    inst = Instance.build(Workload(tasks=tasks, edges=edges), cluster)
    result = get_allocator(name).allocate(Evaluator(inst))
    assert result.stats[0, STAT_INDEX["unroutable"]] == 1


def test_baseline_plans_runs_every_baseline():
    inst = make_instance(50, 90, 5, seed=4)
    ev = Evaluator(inst)
    plans = baseline_plans(ev, seed=2)
    assert sorted(plans) == sorted(NAMES + ["max-min", "sufferage"])  # 50 tasks: the scanning ones fit
    for name, plan in plans.items():
        ev.check(plan.assignment[None, :], plan.order[None, :])
        reference = get_allocator(name).allocate(ev, seed=2).plans[0]
        np.testing.assert_array_equal(plan.assignment, reference.assignment)


APPENDING = [("random", {}), ("round-robin", {}), ("greedy", {}), ("greedy", dict(slack=0.3)),
             ("least-loaded", {}), ("shortest-first", {}), ("weighted-balance", {}),
             ("weighted-balance", dict(time_weight=0.2, load_weight=0.9)),
             ("mct", {}), ("met", {}), ("olb", {}), ("fastest-node", {})]


@pytest.mark.parametrize("name,options", APPENDING)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), density=st.floats(0.0, 2.5),
       m=st.integers(1, 6), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3),
       zero_work=st.sampled_from([0.0, 0.5]))
def test_compiled_baselines_match_the_python_reference(name, options, seed, n, density, m, shape, requests,
                                                       zero_work):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests, zero_work=zero_work,
                             gpu_only=0.15)
    except SpecError:
        assume(False)
    plan = get_allocator(name, **options).build(inst, seed)
    reference = appending_reference(inst, name, seed, **options)
    np.testing.assert_array_equal(plan.order, reference.order)
    np.testing.assert_array_equal(plan.assignment, reference.assignment)


# --- random and round-robin ------------------------------------------------------------------------


def test_random_depends_on_the_seed_and_uses_every_node():
    inst = independent(400, 5)
    a = RandomAllocator().build(inst, seed=0).assignment
    b = RandomAllocator().build(inst, seed=1).assignment
    assert not np.array_equal(a, b)
    counts = np.bincount(a, minlength=5)
    assert counts.min() > 40  # uniform: 80 expected per node


def test_round_robin_spreads_evenly_and_skips_ineligible_nodes():
    plan = RoundRobinAllocator().build(independent(12, 4))
    np.testing.assert_array_equal(plan.assignment, np.tile(np.arange(4), 3))
    # gpu-only tasks skip the cpu nodes; the cycle then continues after the chosen node.
    cluster = Cluster(nodes=(Node("c0", "cpu", 10.0, 8.0), Node("g1", "gpu", 10.0, 8.0), Node("c2", "cpu", 10.0, 8.0)))
    tasks = tuple(Task(f"t{i}", 1.0, allowed_kinds=("gpu",) if i == 2 else None) for i in range(5))
    plan = RoundRobinAllocator().build(Instance.build(Workload(tasks=tasks), cluster))
    np.testing.assert_array_equal(plan.assignment, [0, 1, 1, 2, 0])


# --- greedy -----------------------------------------------------------------------------------------


def test_greedy_takes_ready_tasks_by_priority():
    inst = make_instance(60, 100, 4, seed=6)
    plan = GreedyAllocator().build(inst)
    for t, _, ready, *_ in replay(inst, plan):
        assert t == min(ready, key=lambda r: (-inst.priority[r], r))
    priorities = [2, 5, 1, 5, 3, 4]
    plan = GreedyAllocator().build(independent(6, 2, priorities=priorities))
    np.testing.assert_array_equal(plan.order, [1, 3, 5, 4, 0, 2])


def test_greedy_best_fit_against_the_remaining_capacity():
    inst = make_instance(60, 100, 5, seed=7, gpu_only=0.2)
    greedy = GreedyAllocator(slack=1.3)
    # No zero-work tasks here; ineligible nodes have infinite duration, i.e. rate 0.
    capacity = 1.3 * sum(1.0 / sum(1.0 / d for d in row) for row in inst.duration.tolist())
    assert greedy.capacity(inst) == pytest.approx(capacity)
    plan = greedy.build(inst)
    fits_seen = overflow_seen = False
    for t, j, _, _, busy, end in replay(inst, plan):
        left = {k: greedy.capacity(inst) - busy[k] - inst.duration[t, k]
                for k in candidates(inst, t, plan.assignment, end)}
        fitting = {k: v for k, v in left.items() if v >= 0}
        if fitting:
            fits_seen = True
            assert j == first_argmin(fitting)
        else:
            overflow_seen = True
            assert j == first_argmin({k: -v for k, v in left.items()})
    assert fits_seen and overflow_seen


def test_greedy_rejects_bad_slack():
    with pytest.raises(SpecError) as err:
        GreedyAllocator(slack=0.0)
    assert err.value.field == "slack"


# --- least-loaded -----------------------------------------------------------------------------------


def test_least_loaded_balances_better_than_random_on_identical_tasks():
    inst = independent(50, 4, work=10.0)
    ll = LeastLoadedAllocator().build(inst)
    ll_busy = Evaluator(inst).schedule(ll).busy
    assert ll_busy.max() - ll_busy.min() <= inst.duration[0, 0]
    for seed in range(5):
        rnd_busy = Evaluator(inst).schedule(RandomAllocator().build(inst, seed)).busy
        assert ll_busy.max() - ll_busy.min() <= rnd_busy.max() - rnd_busy.min()


def test_least_loaded_picks_the_least_busy_candidate():
    inst = make_instance(60, 100, 5, seed=9)
    plan = LeastLoadedAllocator().build(inst)
    np.testing.assert_array_equal(plan.order, inst.topo_order)
    for t, j, _, _, busy, end in replay(inst, plan):
        assert j == first_argmin({k: busy[k] for k in candidates(inst, t, plan.assignment, end)})


# --- shortest-first and weighted balance ------------------------------------------------------------


def test_shortest_first_rules():
    inst = make_instance(70, 120, 5, seed=10, requests=2)
    plan = ShortestFirstAllocator().build(inst)
    fastest = inst.duration.min(axis=1)
    for t, j, ready, free, _, end in replay(inst, plan):
        assert t == min(ready, key=lambda r: (fastest[r], r))
        assert j == first_argmin(finish_times(inst, t, free, plan.assignment, end))


def test_weighted_balance_extremes_are_eft_and_least_load():
    inst = make_instance(60, 100, 5, seed=11)
    eft = WeightedBalanceAllocator(time_weight=1.0, load_weight=0.0).build(inst)
    for t, j, _, free, _, end in replay(inst, eft):
        assert j == first_argmin(finish_times(inst, t, free, eft.assignment, end))
    load = WeightedBalanceAllocator(time_weight=0.0, load_weight=1.0).build(inst)
    for t, j, _, _, busy, end in replay(inst, load):
        assert j == first_argmin({k: busy[k] + inst.duration[t, k]
                                  for k in candidates(inst, t, load.assignment, end)})
    assert not np.array_equal(eft.assignment, load.assignment)


@pytest.mark.parametrize("kwargs,field", [
    (dict(time_weight=-1.0), "time_weight"),
    (dict(load_weight=math.nan), "load_weight"),
    (dict(time_weight=0.0, load_weight=0.0), "time_weight"),
])
def test_weighted_balance_rejects_bad_weights(kwargs, field):
    with pytest.raises(SpecError) as err:
        get_allocator("weighted-balance", **kwargs)
    assert err.value.field == field


# --- min-min ----------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), density=st.floats(0.0, 2.5),
       m=st.integers(1, 6), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3))
def test_min_min_matches_brute_force(seed, n, density, m, shape, requests):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests, gpu_only=0.15)
    except SpecError:
        assume(False)
    plan = MinMinAllocator().build(inst)
    reference = min_min_reference(inst)
    np.testing.assert_array_equal(plan.order, reference.order)
    np.testing.assert_array_equal(plan.assignment, reference.assignment)


def test_min_min_places_a_batch_before_the_children_it_frees():
    # a -> c, and b alone, on one node. Ready first: {a, b}. a finishes first (1 s); its child c
    # (1 s) would finish before b (5 s), but c waits for the next batch, as in SAGA's MinMin.
    cluster = Cluster(nodes=(Node("solo", "cpu", 1.0, 8.0),))
    inst = Instance.build(Workload(tasks=(Task("a", 1.0), Task("b", 5.0), Task("c", 1.0)), edges=(Edge("a", "c"),)),
                          cluster)
    np.testing.assert_array_equal(MinMinAllocator().build(inst).order, [0, 1, 2])


def test_min_min_on_a_tiny_independent_instance():
    # Durations (rows tasks, columns nodes): speeds 1 and 2.
    cluster = Cluster(nodes=(Node("slow", "cpu", 1.0, 8.0), Node("fast", "cpu", 2.0, 8.0)))
    inst = Instance.build(Workload(tasks=(Task("a", 4.0), Task("b", 2.0), Task("c", 6.0))), cluster)
    plan = MinMinAllocator().build(inst)
    # b: fast at 1; then a: fast ends 1+2=3 vs slow 4 -> fast; then c: slow 6 vs fast 3+3=6 -> slow (tie, lower index).
    np.testing.assert_array_equal(plan.order, [1, 0, 2])
    np.testing.assert_array_equal(plan.assignment, [1, 1, 0])
    assert Evaluator(inst).schedule(plan).stat("makespan") == 6.0


def test_min_min_index_is_sized_for_the_widest_batch_not_every_task():
    # Five roots, each with one child, and a last task after every child: batches (DAG levels)
    # of 5, 5 and 1 tasks. The index holds one batch at a time, so its arrays are sized for 5
    # tasks on each node, not for all 11 (at 100,000 tasks x 1,000 nodes that is what fits 2 GB).
    from apportion.core.algorithms.baselines import _min_min_sizes

    roots, kids = [f"r{i}" for i in range(5)], [f"k{i}" for i in range(5)]
    tasks = tuple(Task(name, 1.0 + i) for i, name in enumerate(roots + kids + ["end"]))
    edges = tuple(Edge(r, k) for r, k in zip(roots, kids, strict=True)) + tuple(Edge(k, "end") for k in kids)
    cluster = Cluster(nodes=(Node("a", "cpu", 1.0, 8.0), Node("b", "cpu", 2.0, 8.0)))
    inst = Instance.build(Workload(tasks=tasks, edges=edges), cluster)
    waiting = np.diff(inst.parent_ptr).astype(np.int64)
    widest, pairs, leaves = _min_min_sizes(waiting, inst.child_ptr, inst.child_idx, inst.eligible)
    assert (widest, pairs, leaves) == (5, 10, 2 * 2 * 8)  # each node: a min-tree of 8 leaves (2 x 8 entries)
    np.testing.assert_array_equal(waiting, np.diff(inst.parent_ptr))  # the kernel's counts are left as they were
    plan = MinMinAllocator().build(inst)
    reference = min_min_reference(inst)
    np.testing.assert_array_equal(plan.order, reference.order)
    np.testing.assert_array_equal(plan.assignment, reference.assignment)

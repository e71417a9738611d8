"""HEFT (core.algorithms.heft): upward ranks, priority list, and the insertion schedule against
a textbook plain-Python HEFT, decoded exactly by the evaluator."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms.baselines import RandomAllocator
from apportion.core.algorithms.heft import HeftAllocator, heft_priority, heft_ranks, heft_schedule
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Cluster, Edge, Instance, Node, Request, Task, Workload
from tests.core.algorithms.instances import SHAPES, make_cluster, make_instance
from tests.reference.naive_heft import heft_reference


def test_heft_ranks_follow_the_recursive_definition():
    inst = make_instance(50, 90, 5, seed=12, gpu_only=0.3)
    m = inst.n_nodes
    pairs = [(a, b) for a in range(m) for b in range(m) if a != b and math.isfinite(inst.inv_bandwidth[a, b])]
    mean_latency = sum(inst.latency[a, b] for a, b in pairs) / len(pairs)
    mean_bandwidth = sum(1.0 / inst.inv_bandwidth[a, b] for a, b in pairs) / len(pairs)
    memo: dict[int, float] = {}

    def rank(t):
        if t not in memo:
            runtimes = [inst.duration[t, j] for j in range(m) if inst.eligible[t, j]]
            tail = [mean_latency + inst.child_data[e] / mean_bandwidth + rank(int(inst.child_idx[e]))
                    for e in range(inst.child_ptr[t], inst.child_ptr[t + 1])]
            memo[t] = sum(runtimes) / len(runtimes) + max(tail, default=0.0)
        return memo[t]

    np.testing.assert_allclose(heft_ranks(inst), [rank(t) for t in range(inst.n_tasks)], rtol=1e-12)
    position = np.empty(inst.n_tasks, dtype=int)
    position[heft_priority(inst)] = np.arange(inst.n_tasks)
    child = np.repeat(np.arange(inst.n_tasks), np.diff(inst.parent_ptr))
    assert (position[inst.parent_idx] < position[child]).all()


def test_heft_priority_is_topological_when_ranks_tie():
    # Zero work on one node: every rank is 0. Edges run from higher to lower task index, so
    # breaking the ties by index would put children first.
    tasks = tuple(Task(f"t{i}", work=0.0) for i in range(8))
    edges = tuple(Edge(f"t{i}", f"t{i - 1}", data=0.0) for i in range(7, 0, -1))
    inst = Instance.build(Workload(tasks=tasks, edges=edges), make_cluster("single", 1, 0))
    assert (heft_ranks(inst) == 0).all()
    np.testing.assert_array_equal(heft_priority(inst), np.arange(8)[::-1])
    plan = HeftAllocator().build(inst)
    assign, start, end = heft_schedule(inst)
    schedule = Evaluator(inst).schedule(plan)
    assert np.array_equal(schedule.start, start) and np.array_equal(schedule.end, end)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), density=st.floats(0.0, 3.0),
       m=st.integers(1, 8), shape=st.sampled_from(SHAPES), requests=st.integers(1, 4),
       zero_work=st.sampled_from([0.0, 0.3, 1.0]), zero_data=st.sampled_from([0.0, 0.5, 1.0]))
def test_heft_decodes_exactly_to_its_own_schedule(seed, n, density, m, shape, requests, zero_work, zero_data):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests,
                             zero_work=zero_work, zero_data=zero_data, gpu_only=0.15)
    except SpecError:
        assume(False)
    assign, start, end = heft_schedule(inst)
    ref_assign, ref_start, ref_end = heft_reference(inst)
    np.testing.assert_array_equal(assign, ref_assign)
    assert np.array_equal(start, ref_start) and np.array_equal(end, ref_end)
    plan = HeftAllocator().build(inst)
    np.testing.assert_array_equal(plan.assignment, assign)
    schedule = Evaluator(inst).schedule(plan)  # also checks eligibility and topological order
    assert np.array_equal(schedule.start, start)
    assert np.array_equal(schedule.end, end)


def test_heft_uses_idle_gaps():
    # a -> c carries a big transfer (100 s between nodes); b is independent. Node f is ten
    # times faster than s. Ranks: a 111, c 5.5, b 2.75, so HEFT places a, c, b in that order.
    cluster = Cluster(nodes=(Node("f", "cpu", 10.0, 8.0), Node("s", "cpu", 1.0, 8.0)),
                      default_bandwidth=1.0, default_latency=0.0)
    tasks = (Task("a", 10.0), Task("c", 10.0), Task("b", 5.0))
    wl = Workload(tasks=tasks, edges=(Edge("a", "c", 100.0),), requests=())
    inst = Instance.build(wl, cluster)
    assign, start, end = heft_schedule(inst)
    # a on f [0,1], c on f [1,2]; b ends sooner after c on f [2,2.5] than on s [0,5].
    np.testing.assert_array_equal(assign, [0, 0, 0])
    np.testing.assert_array_equal(start, [0.0, 1.0, 2.0])
    # Releasing c's request at 3 s leaves f idle in [1, 3], and b fills that gap.
    wl = Workload(tasks=(Task("a", 10.0, request="r0"), Task("c", 10.0, request="r1"), Task("b", 5.0, request="r0")),
                  edges=(Edge("a", "c", 100.0),), requests=(Request("r0", 0.0), Request("r1", 3.0)))
    inst = Instance.build(wl, cluster)
    assign, start, end = heft_schedule(inst)
    assert list(heft_priority(inst)) == [0, 1, 2]
    np.testing.assert_array_equal(assign, [0, 0, 0])
    np.testing.assert_array_equal(start, [0.0, 3.0, 1.0])  # b inserted before c
    schedule = Evaluator(inst).schedule(HeftAllocator().build(inst))
    np.testing.assert_array_equal(schedule.start, start)


def test_heft_beats_random_on_average():
    heft, rnd = [], []
    for seed in range(8):
        inst = make_instance(60, 120, 6, seed=100 + seed, requests=2)
        ev = Evaluator(inst)
        heft.append(HeftAllocator().allocate(ev).stats[0, STAT_INDEX["makespan"]])
        rnd.append(RandomAllocator().allocate(ev, seed=seed).stats[0, STAT_INDEX["makespan"]])
    assert np.mean(heft) < 0.8 * np.mean(rnd)

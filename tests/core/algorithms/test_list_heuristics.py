"""Max-min, sufferage and duplex: the compiled kernel against plain-Python references, their
defining choices on hand-made instances, and when they seed NSGA-II."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms import get_allocator
from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.list_heuristics import SEED_BUDGET, affordable, widest_level
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator
from apportion.core.model import Cluster, Edge, Instance, Node, Task, Workload
from tests.core.algorithms.instances import SHAPES, independent, make_instance
from tests.reference.naive_baselines import max_min_reference, min_min_reference, sufferage_reference

REFERENCES = {"max-min": max_min_reference, "sufferage": sufferage_reference}


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), density=st.floats(0.0, 2.5),
       m=st.integers(1, 6), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3))
def test_matches_the_brute_force_reference(name, seed, n, density, m, shape, requests):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests, gpu_only=0.15)
    except SpecError:
        assume(False)
    plan = get_allocator(name).build(inst)
    reference = REFERENCES[name](inst)
    np.testing.assert_array_equal(plan.order, reference.order)
    np.testing.assert_array_equal(plan.assignment, reference.assignment)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), density=st.floats(0.0, 2.0), m=st.integers(1, 5))
def test_duplex_is_the_shorter_of_min_min_and_max_min(seed, n, density, m):
    try:
        inst = make_instance(n, int(n * density), m, seed)
    except SpecError:
        assume(False)
    ev = Evaluator(inst)
    makespan = {name: ev.schedule(plan).stat("makespan")
                for name, plan in (("min-min", min_min_reference(inst)), ("max-min", max_min_reference(inst)))}
    duplex = ev.schedule(get_allocator("duplex").build(inst)).stat("makespan")
    assert duplex == min(makespan.values())


def two_speeds(*works: float) -> Instance:
    cluster = Cluster(nodes=(Node("slow", "cpu", 1.0, 8.0), Node("fast", "cpu", 2.0, 8.0)))
    return Instance.build(Workload(tasks=tuple(Task(f"t{i}", w) for i, w in enumerate(works))), cluster)


def test_max_min_places_the_longest_task_first():
    # Best completions: t0 4/2 = 2, t1 2/2 = 1, t2 8/2 = 4: t2 first, on the fast node.
    plan = get_allocator("max-min").build(two_speeds(4.0, 2.0, 8.0))
    assert plan.order[0] == 2 and plan.assignment[2] == 1


def test_sufferage_places_first_the_task_that_loses_most_off_its_best_node():
    # t0: fast 1, slow 2 (loses 1); t1: fast 3, slow 6 (loses 3): t1 first, on the fast node;
    # then t0: fast 3 + 1 = 4, slow 2 -> slow.
    plan = get_allocator("sufferage").build(two_speeds(2.0, 6.0))
    np.testing.assert_array_equal(plan.order, [1, 0])
    np.testing.assert_array_equal(plan.assignment, [0, 1])


def test_sufferage_lets_a_freed_child_compete_at_once():
    # a -> c, b alone, one node: a (loss 0, lowest index) first; then c and b tie at loss 0
    # and b has the lower index; no batches, unlike min-min and max-min.
    cluster = Cluster(nodes=(Node("solo", "cpu", 1.0, 8.0),))
    inst = Instance.build(Workload(tasks=(Task("a", 1.0), Task("c", 1.0), Task("b", 5.0)), edges=(Edge("a", "c"),)),
                          cluster)
    np.testing.assert_array_equal(get_allocator("sufferage").build(inst).order, [0, 1, 2])


def test_scanning_heuristics_seed_only_affordable_instances():
    small = make_instance(30, 40, 4, seed=2)
    assert affordable(small)
    assert {"max-min", "sufferage"} <= set(baseline_plans(Evaluator(small)))
    wide = independent(2_000, 100)  # 2,000 x 2,000 x 100 visits: beyond the budget
    assert widest_level(wide) == 2_000 and 2_000 * 2_000 * 100 > SEED_BUDGET
    assert not affordable(wide)
    assert not {"max-min", "sufferage"} & set(baseline_plans(Evaluator(wide)))

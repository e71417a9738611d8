"""Insertion decoding and the local search (core.algorithms.local_search): the compiled
decoder against a plain-Python reference, and the guarantees NSGA-II relies on: decoded plans
are valid, and the shared evaluator scores them no slower than the plan they came from."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.heft import heft_priority, heft_schedule
from apportion.core.algorithms.local_search import LocalSearch, _insertion_decode
from apportion.core.evaluate import Evaluator, Plan
from tests.core.algorithms.instances import SHAPES, make_instance, small_instance
from tests.reference.naive_insertion import insertion_reference

instances = st.builds(make_instance, n=st.integers(1, 30), e=st.integers(0, 60), m=st.integers(1, 5),
                      seed=st.integers(0, 10_000), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3),
                      zero_work=st.sampled_from([0.0, 0.3]), zero_data=st.sampled_from([0.0, 0.3]))


def random_plan(instance, rng) -> Plan:
    """A random eligible assignment and a random topological order."""
    n = instance.n_tasks
    assignment = np.array([rng.choice(instance.eligible_nodes(t)) for t in range(n)], dtype=np.int32)
    key = rng.random(n)
    for t in instance.topo_order.tolist():  # a child's key above its parents': sorting keeps edges forward
        parents = instance.parent_idx[instance.parent_ptr[t]:instance.parent_ptr[t + 1]]
        if parents.size:
            key[t] += key[parents].max() + 1.0
    return Plan(assignment, np.argsort(key, kind="stable").astype(np.int32))


def makespan(evaluator, plan) -> float:
    return float(evaluator.stats(plan.assignment, plan.order)[0, 0])


@settings(max_examples=40, deadline=None)
@given(instances, st.integers(0, 2**32 - 1), st.booleans())
def test_insertion_decoder_matches_the_python_reference(instance, seed, choose):
    plan = random_plan(instance, np.random.default_rng(seed))
    search = LocalSearch(instance)
    assign = plan.assignment.copy()
    decoded = _insertion_decode(plan.order, assign, choose, *search._arrays, *search._work())
    ref_assign, ref_start, ref_end = insertion_reference(instance, plan.order, plan.assignment, choose)
    n = instance.n_tasks
    np.testing.assert_array_equal(assign, ref_assign)
    np.testing.assert_array_equal(search._start[:n], ref_start)
    np.testing.assert_array_equal(search._end[:n], ref_end)
    assert decoded == ref_end.max()


def test_earliest_finish_decoding_in_heft_order_is_heft():
    instance = small_instance(gpu_only_share=0.2)
    search = LocalSearch(instance)
    assign = np.zeros(instance.n_tasks, dtype=np.int32)
    _insertion_decode(heft_priority(instance), assign, True, *search._arrays, *search._work())
    heft_assign, heft_start, heft_end = heft_schedule(instance)
    np.testing.assert_array_equal(assign, heft_assign)
    np.testing.assert_array_equal(search._start[:instance.n_tasks], heft_start)


@settings(max_examples=40, deadline=None)
@given(instances, st.integers(0, 2**32 - 1), st.integers(1, 40), st.floats(0.0, 0.999))
def test_decoded_and_improved_plans_are_valid_and_never_slower(instance, seed, budget, rotate):
    evaluator = Evaluator(instance)
    plan = random_plan(instance, np.random.default_rng(seed))
    before = makespan(evaluator, plan)
    search = LocalSearch(instance)
    inserted, inserted_makespan = search.insertion_plan(plan)
    improved, improved_makespan = search.improve(plan, budget, rotate)
    placed, _ = search.insertion_plan(plan, choose_nodes=True)
    for result in (inserted, improved, placed):
        evaluator.check(result.assignment[None, :], result.order[None, :])  # eligible and topological
    # The evaluator's decode of an insertion schedule's start order starts no task later.
    assert makespan(evaluator, inserted) <= inserted_makespan <= before
    assert makespan(evaluator, improved) <= improved_makespan <= inserted_makespan
    np.testing.assert_array_equal(inserted.assignment, plan.assignment)


def test_local_search_speeds_up_the_baselines_and_is_deterministic():
    instance = small_instance(n_tasks=60, n_edges=120, n_nodes=6)
    evaluator = Evaluator(instance)
    gains = []
    for plan in baseline_plans(evaluator).values():
        first, _ = LocalSearch(instance).improve(plan, 200, 0.5)
        again, _ = LocalSearch(instance).improve(plan, 200, 0.5)
        assert np.array_equal(first.assignment, again.assignment) and np.array_equal(first.order, again.order)
        gains.append(makespan(evaluator, plan) - makespan(evaluator, first))
    assert min(gains) >= 0.0 and max(gains) > 0.0


def test_plans_of_the_wrong_size_are_refused():
    instance = small_instance()
    with pytest.raises(ValueError, match="assignment and an order of 40 tasks"):
        LocalSearch(instance).improve(Plan(np.zeros(3), np.arange(3)), 10)

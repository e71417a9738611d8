"""Variation operators (core.algorithms.variation): the chromosome codec, crossover, mutation
and their compiled kernels against plain-Python references, repair, duplicate elimination."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymoo.core.individual import Individual

from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.nsga import order_pool
from apportion.core.algorithms.variation import (
    EligibilityRepair,
    PlanCodec,
    PlanMutation,
    RowHashDuplicateElimination,
    UniformCrossover,
    new_individual,
    new_population,
)
from apportion.core.evaluate import Evaluator
from tests.core.algorithms.instances import small_instance
from tests.reference.naive_variation import (
    first_unseen,
    is_topological,
    reference_precedence_cross,
    reference_reassign,
    reference_release,
    reference_shift,
    reference_shift_order,
)


@pytest.fixture(scope="module")
def instance():
    # Memory above the edge nodes' 8 GB and GPU-only tasks: eligibility matters.
    return small_instance(gpu_only_share=0.2)


@pytest.fixture(scope="module")
def codec(instance):
    plans = baseline_plans(Evaluator(instance)).values()
    return PlanCodec(instance, order_pool(instance, [p.order for p in plans]))


def test_every_baseline_plan_round_trips_through_the_chromosome(instance, codec):
    for plan in baseline_plans(Evaluator(instance)).values():
        back = codec.decode(codec.encode(plan))
        assert np.array_equal(back.assignment, plan.assignment) and np.array_equal(back.order, plan.order)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_crossover_and_mutation_keep_plans_eligible(codec, seed):
    rng = np.random.default_rng(seed)
    X = codec.random(8, rng)
    a, b = X[:4], X[4:]
    children = UniformCrossover().cross(X, np.arange(4), np.arange(4, 8), rng)
    n = codec.n_tasks
    # Node genes swapped between the pair; orders kept whole unless crossed (not here).
    kept = UniformCrossover(order_rate=0.0).cross(X, np.arange(4), np.arange(4, 8), rng)
    k1, k2 = kept[:4], kept[4:]
    assert (((k1 == a) & (k2 == b)) | ((k1 == b) & (k2 == a))).all()
    assert all(np.array_equal(c[n:], a[i, n:]) or np.array_equal(c[n:], b[i, n:]) for i, c in enumerate(k1))
    assert all(is_topological(codec.instance, c[n:]) for c in children)
    mixed = UniformCrossover(prob=1.0).cross(X, np.arange(4), np.arange(4, 8), rng)[:4]
    differ = a != b
    assert ((mixed == a) & differ).any() and ((mixed == b) & differ).any()  # both parents contribute
    copied = UniformCrossover(prob=0.0).cross(X, np.arange(4), np.arange(4, 8), rng)
    assert np.array_equal(copied, X)
    eligible = codec.instance.eligible
    mutated = PlanMutation(codec, order_rate=0.5).mutate(children.copy(), rng)
    assert eligible[np.arange(n), mutated[:, :n]].all()
    assert all(is_topological(codec.instance, row[n:]) for row in mutated)
    # Reassignment alone (a later load shift or node release may move a task back) always moves a task.
    reassigned = PlanMutation(codec, shift_rate=0.0, release_rate=0.0, order_rate=0.0).mutate(children.copy(), rng)
    assert eligible[np.arange(n), reassigned[:, :n]].all()
    assert (reassigned != children).any(axis=1).all()


def test_operators_work_through_pymoos_generic_interface(codec):
    rng = np.random.default_rng(3)
    X = codec.random(6, rng)
    pairs = new_population(X)[np.array([[0, 1], [2, 3], [4, 5]])]
    children = UniformCrossover().do(None, pairs, random_state=rng)
    assert len(children) == 6
    mutated = PlanMutation(codec).do(None, children, random_state=rng)
    M = np.array([ind.X for ind in mutated])
    n = codec.n_tasks
    assert M.shape == (6, 2 * n) and codec.instance.eligible[np.arange(n), M[:, :n]].all()
    assert all(ind.X.base is None for ind in mutated)  # each owns its row


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutation_kernels_match_python_reference(codec, seed):
    from apportion.core.algorithms.variation import _reassign, _shift_load

    rng = np.random.default_rng(seed)
    X = codec.random(10, rng)
    rows, genes, u = rng.integers(0, 10, 25), rng.integers(0, codec.n_tasks, 25), rng.random(25)
    got = X.copy()
    _reassign(got, rows, genes, u, codec.eligible_ptr, codec.eligible_nodes)
    np.testing.assert_array_equal(got, reference_reassign(X, rows, genes, u, codec))

    instance = codec.instance
    rows, u = np.arange(10), rng.random(10)
    got = X.copy()
    mutation = PlanMutation(codec)
    _shift_load(got, rows, u, mutation._duration, mutation._eligible, codec.eligible_ptr, codec.eligible_nodes,
                np.empty(instance.n_nodes))
    np.testing.assert_array_equal(got, reference_shift(X, rows, u, instance))
    # The move takes work off the busiest node.
    n = codec.n_tasks
    duration = np.where(instance.eligible, instance.duration, 0.0)
    for before, after in zip(X, got, strict=True):
        if (before != after).any():
            lb = np.bincount(before[:n], weights=duration[np.arange(n), before[:n]], minlength=instance.n_nodes)
            la = np.bincount(after[:n], weights=duration[np.arange(n), after[:n]], minlength=instance.n_nodes)
            assert la[lb.argmax()] < lb.max()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_release_node_kernel_matches_python_reference(codec, seed):
    from apportion.core.algorithms.variation import _release_node

    rng = np.random.default_rng(seed)
    instance, n = codec.instance, codec.n_tasks
    X = codec.random(10, rng)
    # Some rows on few nodes, so single-node plans and stuck tasks are covered too.
    X[:3, :n] = np.where(instance.eligible[np.arange(n), 0], 0, X[:3, :n])
    rows = rng.permutation(10)[:7]
    got = X.copy()
    mutation = PlanMutation(codec)
    _release_node(got, rows, mutation._duration, mutation._eligible, codec.eligible_ptr, codec.eligible_nodes,
                  np.empty(instance.n_nodes), np.empty(instance.n_nodes, dtype=np.bool_))
    np.testing.assert_array_equal(got, reference_release(X, rows, instance))
    assert instance.eligible[np.arange(n), got[:, :n]].all()
    for before, after in zip(X[rows], got[rows], strict=True):
        used_before, used_after = set(before[:n].tolist()), set(after[:n].tolist())
        assert used_after <= used_before  # tasks only move onto nodes already in use
        if (before != after).any():  # it took work off one node only, moving tasks off it
            moved_from = set(before[:n][before[:n] != after[:n]].tolist())
            assert len(moved_from) == 1


def test_eligibility_repair_fixes_out_of_range_and_ineligible_genes(codec):
    instance = codec.instance
    n = codec.n_tasks
    X = np.full((3, 2 * n), -2.7)
    X[1] = instance.n_nodes + 5
    X[2, :n] = np.argmin(instance.eligible, axis=1)  # an ineligible node wherever there is one
    X[2, n:] = instance.topo_order[::-1]  # every edge backwards
    repaired = EligibilityRepair(codec).fix(X)
    assert instance.eligible[np.arange(n), repaired[:, :n]].all()
    assert all(is_topological(instance, row[n:]) for row in repaired)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_repair_makes_any_order_genes_topological_and_keeps_topological_ones(codec, seed):
    rng = np.random.default_rng(seed)
    instance, n = codec.instance, codec.n_tasks
    valid = codec.random(4, rng)
    PlanMutation(codec, order_rate=1.0).mutate(valid, rng)
    np.testing.assert_array_equal(EligibilityRepair(codec).fix(valid), valid)
    junk = valid.copy()
    junk[:, n:] = rng.integers(-3, n + 3, size=(4, n))
    assert all(is_topological(instance, row[n:]) for row in EligibilityRepair(codec).fix(junk))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_order_kernels_match_python_reference_and_keep_orders_topological(codec, seed):
    from apportion.core.algorithms.variation import _precedence_cross, _shift_order

    rng = np.random.default_rng(seed)
    instance, n = codec.instance, codec.n_tasks
    X = codec.random(6, rng)
    PlanMutation(codec, order_rate=1.0).mutate(X, rng)  # distinct orders to cross
    bits = rng.integers(0, 2, size=n).astype(np.uint8)
    child = np.empty(n, dtype=np.int32)
    _precedence_cross(X[0, n:], X[1, n:], bits, np.empty(n, dtype=np.bool_), child)
    np.testing.assert_array_equal(child, reference_precedence_cross(X[0, n:], X[1, n:], bits))
    assert is_topological(instance, child)
    rows, u = np.arange(6), rng.random((6, 5))
    got = X.copy()
    _shift_order(got, rows, u, n, instance.parent_ptr, instance.parent_idx, instance.child_ptr, instance.child_idx,
                 np.empty(n, dtype=np.int64))
    np.testing.assert_array_equal(got, reference_shift_order(X, rows, u, instance))
    assert all(is_topological(instance, row[n:]) for row in got)
    np.testing.assert_array_equal(got[:, :n], X[:, :n])


rows = arrays(np.int32, st.tuples(st.integers(0, 12), st.just(5)), elements=st.integers(0, 2))


@settings(max_examples=60, deadline=None)
@given(rows, rows)
def test_duplicate_elimination_removes_exact_duplicates_only(X, other):
    expected = first_unseen(X, other)
    pop = new_population(X)
    kept = RowHashDuplicateElimination().do(pop, new_population(other))
    assert [tuple(ind.X) for ind in kept] == [tuple(r) for r, k in zip(X, expected, strict=True) if k]
    assert RowHashDuplicateElimination.keep_mask(X, other).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(rows, rows)
def test_duplicate_elimination_is_exact_even_when_every_hash_collides(X, other):
    import apportion.core.algorithms.variation as variation

    real_hashes = variation.row_hashes
    variation.row_hashes = lambda M: np.zeros(M.shape[0], dtype=np.uint64)
    try:
        assert RowHashDuplicateElimination.keep_mask(X, other).tolist() == first_unseen(X, other)
    finally:
        variation.row_hashes = real_hashes


def test_fast_individual_matches_a_fresh_pymoo_individual():
    row = np.arange(4, dtype=np.int32)
    ind, ref = new_individual(row), Individual(X=row)
    assert ind.__dict__.keys() == ref.__dict__.keys()
    assert ind.X is row and ind.evaluated == set() and ind.data == {} and ind.config == ref.config
    assert new_individual(row).evaluated is not ind.evaluated

"""NSGA-II/III allocators and their operators, on small instances."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymoo.core.individual import Individual

from apportion.core.algorithms import get_allocator
from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.nsga import NSGA2Allocator, NSGA3Allocator, ParetoArchive, order_pool
from apportion.core.algorithms.variation import (
    EligibilityRepair,
    PlanCodec,
    PlanMutation,
    RowHashDuplicateElimination,
    UniformCrossover,
    new_individual,
    new_population,
)
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Task, Workload
from apportion.core.pareto import non_dominated, objective_matrix
from apportion.core.synthetic import random_cluster, random_workload

OBJECTIVES = ("makespan", "utilization", "imbalance")


def small_instance(seed=3, n_tasks=40, n_edges=80, n_nodes=5, **workload):
    return Instance.build(random_workload(n_tasks, n_edges, seed=seed, **workload), random_cluster(n_nodes, seed=seed))


@pytest.fixture(scope="module")
def instance():
    # Memory above the edge nodes' 8 GB and GPU-only tasks: eligibility matters.
    return small_instance(gpu_only_share=0.2)


@pytest.fixture(scope="module")
def run(instance):
    evaluator = Evaluator(instance)
    result = NSGA2Allocator(population=24, generations=25).allocate(evaluator, seed=7)
    return evaluator, result


def weakly_dominated_by(front, point):
    return bool(np.any(np.all(front <= point, axis=1)))


def test_same_seed_gives_the_same_front_bit_for_bit(instance, run):
    _, first = run
    second = NSGA2Allocator(population=24, generations=25).allocate(Evaluator(instance), seed=7)
    assert len(first.plans) == len(second.plans)
    for a, b in zip(first.plans, second.plans):
        assert a.assignment.tobytes() == b.assignment.tobytes() and a.order.tobytes() == b.order.tobytes()
    assert first.stats.tobytes() == second.stats.tobytes()
    assert [h["hypervolume"] for h in first.history] == [h["hypervolume"] for h in second.history]


def test_plans_are_valid_and_stats_come_from_the_evaluator(instance, run):
    evaluator, result = run
    assignment = np.array([p.assignment for p in result.plans])
    orders = np.array([p.order for p in result.plans])
    evaluator.check(assignment, orders)  # eligible nodes, topological orders
    assert instance.eligible[np.arange(instance.n_tasks), assignment].all()
    np.testing.assert_array_equal(result.stats, Evaluator(instance).stats(assignment, orders))
    assert result.algorithm == "nsga2" and result.evaluations >= 24 * 26


def test_front_is_mutually_non_dominated(run):
    _, result = run
    F = objective_matrix(result.stats, OBJECTIVES)
    assert non_dominated(F).tolist() == list(range(len(F)))
    assert len({row.tobytes() for row in F}) == len(F)


def test_front_weakly_dominates_every_baseline_and_is_as_fast_as_heft(instance, run):
    _, result = run
    evaluator = Evaluator(instance)
    front = objective_matrix(result.stats, OBJECTIVES)
    for name, plan in baseline_plans(evaluator).items():
        stats = evaluator.stats(plan.assignment, plan.order)
        assert weakly_dominated_by(front, objective_matrix(stats, OBJECTIVES)[0]), name
        if name == "heft":
            assert result.stats[:, STAT_INDEX["makespan"]].min() <= stats[0, STAT_INDEX["makespan"]]


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_front_properties_hold_for_any_instance_and_seed(instance_seed, seed):
    inst = small_instance(seed=instance_seed, n_tasks=25, n_edges=45, n_nodes=4)
    evaluator = Evaluator(inst)
    result = NSGA2Allocator(population=12, generations=6).allocate(evaluator, seed=seed)
    F = objective_matrix(result.stats, OBJECTIVES)
    assert non_dominated(F).tolist() == list(range(len(F)))
    evaluator.check(np.array([p.assignment for p in result.plans]), np.array([p.order for p in result.plans]))
    for plan in baseline_plans(evaluator, seed=seed).values():
        assert weakly_dominated_by(F, objective_matrix(evaluator.stats(plan.assignment, plan.order), OBJECTIVES)[0])


def test_history_records_every_generation_and_hypervolume_never_drops(instance):
    seen = []
    result = NSGA2Allocator(population=16, generations=12).allocate(
        Evaluator(instance), seed=1, progress=lambda gen, record: seen.append((gen, record)))
    assert [g for g, _ in seen] == list(range(13))
    assert [r for _, r in seen] == result.history
    hv = [r["hypervolume"] for r in result.history]
    assert all(b >= a * (1 - 1e-12) for a, b in zip(hv, hv[1:]))
    assert result.history[-1]["best_makespan"] == pytest.approx(result.stats[:, STAT_INDEX["makespan"]].min())
    evaluations = [r["evaluations"] for r in result.history]
    assert evaluations[0] >= 16 and evaluations == sorted(evaluations)


def deadline_instance():
    """Ten 10-GFLOP tasks due at 5 s; two fast nodes (1 s per task) and a slow one (10 s).
    Feasible only with five tasks on each fast node: 252 of 3^10 random plans."""
    tasks = tuple(Task(id=f"t{i}", work=10.0, deadline=5.0) for i in range(10))
    nodes = (Node("fast-a", "cpu", 10.0, 16.0), Node("fast-b", "cpu", 10.0, 16.0), Node("slow", "edge", 1.0, 16.0))
    return Instance.build(Workload(tasks=tasks), Cluster(nodes=nodes, default_bandwidth=100.0))


def test_tight_deadlines_are_met_when_possible():
    instance = deadline_instance()
    evaluator = Evaluator(instance)
    result = NSGA2Allocator(population=16, generations=30, seed_with_baselines=False).allocate(evaluator, seed=0)
    lateness = result.stats[:, STAT_INDEX["lateness"]]
    assert (lateness == 0.0).all()
    for plan in result.plans:
        assert np.bincount(plan.assignment, minlength=3).tolist() == [5, 5, 0]
    assert result.history[-1]["feasible"]


def test_unroutable_plans_are_avoided():
    """A chain of tasks on two zones with no link between them: only single-zone plans run."""
    tasks = tuple(Task(id=f"t{i}", work=10.0 * (i + 1)) for i in range(6))
    edges = tuple(Edge(f"t{i}", f"t{i + 1}", 50.0) for i in range(5))
    nodes = (Node("a", "cpu", 10.0, 16.0, zone="z1"), Node("b", "cpu", 12.0, 16.0, zone="z1"),
             Node("c", "cpu", 30.0, 16.0, zone="z2"))
    links = (Link("z1", "z1", 100.0), Link("z2", "z2", 100.0))
    instance = Instance.build(Workload(tasks=tasks, edges=edges), Cluster(nodes=nodes, links=links))
    evaluator = Evaluator(instance)
    result = NSGA2Allocator(population=16, generations=15, seed_with_baselines=False).allocate(evaluator, seed=4)
    assert (result.stats[:, STAT_INDEX["unroutable"]] == 0).all()
    assert np.isfinite(result.stats[:, STAT_INDEX["makespan"]]).all()
    zone = np.array([0, 0, 1])
    for plan in result.plans:
        assert len(set(zone[plan.assignment])) == 1


def test_parallel_evaluation_gives_the_same_front(instance, run):
    _, serial = run
    parallel = NSGA2Allocator(population=24, generations=25, parallel=True).allocate(Evaluator(instance), seed=7)
    assert parallel.stats.tobytes() == serial.stats.tobytes()
    assert all(np.array_equal(a.assignment, b.assignment) for a, b in zip(parallel.plans, serial.plans))
    assert parallel.evaluations == serial.evaluations


def test_nsga3_with_four_objectives(instance):
    objectives = ("makespan", "utilization", "imbalance", "energy")
    evaluator = Evaluator(instance)
    allocator = get_allocator("nsga3", population=20, generations=8, objectives=objectives)
    assert isinstance(allocator, NSGA3Allocator)
    result = allocator.allocate(evaluator, seed=2)
    F = objective_matrix(result.stats, objectives)
    assert result.algorithm == "nsga3" and len(result.plans) >= 1
    assert non_dominated(F).tolist() == list(range(len(F)))
    evaluator.check(np.array([p.assignment for p in result.plans]), np.array([p.order for p in result.plans]))
    for plan in baseline_plans(evaluator, seed=2).values():
        assert weakly_dominated_by(F, objective_matrix(evaluator.stats(plan.assignment, plan.order), objectives)[0])


@pytest.mark.parametrize("options, field", [
    (dict(population=3), "population"),
    (dict(population=10.5), "population"),
    (dict(generations=0), "generations"),
    (dict(objectives=("makespan", "latency")), "objectives"),
    (dict(objectives=()), "objectives"),
])
def test_bad_options_are_spec_errors(options, field):
    with pytest.raises(SpecError) as err:
        NSGA2Allocator(**options)
    assert err.value.field == field


# --- variation operators -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codec(instance):
    plans = baseline_plans(Evaluator(instance)).values()
    return PlanCodec(instance, order_pool(instance, [p.order for p in plans]))


def test_every_baseline_plan_round_trips_through_the_chromosome(instance, codec):
    for plan in baseline_plans(Evaluator(instance)).values():
        back = codec.decode(codec.encode(plan))
        assert np.array_equal(back.assignment, plan.assignment) and np.array_equal(back.order, plan.order)


def test_order_pool_holds_distinct_topological_orders(instance, codec):
    orders = codec.orders
    assert len({o.tobytes() for o in orders}) == len(orders)
    first_eligible = np.argmax(instance.eligible, axis=1).astype(np.int32)
    Evaluator(instance).check(np.tile(first_eligible, (len(orders), 1)), orders)  # raises if not topological


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_crossover_and_mutation_keep_plans_eligible(codec, seed):
    rng = np.random.default_rng(seed)
    X = codec.random(8, rng)
    a, b = X[:4], X[4:]
    children = UniformCrossover().cross(X, np.arange(4), np.arange(4, 8), rng)
    c1, c2 = children[:4], children[4:]
    assert (((c1 == a) & (c2 == b)) | ((c1 == b) & (c2 == a))).all()  # genes swapped between the pair
    mixed = UniformCrossover(prob=1.0).cross(X, np.arange(4), np.arange(4, 8), rng)[:4]
    differ = a != b
    assert ((mixed == a) & differ).any() and ((mixed == b) & differ).any()  # both parents contribute
    copied = UniformCrossover(prob=0.0).cross(X, np.arange(4), np.arange(4, 8), rng)
    assert np.array_equal(copied, X)
    n = codec.n_tasks
    eligible = codec.instance.eligible
    mutated = PlanMutation(codec).mutate(children.copy(), rng)
    assert eligible[np.arange(n), mutated[:, :n]].all()
    assert ((mutated[:, n] >= 0) & (mutated[:, n] < codec.n_orders)).all()
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
    assert M.shape == (6, n + 1) and codec.instance.eligible[np.arange(n), M[:, :n]].all()
    assert all(ind.X.base is None for ind in mutated)  # each owns its row


def reference_reassign(X, rows, genes, u, codec):
    X = X.copy()
    for r, t, x in zip(rows, genes, u):
        others = [j for j in codec.instance.eligible_nodes(t) if j != X[r, t]]
        if others:
            X[r, t] = others[int(x * len(others))]
    return X


def reference_shift(X, rows, u, instance):
    X = X.copy()
    n, m = instance.n_tasks, instance.n_nodes
    for r, x in zip(rows, u):
        load = [0.0] * m
        for t in range(n):
            load[X[r, t]] += instance.duration[t, X[r, t]]
        busiest = load.index(max(load))
        first = int(x * n)
        for step in range(n):
            t = (first + step) % n
            if X[r, t] != busiest:
                continue
            finish = {j: load[j] + instance.duration[t, j] for j in instance.eligible_nodes(t) if j != busiest}
            better = [j for j in finish if finish[j] < load[busiest]]
            if better:
                X[r, t] = min(better, key=lambda j: (finish[j], j))
                break
    return X


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
    _shift_load(got, rows, u, PlanMutation(codec)._duration, codec.eligible_ptr, codec.eligible_nodes,
                np.empty(instance.n_nodes))
    np.testing.assert_array_equal(got, reference_shift(X, rows, u, instance))
    # The move takes work off the busiest node.
    n = codec.n_tasks
    duration = np.where(instance.eligible, instance.duration, 0.0)
    for before, after in zip(X, got):
        if (before != after).any():
            lb = np.bincount(before[:n], weights=duration[np.arange(n), before[:n]], minlength=instance.n_nodes)
            la = np.bincount(after[:n], weights=duration[np.arange(n), after[:n]], minlength=instance.n_nodes)
            assert la[lb.argmax()] < lb.max()


def reference_release(X, rows, instance):
    X = X.copy()
    n = instance.n_tasks
    for r in rows:
        load = {}
        for t in range(n):
            load[X[r, t]] = load.get(X[r, t], 0.0) + instance.duration[t, X[r, t]]
        if len(load) <= 1:
            continue
        victim = min(load, key=lambda j: (load[j], j))
        for t in range(n):
            if X[r, t] != victim:
                continue
            finish = {j: load[j] + instance.duration[t, j]
                      for j in instance.eligible_nodes(t) if j != victim and j in load}
            if finish:
                best = min(finish, key=lambda j: (finish[j], j))
                X[r, t] = best
                load[best] = finish[best]
    return X


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
    _release_node(got, rows, PlanMutation(codec)._duration, codec.eligible_ptr, codec.eligible_nodes,
                  np.empty(instance.n_nodes), np.empty(instance.n_nodes, dtype=np.bool_))
    np.testing.assert_array_equal(got, reference_release(X, rows, instance))
    assert instance.eligible[np.arange(n), got[:, :n]].all()
    for before, after in zip(X[rows], got[rows]):
        used_before, used_after = set(before[:n].tolist()), set(after[:n].tolist())
        assert used_after <= used_before  # tasks only move onto nodes already in use
        if (before != after).any():  # it took work off one node only, moving tasks off it
            moved_from = set(before[:n][before[:n] != after[:n]].tolist())
            assert len(moved_from) == 1


def test_eligibility_repair_fixes_out_of_range_and_ineligible_genes(codec):
    instance = codec.instance
    n = codec.n_tasks
    X = np.full((3, n + 1), -2.7)
    X[1] = instance.n_nodes + 5
    X[2, :n] = np.argmin(instance.eligible, axis=1)  # an ineligible node wherever there is one
    repaired = EligibilityRepair(codec).fix(X)
    assert instance.eligible[np.arange(n), repaired[:, :n]].all()
    assert ((repaired[:, n] >= 0) & (repaired[:, n] < codec.n_orders)).all()


rows = arrays(np.int32, st.tuples(st.integers(0, 12), st.just(5)), elements=st.integers(0, 2))


def first_unseen(X, other):
    """Reference: keep a row unless it is in ``other`` or equals an earlier row."""
    expected, seen = [], {tuple(r) for r in other}
    for row in map(tuple, X):
        expected.append(row not in seen)
        seen.add(row)
    return expected


@settings(max_examples=60, deadline=None)
@given(rows, rows)
def test_duplicate_elimination_removes_exact_duplicates_only(X, other):
    expected = first_unseen(X, other)
    pop = new_population(X)
    kept = RowHashDuplicateElimination().do(pop, new_population(other))
    assert [tuple(ind.X) for ind in kept] == [tuple(r) for r, k in zip(X, expected) if k]
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


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.just(2)), elements=st.integers(0, 4).map(float)),
       arrays(np.float64, st.just(30), elements=st.sampled_from([0.0, 0.0, 1.0, 2.0])))
def test_archive_keeps_the_non_dominated_least_violating_plans(F, cv):
    cv = cv[: len(F)]
    archive = ParetoArchive()
    X = np.arange(len(F), dtype=np.int32)[:, None]
    for lo in range(0, len(F), 7):  # fed in batches, like generations
        archive.add(X[lo:lo + 7], F[lo:lo + 7], F[lo:lo + 7], cv[lo:lo + 7])
    pool = np.flatnonzero(cv <= (0.0 if (cv <= 0).any() else cv.min()))
    front = pool[non_dominated(F[pool])]
    distinct = {F[i].tobytes(): i for i in front[::-1]}  # earliest of equal objective vectors
    assert sorted(archive.X[:, 0].tolist()) == sorted(distinct.values())


def test_a_search_space_smaller_than_the_population_ends_cleanly():
    """Two tasks on two nodes have four plans: generations with no new plan change nothing."""
    from apportion.core.model import Cluster, Instance, Node, Task, Workload

    inst = Instance.build(Workload(tasks=(Task("a", 1.0), Task("b", 2.0))),
                          Cluster(nodes=(Node("n0", "cpu", 1.0, 1.0), Node("n1", "cpu", 2.0, 1.0))))
    result = NSGA2Allocator(population=50, generations=40).allocate(Evaluator(inst), seed=1)
    assert 1 <= len(result.plans) <= 4

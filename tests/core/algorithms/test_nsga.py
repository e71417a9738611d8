"""NSGA-II/III allocators: fronts, constraints, options, the order pool and the archive, on
small instances."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from apportion.core.algorithms import get_allocator
from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.nsga import (
    NSGA2Allocator,
    NSGA3Allocator,
    ParetoArchive,
    insertion_seeds,
    order_pool,
)
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Task, Workload
from apportion.core.pareto import non_dominated, objective_matrix
from tests.core.algorithms.instances import small_instance

OBJECTIVES = ("makespan", "utilization", "imbalance")


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
    for a, b in zip(first.plans, second.plans, strict=True):
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
    # The insertion seeds too (each baseline's insertion schedule and earliest-finish placement).
    for plan in insertion_seeds(instance, baseline_plans(evaluator).values()):
        stats = evaluator.stats(plan.assignment, plan.order)
        assert weakly_dominated_by(front, objective_matrix(stats, OBJECTIVES)[0])


def test_the_memetic_step_only_runs_when_makespan_is_an_objective(instance):
    from apportion.core.algorithms import local_search

    calls = []
    original = local_search.LocalSearch.improve

    def counted(self, *args, **kwargs):
        calls.append(args[1])
        return original(self, *args, **kwargs)

    local_search.LocalSearch.improve = counted
    try:
        NSGA2Allocator(population=10, generations=5, local_search=7).allocate(Evaluator(instance), seed=0)
        with_makespan = list(calls)
        NSGA2Allocator(population=10, generations=5, objectives=("utilization", "imbalance")).allocate(
            Evaluator(instance), seed=0)
    finally:
        local_search.LocalSearch.improve = original
    assert with_makespan and set(with_makespan) == {7} and len(with_makespan) <= 5
    assert calls == with_makespan  # none without makespan


def test_memetic_searches_back_off_while_they_miss(instance, monkeypatch):
    """Late searches mostly miss; waiting after misses runs far fewer of them than one per
    generation (``MAX_WAIT = 0`` turns the waiting off)."""
    from apportion.core.algorithms import local_search

    calls = []
    original = local_search.LocalSearch.improve

    def counted(self, *args, **kwargs):
        calls.append(args[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(local_search.LocalSearch, "improve", counted)
    counts = []
    for wait in (local_search.MemeticStep.MAX_WAIT, 0):
        monkeypatch.setattr(local_search.MemeticStep, "MAX_WAIT", wait)
        calls.clear()
        NSGA2Allocator(population=10, generations=60).allocate(Evaluator(instance), seed=0)
        counts.append(len(calls))
    assert 1 <= counts[0] <= 0.75 * counts[1], counts


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
    assert all(b >= a * (1 - 1e-12) for a, b in pairwise(hv))
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
    assert all(np.array_equal(a.assignment, b.assignment) for a, b in zip(parallel.plans, serial.plans, strict=True))
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
    (dict(local_search=-1), "local_search"),
    (dict(local_search=2.5), "local_search"),
])
def test_bad_options_are_spec_errors(options, field):
    with pytest.raises(SpecError) as err:
        NSGA2Allocator(**options)
    assert err.value.field == field


def test_order_pool_holds_distinct_topological_orders(instance):
    orders = order_pool(instance, [p.order for p in baseline_plans(Evaluator(instance)).values()])
    assert len({o.tobytes() for o in orders}) == len(orders)
    first_eligible = np.argmax(instance.eligible, axis=1).astype(np.int32)
    Evaluator(instance).check(np.tile(first_eligible, (len(orders), 1)), orders)  # raises if not topological


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

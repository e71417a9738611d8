"""The hypervolume's reference box: fixed per instance before the search, a true lower bound
as its ideal, the deterministic baselines' worst as its nadir, and the one box the reported
hypervolume and the convergence curve are measured in."""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.core.algorithms.baselines import BASELINES, RandomAllocator
from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.api import Settings, optimize
from apportion.core.defaults import DEFAULT_OBJECTIVES, OBJECTIVES, STREAMING_OBJECTIVES
from apportion.core.evaluate import Evaluator
from apportion.core.model import Instance
from apportion.core.pareto import objective_matrix
from apportion.core.reference_box import reference_box
from apportion.core.replan import NodeFailure, replan
from apportion.core.scenarios import build
from tests.core.algorithms.instances import SHAPES, make_instance

ALL = tuple(name for name in OBJECTIVES if name != "migrations")


def plan_rows(instance: Instance, seeds=range(4)) -> np.ndarray:
    """STATS rows of every baseline's plan and of random plans."""
    evaluator = Evaluator(instance)
    plans = [cls().build(instance) for cls in BASELINES] + [RandomAllocator().build(instance, s) for s in seeds]
    return np.vstack([evaluator.stats(p.assignment, p.order) for p in plans])


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 30), st.integers(1, 5), st.integers(0, 10**6), st.sampled_from(SHAPES), st.integers(1, 4),
       st.sampled_from([1.0, 100.0]))
def test_no_plan_beats_the_ideal(n, m, seed, shape, requests, stretch):
    """Random instances, their requests released close together or far apart."""
    instance = make_instance(n, 2 * n, m, seed, shape=shape, requests=requests)
    workload = dataclasses.replace(instance.workload, requests=tuple(
        dataclasses.replace(r, release=r.release * stretch) for r in instance.workload.requests))
    instance = Instance.build(workload, instance.cluster)
    box = reference_box(instance, ALL)
    F = objective_matrix(plan_rows(instance), ALL)
    assert np.all(F >= box.ideal - 1e-9 * np.abs(box.ideal)), (F.min(axis=0), box.ideal)
    assert np.all(box.nadir >= box.ideal)


def test_no_plan_of_a_replanned_instance_beats_its_ideal():
    """Pinned tasks (already run), nodes busy until later, previous nodes: the re-planning
    instance's bounds hold too, for its baselines and its searched front."""
    instance = make_instance(30, 60, 4, 5, requests=3)
    plan = HeftAllocator().build(instance)
    end = Evaluator(instance).schedule(plan).end
    residual, result = replan(instance, plan, float(np.median(end)), [NodeFailure(instance.node_ids[0])],
                              settings=Settings(population=12, generations=4, objectives=(*ALL, "migrations")))
    assert (residual.pinned_node >= 0).any()
    box = reference_box(residual, (*ALL, "migrations"))
    F = np.vstack([objective_matrix(plan_rows(residual), box.objectives),
                   objective_matrix(result.front_stats, box.objectives)])
    assert np.all(F >= box.ideal - 1e-9 * np.abs(box.ideal))


def test_the_nadir_is_the_worst_deterministic_baseline_and_the_ideal_of_utilisation_is_one():
    instance = make_instance(25, 50, 4, 2, requests=2)
    box = reference_box(instance, ("makespan", "utilization"))
    evaluator = Evaluator(instance)
    rows = [evaluator.stats(cls().build(instance).assignment, cls().build(instance).order)
            for cls in BASELINES if cls.name != "random"]
    F = objective_matrix(np.vstack(rows), ("makespan", "utilization"))
    np.testing.assert_array_equal(box.nadir, F.max(axis=0))
    record = box.record()
    assert record["objectives"]["utilization"]["ideal"] == 1.0
    assert record["objectives"]["utilization"]["nadir"] == -F[:, 1].max()
    assert record["reference_point"] == 1.1


def test_the_box_is_the_instance_s_whatever_the_algorithm_budget_or_seed():
    workload, cluster = build("medical_diagnosis", size=4, nodes=5, seed=1)
    records = []
    for run in (Settings(population=12, generations=3, seed=0), Settings(population=20, generations=6, seed=9),
                Settings(algorithm="heft"), Settings(algorithm="greedy", seed=4)):
        records.append(optimize(Instance.build(workload, cluster), run).summary()["reference_box"])
    assert all(record == records[0] for record in records)
    other = optimize(Instance.build(workload, cluster), Settings(algorithm="heft", objectives=STREAMING_OBJECTIVES))
    assert other.summary()["reference_box"]["id"] != records[0]["id"]


@pytest.mark.parametrize("objectives", [DEFAULT_OBJECTIVES, STREAMING_OBJECTIVES])
def test_a_front_holding_heft_s_plan_scores_at_least_heft_alone(objectives):
    """The medical case of issue 10: NSGA-II's front weakly dominates HEFT's plan (seeded into
    its population), so in the fixed box it can never report less than HEFT alone."""
    instance = Instance.build(*build("medical_diagnosis", size=6, nodes=6, seed=0))
    searched = optimize(instance, Settings(population=16, generations=5, objectives=objectives))
    heft = optimize(instance, Settings(algorithm="heft", objectives=objectives))
    F = objective_matrix(searched.front_stats, objectives)
    heft_F = objective_matrix(heft.front_stats, objectives)[0]
    assert np.any(np.all(F <= heft_F, axis=1))
    assert searched.hypervolume >= heft.hypervolume > 0.0


def test_the_last_convergence_step_is_the_reported_hypervolume():
    instance = Instance.build(*build("multimodal_speech", size=3, nodes=5, seed=2))
    result = optimize(instance, Settings(population=16, generations=6, objectives=STREAMING_OBJECTIVES))
    curve = [record["hypervolume"] for record in result.history]
    assert curve[-1] == result.hypervolume
    assert all(a <= b for a, b in pairwise(curve))

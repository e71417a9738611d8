"""The pymoo glue (core.algorithms.pymoo_adapters): the problem's objectives and constraints,
and NSGA-II survival against a plain-Python reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from apportion.core.algorithms.nsga import ParetoArchive, order_pool
from apportion.core.algorithms.pymoo_adapters import PlanProblem, RankAndCrowdingSurvival, constraint_columns
from apportion.core.algorithms.variation import PlanCodec
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Cluster, Instance, Link, Node, Task, Workload
from tests.core.algorithms.instances import small_instance
from tests.reference.naive_survival import reference_survival

OBJECTIVES = ("makespan", "utilization", "imbalance")


def test_constraints_are_lateness_with_deadlines_and_unroutable_edges_without_links():
    nodes = (Node("a", "cpu", 1.0, 8.0, zone="x"), Node("b", "cpu", 1.0, 8.0, zone="y"))
    linked = Cluster(nodes=nodes, default_bandwidth=10.0)
    split = Cluster(nodes=nodes, links=(Link("x", "x", 10.0), Link("y", "y", 10.0)))
    plain, late = Workload(tasks=(Task("t", 1.0),)), Workload(tasks=(Task("t", 1.0, deadline=5.0),))
    assert constraint_columns(Instance.build(plain, linked)) == []
    assert constraint_columns(Instance.build(late, linked)) == [STAT_INDEX["lateness"]]
    assert constraint_columns(Instance.build(late, split)) == [STAT_INDEX["lateness"], STAT_INDEX["unroutable"]]


def test_problem_scores_a_batch_in_minimisation_form_and_feeds_the_archive():
    inst = small_instance(n_tasks=20, n_edges=35, n_nodes=4)
    evaluator = Evaluator(inst)
    codec = PlanCodec(inst, order_pool(inst))
    X = codec.random(12, np.random.default_rng(0))
    stats = evaluator.stats(*codec.split(X))
    bound = stats[3, [STAT_INDEX[o] for o in OBJECTIVES]] * [1.0, -1.0, 1.0]
    archive = ParetoArchive()
    problem = PlanProblem(evaluator, codec, OBJECTIVES, archive, bound)
    out = problem.evaluate(X, return_values_of=["F", "G"], return_as_dictionary=True)
    F = stats[:, [STAT_INDEX[o] for o in OBJECTIVES]] * [1.0, -1.0, 1.0]
    np.testing.assert_array_equal(out["F"], F)
    np.testing.assert_array_equal(out["G"], F - bound)  # no deadline, all linked: only the bounds
    assert problem.evaluations == 12
    # The archive holds the plans that weakly beat the bound (plan 3 at least) and are non-dominated.
    assert len(archive) >= 1 and (archive.F <= bound).all()


@settings(max_examples=80, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 3)), elements=st.integers(0, 4).map(float)),
       arrays(np.float64, st.just(30), elements=st.sampled_from([0.0, 0.0, 0.0, 0.5, 2.0])),
       st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_survival_matches_the_reference(F, cv, n_survive, seed):
    cv = cv[: len(F)]
    n_survive = min(n_survive, len(F))
    index, rank, crowd = RankAndCrowdingSurvival.choose(F, cv, n_survive, np.random.default_rng(seed))
    ref_index, ref_rank, ref_crowd = reference_survival(F, cv, n_survive, np.random.default_rng(seed))
    assert index.tolist() == ref_index
    assert rank.tolist() == ref_rank
    np.testing.assert_array_equal(crowd, ref_crowd)

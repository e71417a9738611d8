"""NSGA-II on small WfCommons workflows keeps the two guarantees that hold by construction:
its fastest plan is never slower than HEFT's, and its front weakly dominates every baseline
plan (it seeds them and archives every non-dominated plan it sees).

The hypervolume comparison with other optimisers is a benchmark claim
(benchmarks/bench_quality.py), not asserted here.
"""

import numpy as np
import pytest

from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.algorithms.nsga import NSGA2Allocator
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Instance
from apportion.core.pareto import DEFAULT_OBJECTIVES, objective_matrix
from apportion.core.synthetic import random_cluster
from apportion.core.wfformat import generate_wfcommons

pytestmark = pytest.mark.slow

CASES = [("montage", 60, 6, 1), ("epigenomics", 60, 8, 2), ("cycles", 70, 7, 3)]


@pytest.fixture(scope="module", params=CASES, ids=[f"{r}-{n}" for r, n, _, _ in CASES])
def outcome(request):
    recipe, tasks, nodes, seed = request.param
    instance = Instance.build(generate_wfcommons(recipe, tasks, seed=seed), random_cluster(nodes, seed=seed))
    evaluator = Evaluator(instance)
    result = NSGA2Allocator(population=40, generations=40).allocate(evaluator, seed=seed)
    # Baselines scored independently of the run (same seed: the random baseline is the one NSGA-II saw).
    reference = Evaluator(instance)
    base = {name: reference.stats(p.assignment, p.order)[0]
            for name, p in baseline_plans(reference, seed=seed).items()}
    return result, base


def test_front_is_nonempty_and_every_plan_routable(outcome):
    result, _ = outcome
    assert len(result.plans) == result.stats.shape[0] >= 1
    assert np.all(result.stats[:, STAT_INDEX["unroutable"]] == 0)


def test_fastest_plan_is_never_slower_than_heft(outcome):
    result, base = outcome
    fastest = result.stats[:, STAT_INDEX["makespan"]].min()
    assert fastest <= base["heft"][STAT_INDEX["makespan"]]


def test_front_weakly_dominates_every_baseline_plan(outcome):
    result, base = outcome
    front = objective_matrix(result.stats, DEFAULT_OBJECTIVES)
    missed = [name for name, stats in base.items()
              if not np.any(np.all(front <= objective_matrix(stats, DEFAULT_OBJECTIVES)[0], axis=1))]
    assert missed == []

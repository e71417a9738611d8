"""Robust objectives: sampled scenarios, their aggregation, and robust optimisation end to end."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from apportion.core.algorithms.baselines import baseline_plans
from apportion.core.api import Settings, optimize
from apportion.core.cli import main
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, STATS, Evaluator, Plan
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Task, Workload
from apportion.core.pareto import non_dominated, objective_matrix
from apportion.core.robust import TIME_COLUMNS, ScenarioEvaluator, aggregate, scenario_instances, unit_mean_lognormal
from apportion.core.simulate import Uncertainty
from apportion.core.synthetic import random_cluster, random_workload
from tests.reference.naive_robust import p95_reference, unit_mean_lognormal_reference

NOISE = Uncertainty(duration_sigma=0.4, transfer_sigma=0.3, link_slowdown_probability=0.2, link_slowdown_factor=3.0)


def small_instance(seed=3, n_tasks=30, n_edges=60, n_nodes=5, **workload):
    return Instance.build(random_workload(n_tasks, n_edges, seed=seed, n_requests=3, **workload),
                          random_cluster(n_nodes, seed=seed))


@pytest.fixture(scope="module")
def instance():
    return small_instance(gpu_only_share=0.2)


def random_plans(instance, count, seed):
    """Random eligible assignments (P, n) sharing the instance's topological order."""
    rng = np.random.default_rng(seed)
    assign = np.array([[rng.choice(instance.eligible_nodes(t)) for t in range(instance.n_tasks)]
                       for _ in range(count)], dtype=np.int32)
    return assign, instance.topo_order


def test_scenarios_are_deterministic_for_a_seed(instance):
    first = scenario_instances(instance, NOISE, 5, seed=11)
    again = scenario_instances(instance, NOISE, 5, seed=11)
    other = scenario_instances(instance, NOISE, 5, seed=12)
    for a, b, c in zip(first, again, other, strict=True):
        for name in ("work", "duration", "parent_data", "child_data", "latency", "inv_bandwidth"):
            assert np.array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(a.work, c.work)
    # The K scenarios differ from each other.
    assert not np.array_equal(first[0].work, first[1].work)


def test_factors_have_mean_one_and_the_asked_spread():
    instance = small_instance(n_tasks=60, n_edges=150, n_nodes=8)
    sigma, transfer_sigma, p = 0.5, 0.3, 0.25
    noise = Uncertainty(duration_sigma=sigma, transfer_sigma=transfer_sigma, link_slowdown_probability=p,
                        link_slowdown_factor=2.0)
    scenarios = scenario_instances(instance, noise, 300, seed=5)
    work = np.concatenate([s.work / instance.work for s in scenarios])
    data = np.concatenate([s.parent_data / instance.parent_data for s in scenarios])
    for factors, s in ((work, sigma), (data, transfer_sigma)):
        # Mean 1 within 4 standard errors; log-factors have the asked standard deviation.
        assert abs(factors.mean() - 1.0) < 4 * factors.std() / math.sqrt(factors.size)
        assert np.std(np.log(factors)) == pytest.approx(s, rel=0.03)
        assert np.mean(np.log(factors)) == pytest.approx(-s * s / 2, abs=4 * s / math.sqrt(factors.size))
    off = ~np.eye(instance.n_nodes, dtype=bool)  # the diagonal is 0 s/MB
    slowed = np.concatenate([s.inv_bandwidth[off] / instance.inv_bandwidth[off] for s in scenarios])
    assert set(np.unique(slowed)) == {1.0, 2.0}
    share = np.mean(slowed == 2.0)
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / (slowed.size / 2))  # pairs are drawn once, both ways
    for s in scenarios:  # congestion is symmetric and scales latency with bandwidth
        ratio = np.ones_like(s.inv_bandwidth)
        ratio[off] = s.inv_bandwidth[off] / instance.inv_bandwidth[off]
        assert np.array_equal(ratio, ratio.T)
        lat = instance.latency > 0
        assert lat[off].any()
        assert np.array_equal(s.latency[lat] / instance.latency[lat], ratio[lat])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 3000))
def test_lognormal_factors_are_the_c_librarys_exp_bit_for_bit(seed, size):
    """The same bits on every CPU: NumPy's exp of an array differs in its last bits where AVX-512
    is present, and picked another robust plan there."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(size) * 4.0
    sigma = np.where(rng.random(size) < 0.2, 0.0, rng.random(size) * 4.0)
    assert np.array_equal(unit_mean_lognormal(z, sigma), unit_mean_lognormal_reference(z, sigma))
    assert np.array_equal(unit_mean_lognormal(z, 0.7), unit_mean_lognormal_reference(z, [0.7] * size))
    assert np.all(unit_mean_lognormal(z, 0.0) == 1.0)


def test_per_kind_sigma_leaves_other_kinds_exact(instance):
    noisy_kind = instance.task_kinds[0]
    scenarios = scenario_instances(instance, Uncertainty(duration_sigma={noisy_kind: 0.4}), 4, seed=1)
    is_noisy = instance.kind_of == 0
    for s in scenarios:
        assert np.array_equal(s.work[~is_noisy], instance.work[~is_noisy])
        assert not np.array_equal(s.work[is_noisy], instance.work[is_noisy])
        assert np.array_equal(s.parent_data, instance.parent_data)


def test_perturbed_instance_is_consistent(instance):
    """Child CSR data follows parent CSR data edge by edge, and the evaluator's task times are
    the scenario's duration table exactly."""
    plan = baseline_plans(Evaluator(instance), seed=0)["heft"]
    for s in scenario_instances(instance, NOISE, 3, seed=2):
        by_parent = {}
        for t in range(s.n_tasks):
            for e in range(s.parent_ptr[t], s.parent_ptr[t + 1]):
                by_parent[(int(s.parent_idx[e]), t)] = s.parent_data[e]
        by_child = {}
        for t in range(s.n_tasks):
            for e in range(s.child_ptr[t], s.child_ptr[t + 1]):
                by_child[(t, int(s.child_idx[e]))] = s.child_data[e]
        assert by_parent == by_child
        schedule = Evaluator(s).schedule(plan)
        tasks = np.arange(s.n_tasks)
        assert np.array_equal(schedule.end, schedule.start + s.duration[tasks, plan.assignment])
        assert np.array_equal(np.isfinite(s.duration), instance.eligible)


def test_scenarios_keep_each_nodes_overhead(instance):
    """A scenario scales the work, never the executor's per-task overhead."""
    from dataclasses import replace

    from apportion.core.robust import perturbed_instance

    cluster = replace(instance.cluster, nodes=tuple(replace(nd, overhead=0.5 * j)
                                                    for j, nd in enumerate(instance.cluster.nodes)))
    inst = Instance.build(instance.workload, cluster)
    n, m, E = inst.n_tasks, inst.n_nodes, inst.n_edges
    doubled = perturbed_instance(inst, np.full(n, 2.0), np.ones(E), np.ones((m, m)))
    expected = np.where(inst.eligible, inst.overhead + 2.0 * (inst.duration - inst.overhead), np.inf)
    assert np.allclose(doubled.duration[inst.eligible], expected[inst.eligible], rtol=1e-12)


@pytest.mark.parametrize("statistic", ["mean", "p95"])
def test_no_noise_is_the_plain_evaluator_exactly(instance, statistic):
    robust = ScenarioEvaluator(instance, Uncertainty(), scenarios=6, seed=3, statistic=statistic)
    plain = Evaluator(instance)
    assign, order = random_plans(instance, 9, seed=4)
    assert np.array_equal(robust.stats(assign, order), plain.stats(assign, order))
    plan = Plan(assign[0], order)
    assert np.array_equal(robust.schedule(plan).end, plain.schedule(plan).end)
    assert robust.evaluations == 9


@pytest.mark.parametrize("statistic", ["mean", "p95"])
def test_aggregation_is_the_statistic_over_separate_scenario_runs(instance, statistic):
    robust = ScenarioEvaluator(instance, NOISE, scenarios=12, seed=8, statistic=statistic)
    assign, order = random_plans(instance, 7, seed=9)
    per_scenario = np.stack([Evaluator(s).stats(assign, order) for s in scenario_instances(instance, NOISE, 12, 8)])
    expected = per_scenario.mean(axis=0)
    if statistic == "p95":
        for name in TIME_COLUMNS:
            expected[:, STAT_INDEX[name]] = np.percentile(per_scenario[:, :, STAT_INDEX[name]], 95, axis=0)
    got = robust.stats(assign, order)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    makespan = per_scenario[:, :, STAT_INDEX["makespan"]]
    assert np.ptp(makespan, axis=0).min() > 0  # the noise does move the makespan
    if statistic == "p95":
        assert np.all(got[:, STAT_INDEX["makespan"]] > np.median(makespan, axis=0))


def test_every_plan_sees_the_same_scenarios(instance):
    """Common random numbers: a plan's robust statistics do not depend on its batch or call."""
    robust = ScenarioEvaluator(instance, NOISE, scenarios=8, seed=1)
    assign, order = random_plans(instance, 6, seed=2)
    together = robust.stats(assign, order)
    alone = np.vstack([robust.stats(row, order) for row in assign[::-1]])[::-1]
    assert np.array_equal(together, alone)


def test_unroutable_plans_stay_infinite_not_nan():
    workload = Workload(tasks=(Task("a", 10.0), Task("b", 10.0)), edges=(Edge("a", "b", 5.0),))
    cluster = Cluster(nodes=(Node("n1", "cpu", 10.0, 8.0, zone="x"), Node("n2", "cpu", 10.0, 8.0, zone="y")),
                      links=(Link("x", "y", 0.0),))
    instance = Instance.build(workload, cluster)
    robust = ScenarioEvaluator(instance, NOISE, scenarios=5, seed=0)
    stats = robust.stats(np.array([[0, 1], [0, 0]]), instance.topo_order)
    assert stats[0, STAT_INDEX["makespan"]] == math.inf and stats[0, STAT_INDEX["unroutable"]] == 1.0
    assert np.isfinite(stats[1, STAT_INDEX["makespan"]]) and stats[1, STAT_INDEX["unroutable"]] == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30).flatmap(lambda k: arrays(np.float64, (k, 3, len(STATS)),
                                                   elements=st.floats(0.0, 1e6, allow_nan=False))))
def test_aggregate_against_a_plain_python_reference(per_scenario):
    got_mean, got_p95 = aggregate(per_scenario, "mean"), aggregate(per_scenario, "p95")
    K, P, S = per_scenario.shape
    for i in range(P):
        for c in range(S):
            column = per_scenario[:, i, c].tolist()
            mean = sum(column) / K
            assert got_mean[i, c] == pytest.approx(mean, rel=1e-9, abs=1e-9)
            expected = p95_reference(column) if STATS[c] in TIME_COLUMNS else mean
            assert got_p95[i, c] == pytest.approx(expected, rel=1e-9, abs=1e-9)
            if min(column) == max(column):  # all scenarios agree: that value, exactly
                assert got_mean[i, c] == got_p95[i, c] == column[0]


def test_optimize_robust_end_to_end(instance):
    chosen_settings = Settings(population=16, generations=6, seed=2, robust_scenarios=8, noise_sigma=0.4,
                               robust_validation=100)
    result = optimize(instance, chosen_settings)
    plain = Evaluator(instance)
    assign = np.array([p.assignment for p in result.front])
    orders = np.array([p.order for p in result.front])
    plain.check(assign, orders)  # eligible nodes, topological orders
    # The front holds the statistics over the 100 validation scenarios (drawn in chunks),
    # recomputed here from all 100 at once; none dominates another.
    validation = ScenarioEvaluator(instance, chosen_settings.noise(), scenarios=100,
                                   seed=chosen_settings.validation_seed())
    np.testing.assert_array_equal(result.front_stats, validation.stats(assign, orders))
    F = objective_matrix(result.front_stats, chosen_settings.objectives)
    assert len(non_dominated(F)) == len(result.front)
    # The validation scenarios are not the search's K.
    search = chosen_settings.search_evaluator(instance)
    assert not np.array_equal(result.front_stats, search.stats(assign, orders))
    # Nominal metrics from the plain evaluator, robust ones from the scenarios, side by side.
    chosen = result.front[result.chosen_index]
    nominal = plain.stats(chosen.assignment, chosen.order)[0]
    summary = result.summary()
    assert summary["makespan"] == nominal[STAT_INDEX["makespan"]] == result.chosen.stat("makespan")
    assert summary["robust_makespan"] == result.front_stats[result.chosen_index, STAT_INDEX["makespan"]]
    assert summary["robust_makespan"] > summary["makespan"]  # p95 under sigma 0.4 noise
    assert summary["robust_scenarios"] == 8 and summary["robust_statistic"] == "p95"
    assert summary["robust_validation"] == 100
    nominal_keys = set(optimize(instance, Settings(population=16, generations=2, seed=2)).summary())
    assert nominal_keys < set(summary)


def test_robust_choice_is_no_worse_than_the_nominal_choice_under_noise(instance):
    """The robust plan weakly beats, over the validation scenarios, the plan a nominal run with
    the same seed picks, in every objective."""
    for seed in range(3):
        robust_settings = Settings(population=16, generations=8, seed=seed, robust_scenarios=6, noise_sigma=0.4,
                                   robust_validation=80)
        result = optimize(instance, robust_settings)
        nominal = optimize(instance, Settings(population=16, generations=8, seed=seed))
        anchor = nominal.front[nominal.chosen_index]
        validation = ScenarioEvaluator(instance, robust_settings.noise(), scenarios=80,
                                       seed=robust_settings.validation_seed())
        anchor_stats = validation.stats(anchor.assignment, anchor.order)
        assert result.nominal_choice_robust_metrics["makespan"] == anchor_stats[0, STAT_INDEX["makespan"]]
        ours = objective_matrix(result.front_stats[result.chosen_index], robust_settings.objectives)
        theirs = objective_matrix(anchor_stats, robust_settings.objectives)
        assert np.all(ours <= theirs)
        assert result.summary()["nominal_choice_robust_makespan"] >= result.summary()["robust_makespan"]


def test_robust_deadlines_stay_constraints():
    """With deadlines, the robust front holds only the plans of least p95 lateness over the
    validation scenarios, and the nominal choice is no less late than they are."""
    late = small_instance(seed=5, deadline_share=0.3)
    robust_settings = Settings(population=16, generations=8, seed=1, robust_scenarios=6, noise_sigma=0.4,
                               robust_validation=60)
    result = optimize(late, robust_settings)
    lateness = result.front_stats[:, STAT_INDEX["lateness"]]
    assert np.all(lateness == lateness.min())
    assert result.nominal_choice_robust_metrics["lateness"] >= lateness.min()
    validation = ScenarioEvaluator(late, robust_settings.noise(), scenarios=60, seed=robust_settings.validation_seed())
    heft = baseline_plans(Evaluator(late), seed=0)["heft"]
    assert validation.stats(heft.assignment, heft.order)[0, STAT_INDEX["lateness"]] > 0  # the deadlines bind


def test_robust_run_is_reproducible_bit_for_bit(instance):
    robust_settings = Settings(population=12, generations=5, seed=7, robust_scenarios=4, robust_validation=70)
    first, second = optimize(instance, robust_settings), optimize(instance, robust_settings)
    assert np.array_equal(first.front_stats, second.front_stats)
    assert first.chosen_index == second.chosen_index
    assert np.array_equal(first.chosen.plan.assignment, second.chosen.plan.assignment)
    assert np.array_equal(first.chosen.plan.order, second.chosen.plan.order)


@pytest.mark.parametrize("algorithm", ["nsga2", "nsga3"])
def test_objective_bounds_keep_only_plans_that_beat_them(instance, algorithm):
    """NSGA-II/III with objective bounds returns only plans no worse than the bound in every
    objective, once a plan meeting it is known (here HEFT's plan, whose objectives are the bound)."""
    from apportion.core.algorithms import get_allocator

    evaluator = Evaluator(instance)
    heft = baseline_plans(evaluator, seed=0)["heft"]
    objectives = ("makespan", "utilization", "imbalance", "energy") if algorithm == "nsga3" else \
        ("makespan", "utilization", "imbalance")
    bound = objective_matrix(evaluator.stats(heft.assignment, heft.order), objectives)[0]
    allocator = get_allocator(algorithm, population=16, generations=10, objectives=objectives,
                              objective_bounds=bound, initial_plans=(heft,))
    result = allocator.allocate(evaluator, seed=1)
    F = objective_matrix(result.stats, objectives)
    assert len(result.plans) >= 1 and np.all(F <= bound)
    unbounded = get_allocator(algorithm, population=16, generations=10, objectives=objectives).allocate(evaluator, seed=1)
    assert not np.all(objective_matrix(unbounded.stats, objectives) <= bound)  # the bound did cut the front
    with pytest.raises(SpecError, match="objective_bounds"):
        get_allocator(algorithm, objectives=objectives, objective_bounds=bound[:2])


def test_robust_without_noise_is_the_nominal_run(instance):
    nominal = optimize(instance, Settings(population=12, generations=5, seed=4))
    robust = optimize(instance, Settings(population=12, generations=5, seed=4, robust_scenarios=3, noise_sigma=0.0))
    assert np.array_equal(nominal.front_stats, robust.front_stats)
    assert nominal.chosen_index == robust.chosen_index
    assert np.array_equal(nominal.chosen.end, robust.chosen.end)
    assert robust.robust_metrics["makespan"] == nominal.metrics["makespan"]
    assert nominal.robust_metrics is None and "robust_makespan" not in nominal.summary()


@pytest.mark.parametrize("options, field", [
    ({"robust_scenarios": -1}, "robust_scenarios"),
    ({"robust_scenarios": 2.5}, "robust_scenarios"),
    ({"robust_scenarios": True}, "robust_scenarios"),
    ({"robust_statistic": "p99"}, "robust_statistic"),
    ({"noise_sigma": -0.1}, "noise_sigma"),
    ({"noise_sigma": float("nan")}, "noise_sigma"),
    ({"noise_sigma": "0.3"}, "noise_sigma"),
    ({"robust_validation": 0}, "robust_validation"),
    ({"robust_validation": 1.5}, "robust_validation"),
])
def test_bad_robust_settings_name_the_field(options, field):
    with pytest.raises(SpecError) as error:
        Settings(**options)
    assert error.value.field == field


def test_scenario_evaluator_rejects_bad_arguments(instance):
    with pytest.raises(SpecError, match="statistic"):
        ScenarioEvaluator(instance, NOISE, statistic="median")
    with pytest.raises(SpecError, match="scenarios"):
        ScenarioEvaluator(instance, NOISE, scenarios=0)


def test_cli_robust_flags(tmp_path, capsys):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "core" / "examples"
    argv = ["optimize", str(examples / "workload.yaml"), str(examples / "cluster.yaml"), "--population", "12",
            "--generations", "4", "--out", str(tmp_path)]
    assert main(argv + ["--json", "--robust", "6", "--robust-statistic", "mean", "--noise-sigma", "0.2",
                        "--robust-validation", "50"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["robust_scenarios"] == 6 and summary["robust_statistic"] == "mean"
    assert summary["robust_validation"] == 50
    assert summary["nominal_choice_robust_makespan"] >= summary["robust_makespan"]
    assert summary["noise_sigma"] == 0.2 and math.isfinite(summary["robust_makespan"])
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["robust_metrics"]["makespan"] == summary["robust_makespan"]
    assert main(argv + ["--robust", "-2"]) == 2
    assert "robust_scenarios" in capsys.readouterr().err
    assert main(argv + ["--robust", "4", "--robust-validation", "0"]) == 2
    assert "robust_validation" in capsys.readouterr().err

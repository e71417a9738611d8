"""The execution simulator: zero noise is the evaluator, the compiled kernel matches a
plain-Python reference draw for draw, known distributions come out right, failures never
lose or duplicate a task that can still run, and the same seed gives the same samples."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan
from apportion.core.metrics import plan_metrics
from apportion.core.model import Cluster, Edge, Instance, Node, Request, Task, Workload
from apportion.core.simulate import METRICS, Uncertainty, simulate
from apportion.core.synthetic import random_cluster, random_workload
from tests.core.test_evaluate import instances, most_at_once, random_assignment, random_topological_order, with_slots
from tests.reference.naive_simulate import Timeline, reference_sample, splitmix


def random_plan(instance, seed):
    rng = np.random.default_rng(seed)
    return Plan(random_assignment(instance, rng), random_topological_order(instance, rng))


# ---------------------------------------------------------------------------------------------
# Zero noise is the evaluator.

@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances, plan_seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(["retry", "backup"]))
def test_zero_noise_reproduces_the_evaluator(instance, plan_seed, rule):
    plan = random_plan(instance, plan_seed)
    sched = Evaluator(instance).schedule(plan)
    result = simulate(instance, plan, Uncertainty(failure_rule=rule), samples=2, seed=plan_seed,
                      return_schedules=True)
    assert np.array_equal(result.start[0], result.start[1]) and np.array_equal(result.end[0], result.end[1])
    finite = np.isfinite(sched.end)
    if finite.all():
        assert np.array_equal(result.start[0], sched.start) and np.array_equal(result.end[0], sched.end)
        assert np.array_equal(result.node[0], plan.assignment) and (result.attempts == 1).all()
        want = plan_metrics(instance, sched)
        got = {name: result[name][0] for name in METRICS}
        assert got["makespan"] == want["makespan"]
        for name in ("utilization", "imbalance", "throughput"):
            assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
        # Requests without tasks have no response time here (plan_metrics counts them as ending at 0).
        if np.isin(np.arange(len(instance.request_ids)), instance.request_of).all():
            for name in ("mean_response", "p95_response"):
                assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12), name
            assert got["deadline_misses"] == want["deadline_misses"]
        assert got["completion_rate"] == got["stability"] == 1.0
        assert got["failed_tasks"] == got["retried_tasks"] == got["moved_tasks"] == 0
    elif rule == "retry":
        # An unroutable plan: what the evaluator can schedule is identical; a task with an input
        # that can never arrive is reported incomplete instead of stalling its node forever.
        # (With several slots the evaluator stalls one slot of the node, and the tasks after it
        # may take other slots in the simulator: only incompleteness is compared.)
        if instance.slot_ptr is None:
            assert np.array_equal(result.end[0][finite], sched.end[finite])
            assert np.array_equal(result.start[0][finite], sched.start[finite])
        assert result["completion_rate"][0] < 1.0
        for t in range(instance.n_tasks):
            for e in range(instance.parent_ptr[t], instance.parent_ptr[t + 1]):
                p = instance.parent_idx[e]
                a, b = plan.assignment[p], plan.assignment[t]
                if a != b and not np.isfinite(instance.inv_bandwidth[a, b]):
                    assert not np.isfinite(result.end[0][t])


# ---------------------------------------------------------------------------------------------
# The compiled kernel against the plain-Python reference, noise and failures on.

uncertainties = st.builds(
    Uncertainty,
    duration_sigma=st.one_of(st.sampled_from([0.0, 0.5]), st.just({"cnn": 0.8, "etl": 0.1})),
    transfer_sigma=st.sampled_from([0.0, 0.4]),
    link_slowdown_probability=st.sampled_from([0.0, 0.3]),
    link_slowdown_factor=st.sampled_from([1.0, 5.0]),
    mtbf=st.one_of(st.sampled_from([math.inf, 5.0, 40.0]), st.just({"gpu": 3.0, "cpu": 30.0})),
    repair_mean=st.sampled_from([0.0, 2.0, 20.0, math.inf]),
    repair_distribution=st.sampled_from(["exponential", "fixed"]),
    failure_rule=st.sampled_from(["retry", "backup"]),
    max_retries=st.integers(0, 4),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instance=instances, plan_seed=st.integers(0, 2**32 - 1), unc=uncertainties, seed=st.integers(0, 2**40))
def test_kernel_matches_reference(instance, plan_seed, unc, seed):
    plan = random_plan(instance, plan_seed)
    samples = 3
    got = simulate(instance, plan, unc, samples=samples, seed=seed, return_schedules=True)
    for s in range(samples):
        start, end, node, attempts, metrics = reference_sample(instance, plan, unc, got.key, s)
        assert np.array_equal(got.end[s], end)
        assert np.array_equal(got.start[s], start)
        assert np.array_equal(got.node[s], node)
        assert np.array_equal(got.attempts[s], attempts)
        np.testing.assert_allclose(got.values[s], metrics, rtol=1e-12, atol=1e-12, err_msg=str(METRICS))


# ---------------------------------------------------------------------------------------------
# Known distributions.

def one_task(work=100.0, speed=10.0, release=3.0, kind="cnn"):
    wl = Workload(tasks=(Task("only", work, kind=kind, request="r"),), requests=(Request("r", release=release),))
    return Instance.build(wl, Cluster(nodes=(Node("n", "cpu", speed, 64.0),)))


def test_lognormal_duration_mean_within_its_confidence_interval():
    inst = one_task()
    planned, sigma, samples = 10.0, 0.6, 20_000
    result = simulate(inst, Plan([0], [0]), Uncertainty(duration_sigma={"cnn": sigma}), samples=samples, seed=7)
    duration = result["makespan"] - 3.0
    # Lognormal with mu = ln(planned) - sigma^2 / 2: mean exp(mu + sigma^2 / 2) = planned.
    mu = math.log(planned) - sigma**2 / 2
    mean = math.exp(mu + sigma**2 / 2)
    sd = math.sqrt((math.exp(sigma**2) - 1) * math.exp(2 * mu + sigma**2))
    half_width = 3.2905 * sd / math.sqrt(samples)  # 99.9 % two-sided
    assert abs(duration.mean() - mean) < half_width
    # The log of the duration is normal(mu, sigma): its mean and spread match too.
    logs = np.log(duration)
    assert abs(logs.mean() - mu) < 3.2905 * sigma / math.sqrt(samples)
    assert logs.std() == pytest.approx(sigma, rel=0.03)
    # A kind without a sigma has no noise.
    assert (simulate(inst, Plan([0], [0]), Uncertainty(duration_sigma={"etl": sigma}), samples=5)["makespan"]
            == 13.0).all()


def test_failure_before_completion_has_the_exponential_probability():
    inst = one_task(release=0.0)  # 10 s of work from time 0, when every node is up
    samples, mtbf = 20_000, 25.0
    result = simulate(inst, Plan([0], [0]), Uncertainty(mtbf=mtbf, repair_mean=1.0, max_retries=100),
                      samples=samples, seed=11)
    # Up-times are exponential and memoryless: the first attempt survives with exp(-10 / mtbf).
    p = math.exp(-10.0 / mtbf)
    survived = np.mean(result["failed_tasks"] == 0)
    assert abs(survived - p) < 3.2905 * math.sqrt(p * (1 - p) / samples)
    assert (result["completion_rate"] == 1.0).all()
    assert (result["makespan"][result["failed_tasks"] == 0] == 10.0).all()
    assert (result["makespan"][result["failed_tasks"] == 1] > 10.0).all()


# ---------------------------------------------------------------------------------------------
# Failures: nothing lost while an eligible node survives, nothing run twice, and what cannot
# complete is reported.

@pytest.mark.parametrize("slots", [[], [2, 1, 3, 1, 2, 4]], ids=["one-slot", "slots"])
@pytest.mark.parametrize("rule", ["retry", "backup"])
def test_every_task_completes_exactly_once_under_heavy_failures(rule, slots):
    inst = Instance.build(random_workload(120, 300, seed=5, n_requests=4, gpu_only_share=0.2),
                          with_slots(random_cluster(6, seed=5), slots))
    plan = HeftAllocator().build(inst)
    unc = Uncertainty(duration_sigma=0.3, mtbf=15.0, repair_mean=3.0, failure_rule=rule, max_retries=10_000)
    result = simulate(inst, plan, unc, samples=20, seed=3, return_schedules=True)
    assert (result["completion_rate"] == 1.0).all()
    assert result["failed_tasks"].sum() > 50  # the failures really happened
    for s in range(result.samples):
        start, end, node = result.start[s], result.end[s], result.node[s]
        assert np.isfinite(end).all() and (result.attempts[s] >= 1).all()
        assert inst.eligible[np.arange(inst.n_tasks), node].all()
        if rule == "retry":
            assert np.array_equal(node, plan.assignment)
        skey = splitmix(result.key ^ s)
        for j in range(inst.n_nodes):
            mine = np.flatnonzero(node == j)
            # Each completed run lies inside one up period of its node...
            timeline = Timeline(skey, j, 15.0, 3.0, False)
            for t in mine:
                up_at, next_fail = timeline.up_from(start[t])
                assert up_at == start[t] and end[t] <= next_fail
            # ... and a node runs one task at a time, or up to its slots.
            assert most_at_once(start[mine], end[mine]) <= inst.slots[j]
            if not slots:
                spans = sorted(zip(start[mine], end[mine], strict=True))
                assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
        for t in range(inst.n_tasks):
            for e in range(inst.parent_ptr[t], inst.parent_ptr[t + 1]):
                p = inst.parent_idx[e]
                assert start[t] >= end[p] + inst.transfer_time(inst.parent_data[e], node[p], node[t])


def gpu_chain(spare: bool) -> Instance:
    """``seg`` (GPU only, 1000 s) feeds ``report``, which feeds ``archive``; ``ingest`` is
    independent. Nodes: a CPU, a GPU and, if ``spare``, a spare GPU of another kind."""
    tasks = (Task("seg", 40_000.0, kind="cnn", allowed_kinds=("gpu", "spare_gpu"), request="case"),
             Task("report", 10.0, kind="etl", request="case", deadline=5000.0),
             Task("archive", 10.0, kind="etl", request="case"),
             Task("ingest", 10.0, kind="etl", request="other"))
    wl = Workload(tasks=tasks, edges=(Edge("seg", "report", 1.0), Edge("report", "archive", 1.0)),
                  requests=(Request("case", deadline=6000.0), Request("other")))
    nodes = (Node("cpu", "cpu", 10.0, 64.0), Node("gpu", "gpu", 40.0, 40.0))
    nodes += (Node("spare", "spare_gpu", 40.0, 40.0),) if spare else ()
    return Instance.build(wl, Cluster(nodes=nodes, default_bandwidth=100.0))


# The GPU fails within its 1000 s task (mean up-time 1 s) and never comes back.
GPU_DIES = dict(mtbf={"gpu": 1.0}, repair_mean=math.inf, max_retries=5)


@pytest.mark.parametrize("rule", ["retry", "backup"])
def test_task_whose_only_node_dies_is_incomplete_with_its_descendants(rule):
    inst = gpu_chain(spare=False)
    plan = Plan([1, 0, 0, 0], [0, 1, 2, 3])
    result = simulate(inst, plan, Uncertainty(failure_rule=rule, **GPU_DIES), samples=50, seed=9,
                      return_schedules=True)
    assert np.isinf(result.end[:, :3]).all() and np.isfinite(result.end[:, 3]).all()
    assert (result.attempts[:, 0] == 1).all() and (result.attempts[:, 1:3] == 0).all()
    assert (result["completion_rate"] == 0.25).all()
    assert (result["failed_tasks"] == 1).all() and (result["stability"] == 0.75).all()
    assert (result["makespan"] == 1.0).all()  # ingest, the only completed task: 10 / 10 s
    # The task deadline and the request deadline of the unfinished case are missed.
    assert (result["deadline_misses"] == 2).all()
    # Responses cover the completed request only.
    assert (result["mean_response"] == 1.0).all()


def test_backup_moves_a_lost_task_to_a_surviving_node():
    inst = gpu_chain(spare=True)
    plan = Plan([1, 0, 0, 0], [0, 1, 2, 3])
    result = simulate(inst, plan, Uncertainty(failure_rule="backup", **GPU_DIES), samples=50, seed=4,
                      return_schedules=True)
    assert (result["completion_rate"] == 1.0).all()
    assert (result.node[:, 0] == 2).all() and (result["moved_tasks"] == 1).all()
    assert (result["failed_tasks"] == 1).all() and (result["retried_tasks"] == 0).all()
    # It restarts on the spare the moment the GPU fails (well within its 1000 s run).
    fail_at = result.start[:, 0]
    assert (fail_at > 0).all() and (fail_at < 1000.0).all()
    assert np.array_equal(result.end[:, 0], fail_at + 1000.0)
    retry = simulate(inst, plan, Uncertainty(failure_rule="retry", **GPU_DIES), samples=50, seed=4)
    assert (retry["completion_rate"] == 0.25).all()


# ---------------------------------------------------------------------------------------------
# Determinism.

@pytest.fixture(scope="module")
def medium():
    inst = Instance.build(random_workload(200, 600, seed=2, n_requests=5), random_cluster(8, seed=2))
    return inst, HeftAllocator().build(inst)


NOISY = Uncertainty(duration_sigma=0.4, transfer_sigma=0.3, link_slowdown_probability=0.2,
                    link_slowdown_factor=4.0, mtbf=150.0, repair_mean=10.0, failure_rule="backup")


def test_same_seed_same_samples_and_prefixes(medium):
    inst, plan = medium
    a = simulate(inst, plan, NOISY, samples=40, seed=123, return_schedules=True)
    b = simulate(inst, plan, NOISY, samples=40, seed=123, return_schedules=True)
    assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.end, b.end)
    # A sample depends on the seed and its number only.
    prefix = simulate(inst, plan, NOISY, samples=15, seed=123)
    assert np.array_equal(prefix.values, a.values[:15], equal_nan=True)
    other = simulate(inst, plan, NOISY, samples=40, seed=124)
    assert not np.array_equal(other["makespan"], a["makespan"])
    # Samples differ from each other.
    assert np.unique(a["makespan"]).size == 40
    # A Generator seeds it too, reproducibly.
    g1 = simulate(inst, plan, NOISY, samples=5, seed=np.random.default_rng(1))
    g2 = simulate(inst, plan, NOISY, samples=5, seed=np.random.default_rng(1))
    assert np.array_equal(g1.values, g2.values, equal_nan=True)


def test_parallel_equals_serial(medium):
    inst, plan = medium
    serial = simulate(inst, plan, NOISY, samples=37, seed=5, return_schedules=True)
    parallel = simulate(inst, plan, NOISY, samples=37, seed=5, return_schedules=True, parallel=True)
    assert np.array_equal(serial.values, parallel.values, equal_nan=True)
    assert np.array_equal(serial.start, parallel.start) and np.array_equal(serial.node, parallel.node)


def test_summary_reports_mean_and_percentiles(medium):
    inst, plan = medium
    result = simulate(inst, plan, NOISY, samples=60, seed=8)
    summary = result.summary()
    assert set(summary) == set(METRICS)
    makespan = result["makespan"]
    assert summary["makespan"]["mean"] == pytest.approx(makespan.mean())
    assert summary["makespan"]["p50"] == pytest.approx(np.median(makespan))
    assert summary["makespan"]["p5"] <= summary["makespan"]["p50"] <= summary["makespan"]["p95"]
    # With noise the realised makespan spreads around (and mostly above) the static one.
    static = Evaluator(inst).schedule(plan).stat("makespan")
    assert makespan.std() > 0 and summary["makespan"]["p95"] > static


# ---------------------------------------------------------------------------------------------
# Bad input.

@pytest.mark.parametrize("kwargs, field", [
    ({"duration_sigma": -0.1}, "uncertainty.duration_sigma"),
    ({"duration_sigma": {"cnn": math.inf}}, "uncertainty.duration_sigma['cnn']"),
    ({"transfer_sigma": "wide"}, "uncertainty.transfer_sigma"),
    ({"link_slowdown_probability": 1.5}, "uncertainty.link_slowdown_probability"),
    ({"link_slowdown_factor": 0.5}, "uncertainty.link_slowdown_factor"),
    ({"mtbf": 0.0}, "uncertainty.mtbf"),
    ({"mtbf": {"gpu": -1.0}}, "uncertainty.mtbf['gpu']"),
    ({"repair_mean": math.nan}, "uncertainty.repair_mean"),
    ({"repair_distribution": "weibull"}, "uncertainty.repair_distribution"),
    ({"failure_rule": "pray"}, "uncertainty.failure_rule"),
    ({"max_retries": -1}, "uncertainty.max_retries"),
    ({"max_retries": 1.5}, "uncertainty.max_retries"),
])
def test_bad_uncertainty_names_the_field(kwargs, field):
    with pytest.raises(SpecError) as err:
        Uncertainty(**kwargs)
    assert err.value.field == field


def test_bad_call_arguments():
    inst = one_task()
    with pytest.raises(SpecError, match="samples"):
        simulate(inst, Plan([0], [0]), samples=0)
    with pytest.raises(SpecError, match="seed"):
        simulate(inst, Plan([0], [0]), samples=1, seed=-1)
    with pytest.raises(ValueError, match="outside"):
        simulate(inst, Plan([1], [0]), samples=1)

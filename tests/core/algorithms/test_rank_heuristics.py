"""CPoP and BIL: the compiled versions against plain-Python references, against SAGA's own
schedulers on tiny graphs (when anrg-saga is installed), and as NSGA-II seeds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms import get_allocator
from apportion.core.algorithms.heft import heft_priority, mean_transfer
from apportion.core.algorithms.rank_heuristics import cpop_schedule, rank_seeds
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator
from tests.core.algorithms.instances import SHAPES, make_instance, small_instance
from tests.reference.naive_rank_heuristics import bil_reference, cpop_reference


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), density=st.floats(0.0, 2.5),
       m=st.integers(1, 6), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3))
def test_cpop_matches_the_reference(seed, n, density, m, shape, requests):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests, gpu_only=0.15)
    except SpecError:
        assume(False)
    _, assign, start, end = cpop_schedule(inst)
    ref_assign, ref_start, ref_end = cpop_reference(inst)
    np.testing.assert_array_equal(assign, ref_assign)
    np.testing.assert_array_equal(start, ref_start)
    # The plan's order makes the evaluator decode the same schedule.
    schedule = Evaluator(inst).schedule(get_allocator("cpop").build(inst))
    assert schedule.stat("makespan") == pytest.approx(ref_end.max(), rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), density=st.floats(0.0, 2.5),
       m=st.integers(1, 6), shape=st.sampled_from(SHAPES), requests=st.integers(1, 3))
def test_bil_matches_the_reference(seed, n, density, m, shape, requests):
    try:
        inst = make_instance(n, int(n * density), m, seed, shape=shape, requests=requests, gpu_only=0.15)
    except SpecError:
        assume(False)
    plan = get_allocator("bil").build(inst)
    ref_assign, ref_order, _ = bil_reference(inst)
    np.testing.assert_array_equal(plan.order, ref_order)
    np.testing.assert_array_equal(plan.assignment, ref_assign)


def test_mean_transfer_readings():
    inst = small_instance()
    rate, time = mean_transfer(inst, "rate"), mean_transfer(inst, "time")
    assert rate.shape == time.shape == inst.child_data.shape
    assert (time >= 0).all() and (rate >= 0).all()
    with pytest.raises(ValueError, match="transfer must be"):
        mean_transfer(inst, "bandwidth")
    # Both readings give topological priority lists.
    for transfer in ("rate", "time"):
        position = np.empty(inst.n_tasks, dtype=np.int64)
        position[heft_priority(inst, transfer)] = np.arange(inst.n_tasks)
        for t in range(inst.n_tasks):
            for c in inst.child_idx[inst.child_ptr[t]:inst.child_ptr[t + 1]]:
                assert position[t] < position[c]


def test_rank_seeds_are_valid_plans_and_deterministic():
    inst = small_instance(n_tasks=60, n_edges=120)
    first, second = rank_seeds(inst), rank_seeds(inst)
    assert set(first) == {"cpop", "cpop-time", "cpop-saga", "heft-time", "bil"}
    ev = Evaluator(inst)
    for name, plan in first.items():
        np.testing.assert_array_equal(plan.assignment, second[name].assignment)
        np.testing.assert_array_equal(plan.order, second[name].order)
        assert inst.eligible[np.arange(inst.n_tasks), plan.assignment].all()
        assert np.isfinite(ev.schedule(plan).stat("makespan"))


def test_nsga2_front_is_no_slower_than_the_rank_seeds():
    from apportion.core.algorithms.nsga import NSGA2Allocator

    inst = small_instance(n_tasks=60, n_edges=120)
    ev = Evaluator(inst)
    result = NSGA2Allocator(population=20, generations=3).allocate(ev, seed=0)
    fastest = result.stats[:, STAT_INDEX["makespan"]].min()
    for plan in rank_seeds(inst).values():
        assert fastest <= ev.schedule(plan).stat("makespan") + 1e-9


# --- against SAGA itself, on tiny graphs -----------------------------------------------------

def _saga_makespan(scheduler, inst):
    import logging
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import bench_saga

    logging.disable(logging.WARNING)
    net, graph = bench_saga.to_saga(inst)
    rows = [(t.name, node, t.start, t.end) for node, placed in scheduler.schedule(net, graph).items()
            for t in placed]
    return bench_saga.from_saga(inst, rows)[1]


def _chain_instance():
    # One entry, one exit (SAGA adds no source or sink), distinct works: no ties.
    from apportion.core.model import Cluster, Edge, Instance, Link, Node, Task, Workload

    tasks = tuple(Task(f"t{i}", w) for i, w in enumerate((3.0, 5.0, 2.0, 7.0, 4.0, 1.5)))
    edges = (Edge("t0", "t1", 40.0), Edge("t0", "t2", 10.0), Edge("t0", "t3", 25.0), Edge("t1", "t4", 30.0),
             Edge("t2", "t4", 5.0), Edge("t3", "t5", 20.0), Edge("t4", "t5", 15.0))
    nodes = (Node("a", "cpu", 1.0, 64.0), Node("b", "cpu", 2.0, 64.0), Node("c", "cpu", 3.5, 64.0))
    links = (Link("default", "default", bandwidth=20.0, latency=0.0),)
    return Instance.build(Workload(tasks=tasks, edges=edges), Cluster(nodes=nodes, links=links))


def test_bil_reproduces_saga_on_a_tiny_graph():
    pytest.importorskip("saga.schedulers")
    from saga.schedulers import BILScheduler

    inst = _chain_instance()
    ours = Evaluator(inst).schedule(get_allocator("bil").build(inst)).stat("makespan")
    assert ours == pytest.approx(_saga_makespan(BILScheduler(), inst), rel=1e-9)


def test_cpop_saga_variant_reproduces_saga_on_a_tiny_graph():
    pytest.importorskip("saga.schedulers")
    from saga.schedulers import CpopScheduler

    from apportion.core.algorithms.rank_heuristics import insertion_plan

    inst = _chain_instance()
    ours = Evaluator(inst).schedule(insertion_plan(cpop_schedule(inst, "time", saga=True))).stat("makespan")
    assert ours == pytest.approx(_saga_makespan(CpopScheduler(), inst), rel=1e-9)

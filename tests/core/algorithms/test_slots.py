"""Nodes with several slots in the baselines, the rank seeds and the local search: they plan on
the slots as machines of their own (``Instance.slot_instance``) and name each slot's node."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.algorithms.baselines import BASELINES, SCANNING, FastestNodeAllocator
from apportion.core.algorithms.constructive import on_nodes
from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.algorithms.list_heuristics import DuplexAllocator
from apportion.core.algorithms.local_search import LocalSearch, slot_assignment
from apportion.core.algorithms.rank_heuristics import BilAllocator, CpopAllocator, rank_seeds
from apportion.core.evaluate import Evaluator, Plan
from apportion.core.model import Instance
from apportion.core.synthetic import random_cluster, random_workload
from tests.core.algorithms.instances import independent
from tests.core.test_evaluate import most_at_once, random_assignment, random_topological_order, with_slots

ALLOCATORS = (*BASELINES, *SCANNING, FastestNodeAllocator, DuplexAllocator, CpopAllocator, BilAllocator)


def slotted(n, m, seed, slots):
    return Instance.build(random_workload(n, 2 * n, seed=seed, n_requests=max(1, n // 10)),
                          with_slots(random_cluster(m, seed=seed, n_zones=2), slots))


def assert_runs_within_slots(instance, plan):
    sched = Evaluator(instance).schedule(plan)
    for j in range(instance.n_nodes):
        on = np.flatnonzero(plan.assignment == j)
        assert most_at_once(sched.start[on], sched.end[on]) <= instance.slots[j]
    return sched


def test_slot_instance_has_a_machine_per_slot_and_free_transfers_inside_a_node():
    inst = slotted(30, 3, 1, [3, 1, 2])
    machines = inst.slot_instance
    assert machines.n_nodes == 6 and machines.slot_ptr is None and machines.slot_instance is machines
    assert [i.split("#")[0] for i in machines.node_ids] == [inst.node_ids[j] for j in (0, 0, 0, 1, 2, 2)]
    assert np.array_equal(machines.duration, inst.duration[:, [0, 0, 0, 1, 2, 2]])
    assert machines.latency[0, 2] == 0.0 and machines.inv_bandwidth[0, 2] == 0.0
    assert machines.same_node()[0, 2] and not machines.same_node()[2, 3]
    assert inst.slot_instance is inst.slot_instance  # built once
    one = slotted(30, 3, 1, [])
    assert one.slot_instance is one and one.slot_ptr is None


@pytest.mark.parametrize("allocator", ALLOCATORS, ids=lambda cls: cls.name)
def test_independent_tasks_fill_every_slot(allocator):
    # Eight identical tasks on two identical nodes of four slots: one round, as on eight nodes.
    base = independent(8, 2)
    inst = Instance.build(base.workload, dataclasses.replace(
        base.cluster, nodes=tuple(dataclasses.replace(nd, slots=4) for nd in base.cluster.nodes)))
    plan = allocator().build(inst)
    sched = assert_runs_within_slots(inst, plan)
    if allocator.name not in ("random", "round-robin", "met", "greedy", "fastest-node", "bil", "cpop"):
        assert sched.stat("makespan") == pytest.approx(inst.duration[0, 0])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), m=st.integers(1, 4), seed=st.integers(0, 10_000),
       slots=st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_every_baseline_plans_on_the_slots_and_names_their_nodes(n, m, seed, slots):
    inst = slotted(n, m, seed, slots)
    for allocator in ALLOCATORS:
        plan = allocator().build(inst)
        Evaluator(inst).check(plan.assignment[None], plan.order[None])
        machines = allocator().build(inst.slot_instance)
        assert np.array_equal(plan.assignment, inst.slot_nodes[machines.assignment]), allocator.name
        assert np.array_equal(plan.order, machines.order)
        assert_runs_within_slots(inst, plan)
    for name, plan in rank_seeds(inst).items():
        Evaluator(inst).check(plan.assignment[None], plan.order[None])
        assert np.array_equal(plan.order, rank_seeds(inst.slot_instance)[name].order)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), m=st.integers(1, 4), seed=st.integers(0, 10_000),
       slots=st.lists(st.integers(1, 4), min_size=1, max_size=4), plan_seed=st.integers(0, 2**32 - 1))
def test_slot_assignment_is_the_evaluators_and_the_local_search_respects_slots(n, m, seed, slots, plan_seed):
    inst = slotted(n, m, seed, slots)
    rng = np.random.default_rng(plan_seed)
    plan = Plan(random_assignment(inst, rng), random_topological_order(inst, rng))
    slot = slot_assignment(inst, plan)
    assert np.array_equal(inst.slot_nodes[slot], plan.assignment)
    # On the slots as machines, with the slots the evaluator took, the one-slot decode gives
    # the evaluator's schedule bit for bit.
    real = Evaluator(inst).schedule(plan)
    machines = Evaluator(inst.slot_instance).schedule(Plan(slot, plan.order))
    assert np.array_equal(real.start, machines.start) and np.array_equal(real.end, machines.end)
    search = LocalSearch(inst)
    for improved, _ in (search.improve(plan, budget=20, rotate=0.3), search.insertion_plan(plan, choose_nodes=True),
                        search.insertion_plan(plan)):
        Evaluator(inst).check(improved.assignment[None], improved.order[None])
        assert_runs_within_slots(inst, improved)
    if inst.slot_ptr is None:
        assert np.array_equal(slot, plan.assignment)


def test_pinned_tasks_keep_their_times_on_distinct_slots():
    inst = slotted(12, 1, 4, [2])
    plan = Plan(np.zeros(12, dtype=np.int32), inst.topo_order)
    sched = Evaluator(inst).schedule(plan)
    now = float(np.median(sched.start))
    tasks = tuple(dataclasses.replace(t, pinned_node="n0", pinned_start=float(sched.start[i]),
                                      pinned_end=float(sched.end[i])) if sched.start[i] < now else t
                  for i, t in enumerate(inst.workload.tasks))
    nodes = tuple(dataclasses.replace(nd, available_from=now) for nd in inst.cluster.nodes)
    replan = Instance.build(dataclasses.replace(inst.workload, tasks=tasks),
                            dataclasses.replace(inst.cluster, nodes=nodes))
    machines = replan.slot_instance
    pinned = np.flatnonzero(replan.pinned_node >= 0)
    for s in (0, 1):
        mine = pinned[machines.pinned_node[pinned] == s]
        assert most_at_once(replan.pinned_start[mine], replan.pinned_end[mine]) <= 1
    plan = on_nodes(replan, HeftAllocator().build(machines))
    assert_runs_within_slots(replan, plan)

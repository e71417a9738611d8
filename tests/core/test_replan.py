"""Re-planning: what ran stays put, the rest is planned again after a change."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan
from apportion.core.model import Edge, Instance, Node, Request, Task, Workload
from apportion.core.replan import NodeFailure, NodeJoin, UrgentRequests, carry_over, residual_instance
from apportion.core.synthetic import random_cluster, random_workload
from tests.core.test_evaluate import random_assignment, random_topological_order


def running_plan(n, m, seed):
    inst = Instance.build(random_workload(n, 2 * n, seed=seed, n_requests=3), random_cluster(m, seed=seed, n_zones=1))
    rng = np.random.default_rng(seed)
    plan = Plan(random_assignment(inst, rng), random_topological_order(inst, rng))
    return inst, plan, Evaluator(inst).schedule(plan)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 40), m=st.integers(2, 6), seed=st.integers(0, 1000), when=st.floats(0.05, 0.95),
       fail=st.booleans(), plan_seed=st.integers(0, 1000))
def test_finished_and_running_tasks_never_move(n, m, seed, when, fail, plan_seed):
    inst, plan, sched = running_plan(n, m, seed)
    now = when * sched.stat("makespan")
    failed_node = int(plan.assignment[0])
    changes = [NodeFailure(inst.node_ids[failed_node])] if fail else []
    try:
        residual = residual_instance(inst, plan, now, changes)
    except SpecError as error:  # the failed node was the only one some unfinished task fits
        assert "fits no node" in str(error) and fail
        return
    rng = np.random.default_rng(plan_seed)
    new = Plan(random_assignment(residual, rng), random_topological_order(residual, rng))
    after = Evaluator(residual).schedule(new)
    lost = fail & (plan.assignment == failed_node) & (sched.start < now) & (now < sched.end)
    kept = (sched.start < now) & ~lost
    assert np.array_equal(new.assignment[kept], plan.assignment[kept])
    assert np.array_equal(after.start[kept], sched.start[kept]) and np.array_equal(after.end[kept], sched.end[kept])
    # Everything else starts from now on, never on the failed node.
    assert (after.start[~kept] >= now).all()
    if fail:
        assert not (new.assignment[~kept] == failed_node).any()


def small():
    wl = Workload(tasks=(Task("a", 10.0, request="r"), Task("b", 10.0, request="r"), Task("c", 10.0, request="r")),
                  edges=(Edge("a", "b", 5.0), Edge("b", "c", 5.0)), requests=(Request("r"),))
    nodes = (Node("n0", "cpu", 1.0, 8.0), Node("n1", "cpu", 1.0, 8.0))
    from apportion.core.model import Cluster

    inst = Instance.build(wl, Cluster(nodes=nodes, default_bandwidth=10.0))
    return inst, Plan([0, 0, 1], [0, 1, 2])  # a: 0-10 on n0, b: 10-20 on n0, c: 20.5-30.5 on n1


def test_failure_loses_the_running_task_and_a_repaired_node_returns():
    inst, plan = small()
    residual = residual_instance(inst, plan, 15.0, [NodeFailure("n0", repair=100.0)])
    a, b, c = range(3)
    assert residual.pinned_node.tolist() == [0, -1, -1]  # a finished; b was running on n0 and is lost
    assert residual.previous_node.tolist() == [-1, -1, 1]  # tasks of the failed node have to move
    assert residual.available_from.tolist() == [115.0, 15.0]
    best = Evaluator(residual).schedule(Plan([0, 1, 1], [0, 1, 2]))
    assert best.start[b] == 15.0 and best.start[c] == 25.0  # b restarts on n1 at once


def test_permanent_failure_and_a_joining_node():
    inst, plan = small()
    residual = residual_instance(inst, plan, 15.0, [NodeFailure("n0"), NodeJoin(Node("n2", "cpu", 2.0, 8.0))])
    assert residual.node_ids == ("n0", "n1", "n2")
    assert residual.eligible[1].tolist() == [False, True, True]  # no new work on the failed node
    sched = Evaluator(residual).schedule(Plan([0, 2, 2], [0, 1, 2]))
    assert sched.start[1] == 15.0 + 0.0 and sched.end[1] == 20.0  # the new node is twice as fast


def test_urgent_requests_join_the_plan_from_now():
    inst, plan = small()
    urgent = Workload(tasks=(Task("u", 4.0, request="urgent", priority=5.0),), edges=(Edge("a", "u", 1.0),),
                      requests=(Request("urgent", release=3.0, deadline=40.0),))
    residual = residual_instance(inst, plan, 12.0, [UrgentRequests(urgent)])
    u = residual.task_ids.index("u")
    assert residual.request_release[residual.request_of[u]] == 12.0  # released no earlier than now
    carried = carry_over(plan, inst, residual, Plan(np.zeros(4, dtype=np.int32), np.arange(4, dtype=np.int32)))
    assert carried.assignment[:3].tolist() == [0, 0, 1]
    sched = Evaluator(residual).schedule(carried)
    assert sched.start[u] >= 12.0
    assert sched.stat("moved") == 0


def test_moves_are_counted_against_the_old_plan():
    inst, plan = small()
    residual = residual_instance(inst, plan, 5.0)
    stats = Evaluator(residual).stats(np.array([[0, 0, 1], [0, 1, 0], [0, 1, 1]]), [0, 1, 2])
    from apportion.core.evaluate import STAT_INDEX

    assert stats[:, STAT_INDEX["moved"]].tolist() == [0.0, 2.0, 1.0]


def test_bad_changes_are_named():
    inst, plan = small()
    with pytest.raises(SpecError, match=r"changes.node: unknown node 'n9'"):
        residual_instance(inst, plan, 5.0, [NodeFailure("n9")])
    with pytest.raises(SpecError, match=r"^now: "):
        residual_instance(inst, plan, float("nan"))


def test_replan_warm_starts_and_keeps_what_ran():
    """After a failure, the new front is never worse on makespan than the old plan carried
    over (it seeds the search), and the plan keeps every finished and running task."""
    from apportion.core.api import Settings
    from apportion.core.replan import replan

    inst, plan, sched = running_plan(60, 5, seed=4)
    now = 0.4 * sched.stat("makespan")
    failed = inst.node_ids[int(plan.assignment[-1])]
    residual, result = replan(inst, plan, now, [NodeFailure(failed)],
                              settings=Settings(population=20, generations=15, seed=2,
                                                objectives=("makespan", "utilization", "migrations")))
    pinned = residual.pinned_node >= 0
    chosen = result.chosen
    assert np.array_equal(chosen.plan.assignment[pinned], residual.pinned_node[pinned])
    assert np.array_equal(chosen.start[pinned], residual.pinned_start[pinned])
    assert (chosen.start[~pinned] >= now).all()
    from apportion.core.algorithms.heft import HeftAllocator

    carried = carry_over(plan, inst, residual, HeftAllocator().build(residual))
    carried_makespan = Evaluator(residual).schedule(carried).stat("makespan")
    from apportion.core.evaluate import STAT_INDEX

    assert result.front_stats[:, STAT_INDEX["makespan"]].min() <= carried_makespan
    # Migrations are an objective: the front holds a plan that moves nothing it need not move.
    assert result.front_stats[:, STAT_INDEX["moved"]].min() <= Evaluator(residual).schedule(carried).stat("moved")

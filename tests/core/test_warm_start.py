"""Carrying a published front over to a new run, by task and node id."""

from dataclasses import replace

import numpy as np

from apportion.core.algorithms.baselines import RoundRobinAllocator
from apportion.core.algorithms.heft import HeftAllocator
from apportion.core.evaluate import Evaluator
from apportion.core.model import Instance
from apportion.core.synthetic import random_cluster, random_workload
from apportion.core.warm_start import carry_front, with_previous_nodes


def front_of(instance, plans, chosen=0):
    """front.json's plan part, as ``operators.warm_start.front_record`` writes it."""
    return {"tasks": list(instance.task_ids), "nodes": list(instance.node_ids), "chosen": chosen,
            "plans": [{"assignment": p.assignment.tolist(), "order": p.order.tolist()} for p in plans]}


def instance_of(n_tasks=30, n_nodes=5, seed=3, cluster=None, workload=None):
    workload = workload or random_workload(n_tasks, 2 * n_tasks, seed=seed, n_requests=2)
    return Instance.build(workload, cluster or random_cluster(n_nodes, seed=seed, n_zones=1))


def test_on_the_same_instance_every_plan_comes_back_unchanged():
    inst = instance_of()
    plans = [HeftAllocator().build(inst), RoundRobinAllocator().build(inst)]
    carried = carry_front(front_of(inst, plans), inst, HeftAllocator().build(inst))
    for old, new in zip(plans, carried, strict=True):
        assert np.array_equal(old.assignment, new.assignment)
        assert np.array_equal(old.order, new.order)


def test_a_failed_node_and_new_tasks_take_the_fallbacks_node():
    workload = random_workload(30, 60, seed=4, n_requests=2)
    cluster = random_cluster(5, seed=4, n_zones=1)
    old = Instance.build(replace(workload, tasks=workload.tasks[:25],
                                 edges=tuple(e for e in workload.edges if e.target in
                                             {t.id for t in workload.tasks[:25]} and e.source in
                                             {t.id for t in workload.tasks[:25]})), cluster)
    plan = RoundRobinAllocator().build(old)
    down = old.node_ids[int(plan.assignment[0])]
    new = Instance.build(workload, replace(cluster, nodes=tuple(replace(n, failed=n.id == down) for n in cluster.nodes)))
    fallback = HeftAllocator().build(new)
    (carried,) = carry_front(front_of(old, [plan]), new, fallback)
    Evaluator(new).schedule(carried)  # a valid plan: eligible nodes, a topological order
    for t, task in enumerate(new.task_ids):
        j = int(carried.assignment[t])
        if task in old.task_ids and old.node_ids[int(plan.assignment[old.task_ids.index(task)])] != down:
            assert new.node_ids[j] == old.node_ids[int(plan.assignment[old.task_ids.index(task)])], task
        else:
            assert j == fallback.assignment[t], task
        assert new.node_ids[j] != down


def test_previous_nodes_are_those_of_the_chosen_plan_when_still_up():
    inst = instance_of(seed=5)
    plans = [RoundRobinAllocator().build(inst), HeftAllocator().build(inst)]
    front = front_of(inst, plans, chosen=1)
    down = inst.node_ids[int(plans[1].assignment[0])]
    cluster = replace(inst.cluster, nodes=tuple(replace(n, failed=n.id == down) for n in inst.cluster.nodes))
    marked = with_previous_nodes(inst.workload, cluster, front)
    for t, task in enumerate(marked.tasks):
        node = inst.node_ids[int(plans[1].assignment[t])]
        assert task.previous_node == (None if node == down else node), task.id

"""What the constructive allocators (the baselines and HEFT) share: the allocator that builds
one plan and scores it, the data-ready time every placement rule starts from, and planning on
slots: a node with k slots is k one-task-at-a-time machines to these rules
(``Instance.slot_instance``), and the plan found there names the nodes the slots belong to."""

from __future__ import annotations

import functools
import time
from typing import Callable

from apportion.core._jit import jit_inline
from apportion.core.algorithms.base import AllocationResult, Allocator
from apportion.core.evaluate import STATS, Evaluator, Plan
from apportion.core.model import Instance

# Placements per call of a compiled kernel: Python runs the long loops in slices, so that a
# KeyboardInterrupt (Ctrl-C) lands between them.
SLICE_TASKS = 4096


@jit_inline
def data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw):
    """When task ``t`` could start on node ``j``: its release, or its last input's arrival
    there (the cost model's transfer: latency + data / bandwidth, zero on the same node)."""
    ready = release[t]
    for e in range(parent_ptr[t], parent_ptr[t + 1]):
        p = parent_idx[e]
        pj = assign[p]
        arrival = end[p] + (latency[pj, j] + parent_data[e] * inv_bw[pj, j])
        if arrival > ready:
            ready = arrival
    return ready


def on_nodes(instance: Instance, plan: Plan) -> Plan:
    """A plan made on ``instance.slot_instance`` as a plan of ``instance``: each slot named by
    its node (the evaluator then gives each task its slot)."""
    return Plan(instance.slot_nodes[plan.assignment], plan.order)


def planned_on_slots(build: Callable) -> Callable:
    """``build(instance, ...)``, returning a plan or a dict of plans, made on the instance's
    slots as machines of their own (when some node has more than one) and mapped back."""
    @functools.wraps(build)
    def on_slots(instance: Instance, *args, **kwargs):
        machines = instance.slot_instance
        if machines is instance:
            return build(instance, *args, **kwargs)
        made = build(machines, *args, **kwargs)
        if isinstance(made, dict):
            return {name: on_nodes(instance, plan) for name, plan in made.items()}
        return on_nodes(instance, made)
    return on_slots


class ConstructiveAllocator(Allocator):
    """A baseline that builds one plan; ``allocate`` scores it with the shared evaluator.

    Every subclass's ``build`` plans on slots (``planned_on_slots``): a node with k slots takes
    up to k tasks at once in its placement rule too."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        build = cls.__dict__.get("build")
        if build is not None:
            @functools.wraps(build)
            def build_on_slots(self, instance: Instance, *args, **kwargs) -> Plan:
                return planned_on_slots(functools.partial(build, self))(instance, *args, **kwargs)

            cls.build = build_on_slots

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        raise NotImplementedError

    def allocate(self, evaluator: Evaluator, *, seed: int = 0,
                 progress: Callable[[int, dict], None] | None = None) -> AllocationResult:
        """Build the plan and score it; ``progress`` is called once, with step 1 and the stats."""
        began = time.perf_counter()
        plan = self.build(evaluator.instance, seed)
        stats = evaluator.stats(plan.assignment, plan.order)
        seconds = time.perf_counter() - began
        if progress is not None:
            progress(1, dict(zip(STATS, stats[0].tolist(), strict=True)))
        return AllocationResult(algorithm=self.name, plans=[plan], stats=stats, evaluations=1,
                                seconds=seconds)

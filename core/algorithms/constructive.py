"""What the constructive allocators (the baselines and HEFT) share: the allocator that builds
one plan and scores it, and the data-ready time every placement rule starts from."""

from __future__ import annotations

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


class ConstructiveAllocator(Allocator):
    """A baseline that builds one plan; ``allocate`` scores it with the shared evaluator."""

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

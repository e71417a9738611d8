"""List heuristics that choose the next task by its completion times over every node: max-min,
sufferage and duplex (the SAGA heuristics Apportion lacked; ``baselines`` has min-min, MCT,
MET, OLB and fastest-node, ``heft`` HEFT).

Each step scans the candidate tasks (a batch for max-min, the ready tasks for sufferage) and
their earliest completions on each node, appending the chosen task on its best node: O(n x
ready x m) in all, quadratic on wide workflows, so ``baseline_plans`` runs them only when
``affordable`` says so. Candidate nodes, costs and ties follow ``baselines``: the eligible
nodes every input reaches (all eligible nodes if none), lowest task and node index on ties.
"""

from __future__ import annotations

import numpy as np

from apportion.core._jit import jit
from apportion.core.algorithms.constructive import SLICE_TASKS, ConstructiveAllocator, data_ready
from apportion.core.algorithms.registry import register
from apportion.core.evaluate import STAT_INDEX, Evaluator, Plan, link_arrays
from apportion.core.model import Instance

# How the next task is chosen among the candidates, by its best (f1) and second-best (f2)
# completion: max-min takes the largest f1, sufferage the largest f2 - f1.
_MAX_MIN, _SUFFERAGE = 0, 1

# ``affordable``: the most task x candidate-task x node visits a heuristic may cost to be
# run when NSGA-II is seeded (about a second compiled).
SEED_BUDGET = 300_000_000


@jit
def _two_best(t, free, duration, eligible, ready):
    """(best completion, its node, second-best completion) of task ``t`` appended now, over
    the eligible nodes its inputs reach (every eligible node when none do); the second best
    equals the best when it is not finite (one candidate, or unroutable)."""
    m = free.shape[0]
    reachable = False
    for j in range(m):
        if eligible[t, j] and np.isfinite(ready[t, j]):
            reachable = True
    f1, f2, best = np.inf, np.inf, -1
    for j in range(m):
        if not eligible[t, j] or (reachable and not np.isfinite(ready[t, j])):
            continue
        f = max(free[j], ready[t, j]) + duration[t, j]
        if best == -1 or f < f1:
            f2 = f1
            f1, best = f, j
        elif f < f2:
            f2 = f
    return f1, best, (f2 if np.isfinite(f2) else f1)


@jit
def _enter(t, ready, pool, size, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw):
    """Add task ``t`` (its inputs all placed) to the candidates with its data-ready times."""
    for j in range(ready.shape[1]):
        ready[t, j] = data_ready(t, j, release, parent_ptr, parent_idx, parent_data, assign, end, latency, inv_bw)
    pool[size] = t
    return size + 1


@jit
def _choose(rule, pool, size, free, duration, eligible, ready):
    """Position in ``pool`` of the task ``rule`` picks, and that task's best node."""
    best_i, best_node, best_key, best_t = -1, -1, np.inf, -1
    for i in range(size):
        t = pool[i]
        f1, j, f2 = _two_best(t, free, duration, eligible, ready)
        if rule == _MAX_MIN:
            key = -f1
        else:
            key = f1 - f2 if np.isfinite(f2) else 0.0
        if best_i == -1 or key < best_key or (key == best_key and t < best_t):
            best_i, best_node, best_key, best_t = i, j, key, t
    return best_i, best_node


@jit
def _select_schedule(first, last, rule, batched, state, pool, pending, waiting, ready, free, duration, eligible,
                     parent_ptr, parent_idx, parent_data, child_ptr, child_idx, latency, inv_bw, release, assign, end,
                     order):
    """Place tasks ``first..last-1``; ``state`` = [candidates, pending] carries over between
    calls. Batched: the candidates are refilled from the pending tasks only when empty (a
    batch); else every freed task joins at once."""
    n = duration.shape[0]
    size, held = state[0], state[1]
    if first == 0:
        for t in range(n):
            if waiting[t] == 0:
                pending[held] = t
                held += 1
    for k in range(first, last):
        if size == 0 or not batched:
            for i in range(held):
                size = _enter(pending[i], ready, pool, size, release, parent_ptr, parent_idx, parent_data, assign, end,
                              latency, inv_bw)
            held = 0
        i, j = _choose(rule, pool, size, free, duration, eligible, ready)
        t = pool[i]
        size -= 1
        pool[i] = pool[size]
        s = max(free[j], ready[t, j])
        assign[t] = j
        end[t] = s + duration[t, j]
        free[j] = end[t]
        order[k] = t
        for e in range(child_ptr[t], child_ptr[t + 1]):
            c = child_idx[e]
            waiting[c] -= 1
            if waiting[c] == 0:
                pending[held] = c
                held += 1
    state[0], state[1] = size, held


def select_plan(instance: Instance, rule: int, batched: bool) -> Plan:
    """The plan ``_select_schedule`` builds, ``SLICE_TASKS`` placements per kernel call."""
    inst = instance
    n, m = inst.n_tasks, inst.n_nodes
    latency, inv_bw = link_arrays(inst)
    assign = np.full(n, -1, dtype=np.int32)
    order = np.empty(n, dtype=np.int32)
    args = (rule, batched, np.zeros(2, np.int64), np.empty(n, np.int64), np.empty(n, np.int64),
            np.diff(inst.parent_ptr).astype(np.int64), np.empty((n, m)), np.zeros(m),
            np.ascontiguousarray(inst.duration), inst.eligible, inst.parent_ptr, inst.parent_idx, inst.parent_data,
            inst.child_ptr, inst.child_idx, latency, inv_bw, inst.release, assign, np.zeros(n), order)
    for first in range(0, n, SLICE_TASKS):
        _select_schedule(first, min(n, first + SLICE_TASKS), *args)
    return Plan(assign, order)


def widest_level(instance: Instance) -> int:
    """Most tasks at one depth (longest path from a source): the largest batch."""
    inst = instance
    depth = np.zeros(inst.n_tasks, dtype=np.int64)
    for t in inst.topo_order.tolist():
        a, b = inst.parent_ptr[t], inst.parent_ptr[t + 1]
        if b > a:
            depth[t] = depth[inst.parent_idx[a:b]].max() + 1
    return int(np.bincount(depth).max())


def affordable(instance: Instance) -> bool:
    """Whether a scanning heuristic fits ``SEED_BUDGET`` on this instance (n x widest level x m
    bounds the candidates it visits when the ready tasks are about one level)."""
    return instance.n_tasks * widest_level(instance) * instance.n_nodes <= SEED_BUDGET


@register
class MaxMinAllocator(ConstructiveAllocator):
    """Max-min (Ibarra and Kim 1977; Braun et al. 2001): in batches as min-min, but the task of
    largest earliest completion first, so long tasks are not left to the end."""

    name = "max-min"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return select_plan(instance, _MAX_MIN, batched=True)


@register
class SufferageAllocator(ConstructiveAllocator):
    """Sufferage (Maheswaran et al. 1999): repeatedly the ready task that would lose most if
    denied its best node (second-best minus best completion), placed on its best node."""

    name = "sufferage"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        return select_plan(instance, _SUFFERAGE, batched=False)


@register
class DuplexAllocator(ConstructiveAllocator):
    """Duplex (Braun et al. 2001): min-min's and max-min's plans, whichever has the shorter
    makespan (min-min's on a tie)."""

    name = "duplex"

    def build(self, instance: Instance, seed: int = 0) -> Plan:
        from apportion.core.algorithms.baselines import MinMinAllocator

        plans = (MinMinAllocator().build(instance), MaxMinAllocator().build(instance))
        evaluator = Evaluator(instance)
        makespans = [evaluator.stats(p.assignment, p.order, check=False)[0, STAT_INDEX["makespan"]] for p in plans]
        return plans[int(makespans[1] < makespans[0])]

"""Plain-Python reference for the compiled simulator: the model of docs/simulation.md written
out directly, with its own copy of the counter-based generator."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from apportion.core.evaluate import Plan
from apportion.core.model import Instance
from apportion.core.simulate import METRICS, Uncertainty
from tests.reference.naive_evaluate import pick_slot

MASK = 2**64 - 1
DURATION, TRANSFER, LINK, UPTIME, REPAIR = 1, 2, 3, 4, 5


def splitmix(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def uniform(skey: int, stream: int, a: int, b: int) -> float:
    h = splitmix(splitmix(skey ^ (stream << 56) ^ a) ^ b)
    return ((h >> 11) + 0.5) * 2.0**-53


def lognormal_unit_mean(skey: int, stream: int, a: int, sigma: float) -> float:
    if sigma == 0.0:
        return 1.0
    u1, u2 = uniform(skey, stream, a, 0), uniform(skey, stream, a, 1)
    z = math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
    return math.exp(sigma * z - 0.5 * sigma * sigma)


def per_kind(value, kind: str, missing: float) -> float:
    return float(value.get(kind, missing)) if isinstance(value, Mapping) else float(value)


class Timeline:
    """A node's down periods [fail, back), generated in order as far as asked."""

    def __init__(self, skey, node, mtbf, repair, fixed):
        self.skey, self.node, self.mtbf, self.repair, self.fixed = skey, node, mtbf, repair, fixed
        self.periods: list[tuple[float, float]] = []

    def _extend_past(self, x):
        while not self.periods or self.periods[-1][1] <= x:
            k = len(self.periods)
            previous = self.periods[-1][1] if self.periods else 0.0
            f = previous - math.log(uniform(self.skey, UPTIME, self.node, k)) * self.mtbf if math.isfinite(self.mtbf) \
                else math.inf
            if self.fixed or math.isinf(self.repair):
                down = self.repair
            else:
                down = -math.log(uniform(self.skey, REPAIR, self.node, k)) * self.repair
            self.periods.append((f, f + down))

    def up_from(self, x):
        """First time >= x the node is up, and its next failure after that."""
        while True:
            self._extend_past(x)
            f, b = next(p for p in self.periods if p[1] > x)
            if f <= x < b:
                if math.isinf(b):
                    return math.inf, math.inf
                x = b
                continue
            return x, f


# Complexity: the plain-Python twin of simulate._simulate_chunk, kept line for line beside it.
def reference_sample(inst: Instance, plan: Plan, unc: Uncertainty, key: int, sample: int):  # noqa: C901
    n, m = inst.n_tasks, inst.n_nodes
    skey = splitmix(key ^ sample)
    node_kinds = [nd.kind for nd in inst.cluster.nodes]
    timelines = [Timeline(skey, j, per_kind(unc.mtbf, node_kinds[j], math.inf),
                          per_kind(unc.repair_mean, node_kinds[j], 0.0), unc.repair_distribution == "fixed")
                 for j in range(m)]
    backup = unc.failure_rule == "backup"
    start, end = [math.inf] * n, [math.inf] * n
    node = [int(a) for a in plan.assignment]
    attempts = [0] * n
    slots = [int(k) for k in inst.slots]
    free, busy, used = [[0.0] * slots[j] for j in range(m)], [0.0] * m, [False] * m  # free: per slot
    active_end = 0.0
    failed = retried = moved = 0
    parents = [[(e, int(inst.parent_idx[e]), float(inst.parent_data[e]))
                for e in range(inst.parent_ptr[t], inst.parent_ptr[t + 1])] for t in range(n)]

    def transfer(e, data, a, b):
        if a == b:
            return 0.0
        if math.isinf(inst.inv_bandwidth[a, b]):
            return math.inf
        time = float(inst.latency[a, b]) + data * float(inst.inv_bandwidth[a, b])
        if unc.transfer_sigma > 0.0 or unc.link_slowdown_probability > 0.0:
            lo, hi = min(a, b), max(a, b)
            p = unc.link_slowdown_probability
            factor = unc.link_slowdown_factor if p > 0.0 and uniform(skey, LINK, lo * m + hi, 0) < p else 1.0
            time = time * (factor * lognormal_unit_mean(skey, TRANSFER, e, unc.transfer_sigma))
        return time

    def runtime(t, j, mult):
        """Noise scales the work; the node's per-task overhead is added as it is."""
        return float(inst.work[t]) / float(inst.rate[j, inst.kind_of[t]]) * mult + float(inst.overhead[j])

    def ready_on(t, c, not_before):
        """(start on node c, its slot): the evaluator's slot rule (``pick_slot``)."""
        ready = max(float(inst.release[t]), not_before)
        for e, p, data in parents[t]:
            ready = max(ready, end[p] + transfer(e, data, node[p], c))
        i = pick_slot(free[c], ready)
        return max(ready, free[c][i]), i

    def choose(t, decide, mult):
        best, best_finish, back_node, back_at = None, math.inf, None, math.inf
        for c in range(m):
            if not inst.eligible[t, c]:
                continue
            ready, _ = ready_on(t, c, decide)
            if math.isinf(ready):
                continue
            s, _ = timelines[c].up_from(decide)
            if s == decide:
                finish = ready + runtime(t, c, mult)
                if finish < best_finish:
                    best, best_finish = c, finish
            elif s < back_at:
                back_node, back_at = c, s
        return (best, decide) if best is not None else (back_node, back_at)

    lost = [False] * n
    for t in (int(x) for x in plan.order):
        if any(lost[p] for _, p, _ in parents[t]):
            lost[t] = True
            continue
        sigma = per_kind(unc.duration_sigma, inst.task_kinds[inst.kind_of[t]], 0.0)
        mult = lognormal_unit_mean(skey, DURATION, t, sigma)
        j, not_before, losses, was_retried, was_moved = node[t], 0.0, 0, False, False
        while True:
            ready, i = ready_on(t, j, not_before)
            s, next_fail = timelines[j].up_from(ready) if math.isfinite(ready) else (math.inf, math.inf)
            if backup and s != ready:
                decide = ready if math.isfinite(ready) else \
                    max([min(free[j]), float(inst.release[t]), not_before] + [end[p] for _, p, _ in parents[t]])
                c, not_before = choose(t, decide, mult)
                if c is None:
                    break
                was_moved |= c != j
                j = node[t] = c
                continue
            if math.isinf(s):
                break
            d = runtime(t, j, mult)
            attempts[t] += 1
            used[j] = True
            start[t] = s
            if s + d <= next_fail:
                end[t] = free[j][i] = s + d
                busy[j] += d
                active_end = max(active_end, s + d)
                break
            busy[j] += next_fail - s
            free[j][i] = not_before = next_fail
            active_end = max(active_end, next_fail)
            losses += 1
            if losses > unc.max_retries:
                break
            if backup:
                c, not_before = choose(t, next_fail, mult)
                if c is None:
                    break
                if c != j:
                    was_moved = True
                    j = node[t] = c
                    continue
            was_retried = True
        lost[t] = math.isinf(end[t])
        failed += losses > 0
        retried += was_retried
        moved += was_moved
    metrics = reference_metrics(inst, np.array(end), np.array(busy), np.array(used), active_end, failed, retried,
                                moved)
    return np.array(start), np.array(end), np.array(node), np.array(attempts), metrics


def reference_metrics(inst, end, busy, used, active_end, failed, retried, moved):
    n = inst.n_tasks
    done = np.isfinite(end)
    makespan = float(end[done].max()) if done.any() else 0.0
    responses, misses = [], int(np.count_nonzero(end > inst.deadline))
    for r in range(len(inst.request_ids)):
        mine = inst.request_of == r
        if not mine.any():
            continue
        if done[mine].all():
            finish = float(end[mine].max())
            responses.append(finish - float(inst.request_release[r]))
            misses += finish > inst.request_deadline[r]
        else:
            misses += bool(np.isfinite(inst.request_deadline[r]))
    mean, p95, p99 = (float(np.mean(responses)), *np.percentile(responses, [95, 99])) if responses \
        else (math.nan,) * 3
    values = {
        "makespan": makespan, "mean_response": mean, "p95_response": p95, "p99_response": p99,
        "throughput": done.sum() / makespan if makespan > 0 else (math.inf if done.any() else 0.0),
        "utilization": busy.sum() / (inst.slots[used].sum() * active_end) if active_end > 0 else 1.0,
        "imbalance": float(np.std(busy / inst.slots) / np.mean(busy / inst.slots)) if busy.mean() > 0 else 0.0,
        "completion_rate": done.sum() / n, "stability": 1.0 - failed / n, "deadline_misses": misses,
        "failed_tasks": failed, "retried_tasks": retried, "moved_tasks": moved,
    }
    return np.array([values[name] for name in METRICS], dtype=float)

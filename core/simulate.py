"""Execution simulator: enacts a plan under uncertainty, Monte Carlo over many samples.

The plan fixes each node's task sequence (its dispatch order), so one sample is the
evaluator's list-scheduling recurrence with realised durations and transfer times, plus node
failures: a node alternates up and down periods (exponential times between failures, repair
times drawn per failure), a task running when its node fails is lost and handled by the
failure rule. With every source of noise off, a sample is the evaluator's schedule bit for bit.
The model, the rules and the metrics are written out in ``docs/simulation.md``.

Random numbers come from a counter-based generator (splitmix64 keyed by seed, sample, stream
and index), so a sample depends only on the seed and its number: the same seed gives the same
samples whatever the threading, chunking or sample count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numba
import numpy as np

from apportion.core._jit import jit, jit_inline, jit_parallel, prange
from apportion.core.defaults import SAMPLES
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan, link_arrays, take_slot
from apportion.core.model import Instance

# Per-sample realised metrics, the columns of ``SimulationResult.values``.
METRICS = (
    "makespan",  # s, latest end of a completed task
    "mean_response",  # s, mean over completed requests of (last task end - release)
    "p95_response",  # s
    "p99_response",  # s
    "throughput",  # completed tasks / makespan, tasks/s
    "utilization",  # busy time / (slots of the used nodes x active period), 0..1
    "imbalance",  # coefficient of variation of busy time / slots over all nodes
    "completion_rate",  # completed tasks / tasks
    "stability",  # 1 - failed tasks / tasks
    "deadline_misses",  # tasks and requests past their deadline (an incomplete one counts)
    "failed_tasks",  # tasks with at least one attempt lost to a node failure
    "retried_tasks",  # tasks re-run on the same node after a loss
    "moved_tasks",  # tasks run on a node other than the planned one
)
METRIC_INDEX = {name: i for i, name in enumerate(METRICS)}
FAILURE_RULES = ("retry", "backup")
REPAIR_DISTRIBUTIONS = ("exponential", "fixed")

# Limits that keep a simulation finite in time and memory (docs/simulation.md, "Limits").
MAX_SIGMA = 4.0  # beyond it a lognormal of mean 1 has its median below 0.0003: samples say nothing
MAX_FAILURES_PER_MAKESPAN = 10_000  # makespan / mtbf: a node's expected failures over the plan's makespan
MAX_SAMPLES = 1_000_000  # one row of metrics each: 104 MB
MAX_SCHEDULE_CELLS = 10_000_000  # samples x tasks kept with return_schedules: 240 MB
FAILURE_EVENTS = 1 << 18  # failures kept per sample over all nodes (4 MiB); see _failure_cap
SAMPLE_SLICE_TASKS = 1 << 18  # tasks x samples per kernel call, so Ctrl-C lands between calls

# Random streams: each draw is keyed by (seed, sample, stream, a, b).
_DURATION, _TRANSFER, _LINK, _UPTIME, _REPAIR = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Uncertainty:
    """What can go differently from the plan. The default is no noise and no failures.

    * ``duration_sigma``: a task's realised duration is its planned one times
      ``exp(sigma * Z - sigma**2 / 2)`` (lognormal with mean 1), ``Z`` standard normal, one
      draw per task and sample; one sigma for all tasks or one per task kind (kinds not named
      get 0).
    * ``transfer_sigma``: the same multiplier on every transfer between two nodes, per edge.
    * ``link_slowdown_probability`` / ``link_slowdown_factor``: per sample, each pair of nodes is
      congested with that probability; transfers between them take ``factor`` times as long.
    * ``mtbf``: mean time between failures of a node, s (exponential up-times); one value or one
      per node kind (kinds not named never fail); ``inf`` = never fails.
    * ``repair_mean``: mean down time after a failure, s (``repair_distribution`` ``exponential``
      or ``fixed``); one value or one per node kind; ``inf`` = the node never comes back.
    * ``failure_rule``: ``retry`` reruns a lost task on its node once repaired; ``backup`` moves it
      to the eligible node, among those up at that moment, where it would finish earliest (see
      ``docs/simulation.md`` for the exact rule).
    * ``max_retries``: re-attempts allowed after lost attempts; one more loss leaves the task
      incomplete.
    """

    duration_sigma: float | Mapping[str, float] = 0.0
    transfer_sigma: float = 0.0
    link_slowdown_probability: float = 0.0
    link_slowdown_factor: float = 1.0
    mtbf: float | Mapping[str, float] = math.inf
    repair_mean: float | Mapping[str, float] = 60.0
    repair_distribution: str = "exponential"
    failure_rule: str = "retry"
    max_retries: int = 3

    def __post_init__(self):
        if _number(self.transfer_sigma, "uncertainty.transfer_sigma") > MAX_SIGMA:
            raise SpecError("uncertainty.transfer_sigma", f"must be <= {MAX_SIGMA:g}, got {self.transfer_sigma:g}")
        p = _number(self.link_slowdown_probability, "uncertainty.link_slowdown_probability")
        if p > 1.0:
            raise SpecError("uncertainty.link_slowdown_probability", f"must be <= 1, got {p:g}")
        f = _number(self.link_slowdown_factor, "uncertainty.link_slowdown_factor")
        if f < 1.0:
            raise SpecError("uncertainty.link_slowdown_factor", f"must be >= 1 (a slowdown), got {f:g}")
        for name in ("duration_sigma", "mtbf", "repair_mean"):
            value = getattr(self, name)
            items = value.items() if isinstance(value, Mapping) else [(None, value)]
            for kind, x in items:
                field = f"uncertainty.{name}" + ("" if kind is None else f"[{kind!r}]")
                x = _number(x, field, allow_inf=name != "duration_sigma")
                if name == "mtbf" and x == 0.0:
                    raise SpecError(field, "must be > 0 (use inf for a node that never fails)")
                if name == "duration_sigma" and x > MAX_SIGMA:
                    raise SpecError(field, f"must be <= {MAX_SIGMA:g}, got {x:g}")
        if self.repair_distribution not in REPAIR_DISTRIBUTIONS:
            raise SpecError("uncertainty.repair_distribution",
                            f"must be one of {list(REPAIR_DISTRIBUTIONS)}, got {self.repair_distribution!r}")
        if self.failure_rule not in FAILURE_RULES:
            raise SpecError("uncertainty.failure_rule",
                            f"must be one of {list(FAILURE_RULES)}, got {self.failure_rule!r}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, (int, np.integer)) \
                or self.max_retries < 0:
            raise SpecError("uncertainty.max_retries", f"must be an integer >= 0, got {self.max_retries!r}")


def _number(value, field: str, *, allow_inf: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(field, f"must be a number, got {value!r}") from None
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise SpecError(field, f"must be a finite number, got {value!r}")
    if x < 0.0:
        raise SpecError(field, f"must be >= 0, got {x:g}")
    return x


def _per_kind(value, kinds: tuple[str, ...] | list[str], missing: float) -> np.ndarray:
    if isinstance(value, Mapping):
        return np.array([float(value.get(k, missing)) for k in kinds], dtype=float)
    return np.full(len(kinds), float(value))


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Per-sample realised metrics (``values[:, METRIC_INDEX[name]]``) and, when asked for, the
    realised schedules: ``start``/``end``/``node``/``attempts`` of shape (samples, tasks).
    An incomplete task has ``end == inf`` (``start`` is its last attempt's start, or inf)."""

    values: np.ndarray  # (samples, len(METRICS))
    key: int  # the 64-bit key derived from the seed; sample s draws from splitmix64(key ^ s)
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    node: np.ndarray | None = None
    attempts: np.ndarray | None = None

    @property
    def samples(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, METRIC_INDEX[name]]

    def summary(self) -> dict[str, dict[str, float]]:
        """Mean, standard deviation and 5th/50th/95th percentiles of every metric over the
        samples where it is defined (response times are undefined when no request completed)."""
        out = {}
        for name in METRICS:
            x = self[name]
            x = x[~np.isnan(x)]
            if x.size == 0:
                out[name] = dict.fromkeys(("mean", "std", "p5", "p50", "p95"), math.nan)
                continue
            p5, p50, p95 = np.percentile(x, [5, 50, 95])
            out[name] = {"mean": float(x.mean()), "std": float(x.std()), "p5": float(p5), "p50": float(p50),
                         "p95": float(p95)}
        return out


# ---------------------------------------------------------------------------------------------
# Counter-based random numbers.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11, _S56 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11), np.uint64(56)


@jit_inline
def _splitmix(x):
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@jit_inline
def _uniform(sample_key, stream, a, b):
    """A uniform in (0, 1), a function of the sample's key and (stream, a, b) only."""
    h = _splitmix(_splitmix(sample_key ^ (np.uint64(stream) << _S56) ^ np.uint64(a)) ^ np.uint64(b))
    return (np.float64(h >> _S11) + 0.5) * 1.1102230246251565e-16  # 2**-53


@jit_inline
def lognormal_factor(z, sigma):
    """exp(sigma z - sigma^2 / 2): mean 1 for standard normal z. Compiled, exp is the C library's,
    the same on every CPU (NumPy's exp of an array is not); robust scenarios take it too."""
    return np.exp(sigma * z - 0.5 * sigma * sigma)


@jit_inline
def _lognormal_unit_mean(sample_key, stream, a, sigma):
    """exp(sigma Z - sigma^2 / 2), Z standard normal by Box-Muller; exactly 1.0 for sigma 0."""
    if sigma == 0.0:
        return 1.0
    u1 = _uniform(sample_key, stream, a, 0)
    u2 = _uniform(sample_key, stream, a, 1)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)
    return lognormal_factor(z, sigma)


@jit
def _sample_key(key, sample):
    """The key every draw of ``sample`` is made from."""
    return _splitmix(np.uint64(key) ^ np.uint64(sample))


@jit
def _duration_multiplier(skey, task, sigma):
    """The factor on ``task``'s planned duration in the sample keyed ``skey``."""
    return _lognormal_unit_mean(skey, _DURATION, task, sigma)


@jit
def _transfer_multiplier(skey, edge, a, b, m, transfer_sigma, slow_p, slow_f):
    """The factor on the transfer time of parent edge ``edge`` (CSR index) from node a to b."""
    lo, hi = (a, b) if a < b else (b, a)
    factor = slow_f if slow_p > 0.0 and _uniform(skey, _LINK, lo * m + hi, 0) < slow_p else 1.0
    return factor * _lognormal_unit_mean(skey, _TRANSFER, edge, transfer_sigma)


# ---------------------------------------------------------------------------------------------
# Node failure timelines: down periods [fail[j, i], back[j, i]), generated lazily in order.

@jit
def _cover(j, x, fail, back, count, skey, mtbf, repair, repair_fixed, cap):
    """Generate node j's failures until its latest repair ends after time ``x`` (finite);
    return the arrays (reallocated when full). The ``cap``-th failure of a node in a sample
    is its last: it stays down from then on (memory and time stay bounded)."""
    while True:
        c = count[j]
        if c > 0 and back[j, c - 1] > x:
            return fail, back
        if c == fail.shape[1]:
            width = min(2 * c, cap)
            grown_fail = np.empty((fail.shape[0], width))
            grown_back = np.empty((fail.shape[0], width))
            grown_fail[:, :c] = fail
            grown_back[:, :c] = back
            fail, back = grown_fail, grown_back
        previous = back[j, c - 1] if c > 0 else 0.0
        if c == cap - 1:
            fail[j, c] = previous
            back[j, c] = np.inf
            count[j] = c + 1
            continue
        if np.isfinite(mtbf[j]):
            f = previous - np.log(_uniform(skey, _UPTIME, j, c)) * mtbf[j]
        else:
            f = np.inf
        if repair_fixed or not np.isfinite(repair[j]):
            down = repair[j]
        else:
            down = -np.log(_uniform(skey, _REPAIR, j, c)) * repair[j]
        fail[j, c] = f
        back[j, c] = f + down
        count[j] = c + 1


@jit
def _up_from(j, x, fail, back, count, skey, mtbf, repair, repair_fixed, cap):
    """(s, f, fail, back): the first time s >= x (finite) node j is up (inf if it never is
    again) and its next failure after s."""
    while True:
        fail, back = _cover(j, x, fail, back, count, skey, mtbf, repair, repair_fixed, cap)
        lo, hi = 0, count[j] - 1  # first interval whose repair ends after x
        while lo < hi:
            mid = (lo + hi) // 2
            if back[j, mid] > x:
                hi = mid
            else:
                lo = mid + 1
        if fail[j, lo] <= x < back[j, lo]:
            x = back[j, lo]
            if not np.isfinite(x):
                return np.inf, np.inf, fail, back
            continue
        return x, fail[j, lo], fail, back


# ---------------------------------------------------------------------------------------------
# One sample.

@jit_inline
def _ready_on(t, c, not_before, slot_ptr, slot_free, release, end, node_of, parent_ptr, parent_idx, parent_data,
              latency, inv_bw, skey, m, transfer_sigma, slow_p, slow_f):
    """(when task t could start on node c, the slot it takes there): max(its slot is free,
    release, not_before, inputs arrived), the slot chosen by the evaluator's rule
    (``take_slot``). The arrival is end_p + (latency + data * (1 / bandwidth)) * multiplier, as
    the evaluator computes it (the multiplier is exactly 1.0 without link noise)."""
    ready = max(release[t], not_before)
    if slot_ptr is None:  # one slot per node: its node's free time first, as always (compiled away)
        ready = max(ready, slot_free[c])
    noisy = transfer_sigma > 0.0 or slow_p > 0.0
    for e in range(parent_ptr[t], parent_ptr[t + 1]):
        p = parent_idx[e]
        q = node_of[p]
        if q == c:
            arrival = end[p]
        else:
            transfer = latency[q, c] + parent_data[e] * inv_bw[q, c]
            if noisy:
                transfer = transfer * _transfer_multiplier(skey, e, q, c, m, transfer_sigma, slow_p, slow_f)
            arrival = end[p] + transfer
        if arrival > ready:
            ready = arrival
    if slot_ptr is None:
        return ready, np.int64(c)
    f, free = take_slot(c, 0, 1, ready, slot_ptr, slot_free)
    return max(ready, free), f


@jit_inline
def _first_free(j, slot_ptr, slot_free):
    """When node j's first slot becomes free."""
    if slot_ptr is None:
        return slot_free[j]
    free = np.inf
    for s in range(slot_ptr[j], slot_ptr[j + 1]):
        free = min(free, slot_free[s])
    return free


# Complexity: one sample's event loop: dispatch, noise, failures, repair and retries share its state.
@jit
def _simulate_chunk(first, last, key, order, plan, work, kind, rate, overhead, eligible, parent_ptr, parent_idx, parent_data,  # noqa: C901
                    latency, inv_bw, release, deadline, request_of, req_size, req_release, req_deadline, sigma_kind,
                    transfer_sigma, slow_p, slow_f, mtbf, repair, repair_fixed, cap, backup, max_retries, slot_ptr,
                    slots, record, out, out_start, out_end, out_node, out_attempts):
    """Simulate samples ``first..last-1``; write their METRICS rows (and schedules if ``record``).
    A node runs up to its ``slots`` tasks at once (``slot_ptr``: CSR offsets of each node's
    slots, None when every node has one); a failure loses every attempt running on the node."""
    n, m, n_req = order.shape[0], rate.shape[0], req_release.shape[0]
    start = np.empty(n)
    end = np.empty(n)
    node_of = np.empty(n, dtype=np.int32)
    attempts = np.empty(n, dtype=np.int32)
    lost = np.empty(n, dtype=np.bool_)
    slot_free = np.empty(m if slot_ptr is None else slot_ptr[m])
    busy = np.empty(m)
    used = np.empty(m, dtype=np.bool_)
    fail = np.empty((m, 8))
    back = np.empty((m, 8))
    count = np.empty(m, dtype=np.int64)
    req_end = np.empty(n_req)
    req_done = np.empty(n_req, dtype=np.bool_)
    responses = np.empty(n_req)
    failures = False
    for j in range(m):
        if np.isfinite(mtbf[j]):
            failures = True
    for sample in range(first, last):
        skey = _sample_key(key, sample)
        node_of[:] = plan
        attempts[:] = 0
        lost[:] = False
        slot_free[:] = 0.0
        busy[:] = 0.0
        used[:] = False
        count[:] = 0
        active_end = 0.0  # latest end of a completed task or a lost attempt
        n_failed = n_retried = n_moved = 0
        for k in range(n):
            t = order[k]
            j = plan[t]
            end[t] = np.inf
            start[t] = np.inf
            parent_lost = False
            for e in range(parent_ptr[t], parent_ptr[t + 1]):
                if lost[parent_idx[e]]:
                    parent_lost = True
            if parent_lost:
                lost[t] = True
                continue
            mult = _duration_multiplier(skey, t, sigma_kind[kind[t]])
            not_before = 0.0
            losses = 0
            retried = moved = False
            while True:
                ready, f = _ready_on(t, j, not_before, slot_ptr, slot_free, release, end, node_of, parent_ptr,
                                     parent_idx, parent_data, latency, inv_bw, skey, m, transfer_sigma, slow_p, slow_f)
                if not np.isfinite(ready):
                    s, next_fail = np.inf, np.inf
                elif failures:
                    s, next_fail, fail, back = _up_from(j, ready, fail, back, count, skey, mtbf, repair,
                                                        repair_fixed, cap)
                else:
                    s, next_fail = ready, np.inf
                if backup and s != ready:
                    # Its node is down when the task is ready (or its inputs cannot reach it):
                    # choose again, at that moment.
                    if np.isfinite(ready):
                        decide = ready
                    else:
                        decide = max(_first_free(j, slot_ptr, slot_free), max(release[t], not_before))
                        for e in range(parent_ptr[t], parent_ptr[t + 1]):
                            decide = max(decide, end[parent_idx[e]])
                    c, not_before, fail, back = _backup_node(
                        t, decide, mult, work, kind, rate, overhead, eligible, slot_ptr, slot_free, release, end, node_of,
                        parent_ptr,
                        parent_idx, parent_data, latency, inv_bw, skey, transfer_sigma, slow_p, slow_f, fail, back,
                        count, mtbf, repair, repair_fixed, cap)
                    if c < 0:
                        break
                    if c != j:
                        moved = True
                    j = c
                    node_of[t] = j
                    continue
                if not np.isfinite(s):
                    break  # inputs unreachable or node never back: the task cannot complete here
                d = work[t] / rate[j, kind[t]] * mult + overhead[j]  # noise scales the work, not the overhead
                attempts[t] += 1
                used[j] = True
                start[t] = s
                if s + d <= next_fail:
                    end[t] = s + d
                    slot_free[f] = s + d
                    busy[j] += d
                    if s + d > active_end:
                        active_end = s + d
                    break
                # Lost when the node fails.
                busy[j] += next_fail - s
                slot_free[f] = next_fail
                if next_fail > active_end:
                    active_end = next_fail
                losses += 1
                if losses > max_retries:
                    break
                not_before = next_fail
                if backup:
                    c, not_before, fail, back = _backup_node(
                        t, next_fail, mult, work, kind, rate, overhead, eligible, slot_ptr, slot_free, release, end, node_of,
                        parent_ptr,
                        parent_idx, parent_data, latency, inv_bw, skey, transfer_sigma, slow_p, slow_f, fail, back,
                        count, mtbf, repair, repair_fixed, cap)
                    if c < 0:
                        break
                    if c != j:
                        moved = True
                        j = c
                        node_of[t] = j
                        continue
                retried = True
            if not np.isfinite(end[t]):
                lost[t] = True
            if losses > 0:
                n_failed += 1
            if retried:
                n_retried += 1
            if moved:
                n_moved += 1
        _metrics(end, busy, used, slots, active_end, deadline, request_of, req_size, req_release, req_deadline,
                 req_end, req_done, responses, n_failed, n_retried, n_moved, out[sample])
        if record:
            out_start[sample] = start
            out_end[sample] = end
            out_node[sample] = node_of
            out_attempts[sample] = attempts


@jit
def _backup_node(t, decide, mult, work, kind, rate, overhead, eligible, slot_ptr, slot_free, release, end, node_of,
                        parent_ptr,
                 parent_idx, parent_data, latency, inv_bw, skey, transfer_sigma, slow_p, slow_f, fail, back, count,
                 mtbf, repair, repair_fixed, cap):
    """(node, not_before, fail, back) for a task to be placed again at time ``decide``: among
    eligible nodes up at ``decide``, the one where it would finish earliest (from that node's
    queue and its inputs' arrival; lowest index on ties); if none is up, the eligible node its
    inputs can reach that comes back first. Node -1 when there is none."""
    m = rate.shape[0]
    best, best_finish = -1, np.inf
    first_back, first_node = np.inf, -1
    for c in range(m):
        if not eligible[t, c]:
            continue
        ready, _ = _ready_on(t, c, decide, slot_ptr, slot_free, release, end, node_of, parent_ptr, parent_idx,
                             parent_data, latency, inv_bw, skey, m, transfer_sigma, slow_p, slow_f)
        if not np.isfinite(ready):
            continue
        s, _, fail, back = _up_from(c, decide, fail, back, count, skey, mtbf, repair, repair_fixed, cap)
        if s == decide:
            finish = ready + (work[t] / rate[c, kind[t]] * mult + overhead[c])
            if finish < best_finish:
                best, best_finish = c, finish
        elif s < first_back:
            first_back, first_node = s, c
    if best >= 0:
        return best, decide, fail, back
    return first_node, first_back, fail, back


@jit_inline
def _lerp_percentile(sorted_values, count, q):
    """NumPy's default (linear) percentile of the first ``count`` sorted values."""
    pos = q / 100.0 * (count - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, count - 1)
    a, b, frac = sorted_values[lo], sorted_values[hi], pos - lo
    diff = b - a
    return b - diff * (1.0 - frac) if frac >= 0.5 else a + diff * frac


# Complexity: one pass over a sample's tasks, nodes and requests, as the evaluator's.
@jit
def _metrics(end, busy, used, slots, active_end, deadline, request_of, req_size, req_release, req_deadline,  # noqa: C901
             req_end, req_done, responses, n_failed, n_retried, n_moved, row):
    """One sample's METRICS row; utilisation counts a node's slots, the imbalance its busy time
    per slot (as the evaluator's statistics)."""
    n, m, n_req = end.shape[0], busy.shape[0], req_end.shape[0]
    req_end[:] = 0.0
    req_done[:] = True
    completed = 0
    makespan = 0.0
    misses = 0
    for t in range(n):
        r = request_of[t]
        if np.isfinite(end[t]):
            completed += 1
            if end[t] > makespan:
                makespan = end[t]
            if end[t] > req_end[r]:
                req_end[r] = end[t]
        else:
            req_done[r] = False
        if end[t] > deadline[t]:
            misses += 1
    n_done = 0
    for r in range(n_req):
        if req_size[r] == 0:
            continue  # a request without tasks has no response time
        if req_done[r]:
            responses[n_done] = req_end[r] - req_release[r]
            n_done += 1
            if req_end[r] > req_deadline[r]:
                misses += 1
        elif np.isfinite(req_deadline[r]):
            misses += 1
    total = 0.0
    n_used = 0.0
    mean = 0.0
    for j in range(m):
        total += busy[j]
        mean += busy[j] / slots[j]
        if used[j]:
            n_used += slots[j]
    mean /= m
    var = 0.0
    for j in range(m):
        var += (busy[j] / slots[j] - mean) ** 2
    row[0] = makespan
    if n_done > 0:
        ordered = np.sort(responses[:n_done])
        row[1] = ordered.sum() / n_done
        row[2] = _lerp_percentile(ordered, n_done, 95.0)
        row[3] = _lerp_percentile(ordered, n_done, 99.0)
    else:
        row[1] = row[2] = row[3] = np.nan
    row[4] = completed / makespan if makespan > 0.0 else (np.inf if completed > 0 else 0.0)
    row[5] = total / (n_used * active_end) if active_end > 0.0 else 1.0
    row[6] = np.sqrt(var / m) / mean if mean > 0.0 else 0.0
    row[7] = completed / n
    row[8] = 1.0 - n_failed / n
    row[9] = misses
    row[10] = n_failed
    row[11] = n_retried
    row[12] = n_moved


@jit_parallel
def _simulate_parallel(first, last, chunks, *args):
    """Samples ``first..last-1`` in ``chunks`` parts over Numba threads."""
    for c in prange(chunks):
        _simulate_chunk(first + c * (last - first) // chunks, first + (c + 1) * (last - first) // chunks, *args)


def _seed_key(seed) -> np.uint64:
    """A well-mixed 64-bit key from an integer seed or a ``np.random.Generator``."""
    if isinstance(seed, np.random.Generator):
        return np.uint64(seed.integers(0, 2**64, dtype=np.uint64))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError("seed", f"must be an integer >= 0 or a numpy Generator, got {seed!r}")
    return np.random.SeedSequence(int(seed)).generate_state(1, dtype=np.uint64)[0]


def _kernel_inputs(instance: Instance, uncertainty: Uncertainty) -> dict:
    """The per-task-kind and per-node parameters and the link arrays the kernel reads."""
    node_kinds = [nd.kind for nd in instance.cluster.nodes]
    latency, inv_bw = link_arrays(instance)
    return {
        "sigma_kind": _per_kind(uncertainty.duration_sigma, instance.task_kinds, 0.0),
        "mtbf": _per_kind(uncertainty.mtbf, node_kinds, math.inf),
        "repair": _per_kind(uncertainty.repair_mean, node_kinds, 0.0),
        "latency": latency,
        "inv_bw": inv_bw,
    }


def _failure_cap(nodes: int) -> int:
    """Failures kept per node in one sample (at least 1,024); the last keeps it down."""
    return max(1024, FAILURE_EVENTS // nodes)


def _check_samples(samples, tasks: int, return_schedules: bool) -> None:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise SpecError("samples", f"must be an integer >= 1, got {samples!r}")
    if samples > MAX_SAMPLES:
        raise SpecError("samples", f"must be at most {MAX_SAMPLES:,}, got {samples:,}")
    if return_schedules and samples * tasks > MAX_SCHEDULE_CELLS:
        raise SpecError("samples", f"keeping schedules of {samples:,} samples x {tasks:,} tasks exceeds "
                        f"{MAX_SCHEDULE_CELLS:,} cells; ask for fewer samples")


def _check_failure_rates(instance: Instance, uncertainty: Uncertainty, params: dict, makespan: float) -> None:
    """Refuse failure rates that make a sample mostly failure bookkeeping: an mtbf under
    1/MAX_FAILURES_PER_MAKESPAN of the plan's makespan (below the resolution of the plan's
    times, such a node is never up at all and each sample would count failures until the
    kernel's bound)."""
    if not (math.isfinite(makespan) and makespan > 0):
        return
    for j, nd in enumerate(instance.cluster.nodes):
        mtbf = params["mtbf"][j]
        if math.isfinite(mtbf) and makespan > mtbf * MAX_FAILURES_PER_MAKESPAN:
            field = "uncertainty.mtbf" + (f"[{nd.kind!r}]" if isinstance(uncertainty.mtbf, Mapping) else "")
            raise SpecError(field, f"must be at least the plan's makespan / {MAX_FAILURES_PER_MAKESPAN:,} "
                            f"({makespan / MAX_FAILURES_PER_MAKESPAN:.3g} s), got {mtbf:.3g}")


def simulate(instance: Instance, plan: Plan, uncertainty: Uncertainty | None = None, samples: int = SAMPLES,
             seed: int | np.random.Generator = 0, *, return_schedules: bool = False,
             parallel: bool = False) -> SimulationResult:
    """Enact ``plan`` ``samples`` times under ``uncertainty``; realised metrics per sample.

    :param plan: a node per task and a dispatch order (checked as the evaluator checks plans).
    :param seed: the same seed gives the same samples bit for bit (also with ``parallel``).
    :param return_schedules: keep each sample's start, end, node and attempts per task.
    :param parallel: spread the samples over Numba threads.
    """
    uncertainty = Uncertainty() if uncertainty is None else uncertainty
    _check_samples(samples, instance.n_tasks, return_schedules)
    key = _seed_key(seed)
    inst = instance
    evaluator = Evaluator(inst)
    evaluator.check(np.atleast_2d(plan.assignment), np.atleast_2d(plan.order))
    params = _kernel_inputs(inst, uncertainty)
    _check_failure_rates(inst, uncertainty, params, evaluator.schedule(plan).stat("makespan"))
    n = inst.n_tasks
    kept = samples if return_schedules else 1
    out = np.empty((samples, len(METRICS)))
    start, end = np.empty((kept, n)), np.empty((kept, n))
    node, attempts = np.empty((kept, n), dtype=np.int32), np.empty((kept, n), dtype=np.int32)
    args = (key, plan.order, plan.assignment, inst.work, inst.kind_of, np.ascontiguousarray(inst.rate), inst.overhead, inst.eligible,
            inst.parent_ptr, inst.parent_idx, inst.parent_data, params["latency"], params["inv_bw"], inst.release,
            inst.deadline, inst.request_of, np.bincount(inst.request_of, minlength=len(inst.request_ids)),
            inst.request_release, inst.request_deadline, params["sigma_kind"],
            float(uncertainty.transfer_sigma), float(uncertainty.link_slowdown_probability),
            float(uncertainty.link_slowdown_factor), params["mtbf"], params["repair"],
            uncertainty.repair_distribution == "fixed", _failure_cap(inst.n_nodes), uncertainty.failure_rule == "backup",
            int(uncertainty.max_retries), inst.slot_ptr, inst.slots.astype(np.float64), return_schedules, out, start,
            end, node, attempts)
    # A slice of samples per kernel call, so Ctrl-C lands between calls (samples are keyed by
    # number: the slicing does not change them).
    step = max(1, SAMPLE_SLICE_TASKS // n)
    if parallel and samples > 1:
        step = max(step, 4 * numba.get_num_threads())
    for first in range(0, samples, step):
        last = min(samples, first + step)
        if parallel and last - first > 1:
            _simulate_parallel(first, last, min(last - first, 4 * numba.get_num_threads()), *args)
        else:
            _simulate_chunk(first, last, *args)
    if not return_schedules:
        return SimulationResult(values=out, key=int(key))
    return SimulationResult(values=out, key=int(key), start=start, end=end, node=node, attempts=attempts)

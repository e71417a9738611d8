"""Pareto tools: objective matrices, non-dominated filtering and sorting, hypervolume and
picking one plan from a front.

Conventions: an objective matrix ``F`` (P, k) is in minimisation form (maximised objectives
are negated); a statistics matrix has the columns ``core.evaluate.STATS`` in natural units.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from apportion.core import defaults
from apportion.core._jit import jit, jit_inline
from apportion.core.defaults import DEFAULT_OBJECTIVES
from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX

# Objective name -> (STATS column, sense), in ``defaults.OBJECTIVES`` order: the names are
# defaults' (the forms and the command line offer them without loading this module); the
# columns and senses are known here.
_COLUMN_AND_SENSE: dict[str, tuple[str, str]] = {
    "makespan": ("makespan", "min"),
    "utilization": ("utilization", "max"),
    "imbalance": ("imbalance", "min"),
    "mean_response": ("mean_response", "min"),  # priority-weighted over requests
    "energy": ("energy", "min"),
    "cost": ("cost", "min"),
    "migrations": ("moved", "min"),  # re-planning: tasks moved off the node the old plan gave them
}
if set(_COLUMN_AND_SENSE) != set(defaults.OBJECTIVES):
    raise ImportError(f"core.pareto knows the objectives {sorted(_COLUMN_AND_SENSE)}, "
                      f"core.defaults.OBJECTIVES names {sorted(defaults.OBJECTIVES)}")
OBJECTIVES: dict[str, tuple[str, str]] = {name: _COLUMN_AND_SENSE[name] for name in defaults.OBJECTIVES}
# Hypervolume reference point on objectives normalised to [0, 1] by ideal and nadir.
HV_REFERENCE = 1.1


def check_objectives(objectives) -> tuple[str, ...]:
    """The objective names as a tuple; SpecError (field ``objectives``) if unusable."""
    names = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if not names:
        raise SpecError("objectives", "name at least one objective")
    for name in names:
        if name not in OBJECTIVES:
            raise SpecError("objectives", f"unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise SpecError("objectives", f"repeated objective in {list(names)}")
    return names


def objective_columns(objectives) -> tuple[np.ndarray, np.ndarray]:
    """STATS column index and sign (+1 minimise, -1 maximise) of each objective."""
    names = check_objectives(objectives)
    columns = np.array([STAT_INDEX[OBJECTIVES[o][0]] for o in names], dtype=np.intp)
    signs = np.array([1.0 if OBJECTIVES[o][1] == "min" else -1.0 for o in names])
    return columns, signs


def objective_matrix(stats: np.ndarray, objectives=DEFAULT_OBJECTIVES) -> np.ndarray:
    """F (P, k) in minimisation form from a statistics matrix (P, len(STATS))."""
    columns, signs = objective_columns(objectives)
    return np.atleast_2d(stats)[:, columns] * signs


@jit_inline
def _dominates(F, b, a):
    """Row b is no worse than row a in every objective and better in one (minimisation)."""
    better = False
    for c in range(F.shape[1]):
        if F[b, c] > F[a, c]:
            return False
        if F[b, c] < F[a, c]:
            better = True
    return better


@jit_inline
def _equal(F, b, a):
    for c in range(F.shape[1]):
        if F[b, c] != F[a, c]:
            return False
    return True


@jit
def _non_dominated_sorted(F, order, keep, distinct):
    # Rows visited in lexicographic order: a row can only be dominated by an earlier one,
    # and (by transitivity) then by one already on the front. Equal rows are adjacent in that
    # order (the lowest index first: lexsort is stable), so a copy equals the last member.
    front = np.empty(order.shape[0], dtype=np.int64)
    size = 0
    for i in range(order.shape[0]):
        a = order[i]
        dominated = False
        for f in range(size):
            if _dominates(F, front[f], a):
                dominated = True
                break
        if dominated or (distinct and size > 0 and _equal(F, front[size - 1], a)):
            continue
        front[size] = a
        size += 1
        keep[a] = True


def non_dominated(F: np.ndarray, distinct: bool = False) -> np.ndarray:
    """Indices (ascending) of the rows of F that no other row dominates.

    Equal rows do not dominate each other: all copies of a non-dominated row stay, or with
    ``distinct`` only the first (lowest index). Cost O(P log P) for the sort plus
    O(P x front size) comparisons. F must not hold NaN.
    """
    F = np.ascontiguousarray(np.atleast_2d(F), dtype=np.float64)
    if F.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    order = np.lexsort(F.T[::-1])
    keep = np.zeros(F.shape[0], dtype=np.bool_)
    _non_dominated_sorted(F, order, keep, distinct)
    return np.flatnonzero(keep)


@jit
def _front_ranks(F, order, rank):
    # Efficient non-dominated sort (ENS-SS, Zhang et al. 2015): rows visited in lexicographic
    # order, so every row that dominates the current one has already been placed; the current
    # row joins the first front none of whose members dominates it.
    P = F.shape[0]
    head = np.full(P, -1, dtype=np.int64)  # first member of each front
    nxt = np.full(P, -1, dtype=np.int64)  # next member in the same front
    tail = np.full(P, -1, dtype=np.int64)
    n_fronts = 0
    for i in range(P):
        a = order[i]
        f = 0
        while f < n_fronts:
            dominated = False
            b = head[f]
            while b >= 0:
                if _dominates(F, b, a):
                    dominated = True
                    break
                b = nxt[b]
            if not dominated:
                break
            f += 1
        if f == n_fronts:
            n_fronts += 1
            head[f] = a
        else:
            nxt[tail[f]] = a
        tail[f] = a
        rank[a] = f


def front_ranks(F: np.ndarray) -> np.ndarray:
    """Non-domination rank of every row (0 = non-dominated, 1 = next front, ...)."""
    F = np.ascontiguousarray(np.atleast_2d(F), dtype=np.float64)
    rank = np.zeros(F.shape[0], dtype=np.int64)
    if F.shape[0]:
        _front_ranks(F, np.lexsort(F.T[::-1]), rank)
    return rank


@jit
def _crowding(F, out):
    P, k = F.shape
    out[:] = 0.0
    for c in range(k):
        order = np.argsort(F[:, c], kind="mergesort")
        lo = F[order[0], c]
        span = F[order[P - 1], c] - lo
        out[order[0]] = np.inf
        out[order[P - 1]] = np.inf
        if span > 0.0 and np.isfinite(span):
            for i in range(1, P - 1):
                out[order[i]] += (F[order[i + 1], c] - F[order[i - 1], c]) / span


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within its front (boundary rows: inf)."""
    F = np.ascontiguousarray(np.atleast_2d(F), dtype=np.float64)
    out = np.empty(F.shape[0])
    if F.shape[0] <= 2:
        out[:] = np.inf
    else:
        _crowding(F, out)
    return out


@jit
def _crowding_by_front(F, rank, out):
    # _crowding within each front, without copying the fronts: per objective, one stable sort
    # of all rows by value, then a stable grouping by front, which leaves each front's rows
    # in the order _crowding sorts them (ties by row index).
    P, k = F.shape
    n_fronts = rank.max() + 1
    start = np.zeros(n_fronts + 1, dtype=np.int64)
    for i in range(P):
        start[rank[i] + 1] += 1
    for f in range(n_fronts):
        start[f + 1] += start[f]
    order = np.empty(P, dtype=np.int64)
    fill = np.empty(n_fronts, dtype=np.int64)
    out[:] = 0.0
    for c in range(k):
        fill[:] = start[:n_fronts]
        for i in np.argsort(F[:, c], kind="mergesort"):
            order[fill[rank[i]]] = i
            fill[rank[i]] += 1
        for f in range(n_fronts):
            lo, hi = start[f], start[f + 1]
            if hi - lo <= 2:
                continue
            low = F[order[lo], c]
            span = F[order[hi - 1], c] - low
            out[order[lo]] = np.inf
            out[order[hi - 1]] = np.inf
            if span > 0.0 and np.isfinite(span):
                for j in range(lo + 1, hi - 1):
                    out[order[j]] += (F[order[j + 1], c] - F[order[j - 1], c]) / span
    for i in range(P):
        if start[rank[i] + 1] - start[rank[i]] <= 2:
            out[i] = np.inf


@jit
def _ranks_and_crowding(F, order, rank, crowd):
    _front_ranks(F, order, rank)
    _crowding_by_front(F, rank, crowd)


def ranks_and_crowding(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``front_ranks``, crowding distance of every row within its own front) in one kernel
    call: NSGA-II's survival needs both every generation."""
    F = np.ascontiguousarray(np.atleast_2d(F), dtype=np.float64)
    rank = np.zeros(F.shape[0], dtype=np.int64)
    crowd = np.empty(F.shape[0])
    if F.shape[0]:
        _ranks_and_crowding(F, np.lexsort(F.T[::-1]), rank, crowd)
    return rank, crowd


def hypervolume(F: np.ndarray, ideal: np.ndarray, nadir: np.ndarray) -> float:
    """Hypervolume of F after normalising each objective to [0, 1] by ``ideal`` and ``nadir``
    (a zero span counts as 1), with reference point ``HV_REFERENCE`` (1.1) in every objective.

    Values better than the ideal count as the ideal and points that do not dominate the
    reference point add nothing, so for a fixed box a front that weakly dominates another
    never scores less (``core.reference_box`` fixes the box per instance). The rows are
    sorted first, so the value does not depend on their order. Computed exactly by
    ``moocore.hypervolume``, the routine behind pymoo's ``pymoo.indicators.hv.HV`` (moocore
    is a pymoo dependency).
    """
    F = np.atleast_2d(np.asarray(F, dtype=np.float64))
    if F.shape[0] == 0:
        return 0.0
    ideal = np.asarray(ideal, dtype=np.float64)
    span = np.asarray(nadir, dtype=np.float64) - ideal
    span = np.where(span > 0, span, 1.0)
    Z = np.maximum((F - ideal) / span, 0.0)
    Z = Z[np.all(Z < HV_REFERENCE, axis=1)]
    if Z.shape[0] == 0:
        return 0.0
    import moocore

    Z = Z[np.lexsort(Z.T[::-1])]
    return float(moocore.hypervolume(Z, ref=np.full(F.shape[1], HV_REFERENCE)))


def parse_policy(policy: str) -> tuple[str, object]:
    """Parse a selection policy: ``knee``, ``compromise``, ``weights:a,b,...`` or ``sla:SECONDS``.

    Returns ("knee", None), ("compromise", None), ("weights", ndarray) or ("sla", seconds);
    SpecError (field ``select``) on bad syntax.
    """
    if not isinstance(policy, str):
        raise SpecError("select", f"must be a string, got {policy!r}")
    text = policy.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    usage = "use 'knee', 'compromise', 'weights:a,b,c' (one weight per objective) or 'sla:SECONDS'"
    if kind in ("knee", "compromise") and not sep:
        return kind, None
    if kind == "weights" and sep:
        try:
            weights = np.array([float(w) for w in arg.split(",")])
        except ValueError:
            raise SpecError("select", f"weights must be numbers separated by commas, got {arg!r}") from None
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise SpecError("select", f"weights must be finite and >= 0, got {arg!r}")
        if not np.any(weights > 0):
            raise SpecError("select", f"at least one weight must be > 0, got {arg!r}")
        return "weights", weights
    if kind == "sla" and sep:
        try:
            seconds = float(arg.strip().removesuffix("s"))
        except ValueError:
            raise SpecError("select", f"sla needs a makespan bound in seconds, got {arg!r}") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise SpecError("select", f"sla bound must be a finite number of seconds >= 0, got {arg!r}")
        return "sla", seconds
    raise SpecError("select", f"unknown policy {policy!r}; {usage}")


def _normalised(F: np.ndarray) -> np.ndarray:
    lo = F.min(axis=0)
    span = F.max(axis=0) - lo
    return (F - lo) / np.where(span > 0, span, 1.0)


def plane_normal(points: np.ndarray) -> np.ndarray | None:
    """The normal n of the plane ``n . z = 1`` through the k rows of ``points`` (k x k), or None
    when they span no such plane. Solved exactly in rationals and rounded once: LAPACK's solve
    rounds by CPU, and a knee among near-tied plans would then differ by machine."""
    k = len(points)
    if not np.all(np.isfinite(points)):
        return None
    rows = [[Fraction(float(v)) for v in row] + [Fraction(1)] for row in points]
    for c in range(k):  # Gauss-Jordan elimination; exact, so any non-zero pivot does
        pivot = next((r for r in range(c, k) if rows[r][c] != 0), None)
        if pivot is None:
            return None
        rows[c], rows[pivot] = rows[pivot], rows[c]
        for r in range(k):
            if r != c and rows[r][c] != 0:
                factor = rows[r][c] / rows[c][c]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[c], strict=True)]
    try:
        return np.array([float(rows[c][k] / rows[c][c]) for c in range(k)])
    except OverflowError:  # a component beyond any float: the points are all but coplanar with 0
        return None


def knee_point(F: np.ndarray) -> int:
    """Index of the knee of the front F (minimisation form): the plan furthest on the ideal's
    side of the hyperplane through the front's extreme plans (Das 1999, normal-boundary
    distance; KnEA's knee, Zhang et al. 2015), in objectives normalised to [0, 1] over F.

    The extreme plan of an objective is the one best in it (ties: the smallest sum of the
    others). Moving away from the knee along the front gives up more in some objective than it
    gains in another, which is what "knee" means; the normalisation makes the choice the same
    whatever the objectives' units. When the extremes do not span a hyperplane (fewer distinct
    extremes than objectives) the plane through the unit points, sum z = 1, stands in.
    Only plans no other plan dominates are candidates; ties go to the lowest index.
    """
    # One memory layout, and sums rather than BLAS products: BLAS rounds a product by layout
    # and by CPU (its kernels differ between AVX2 and AVX-512), and tied plans would split.
    F = np.ascontiguousarray(np.atleast_2d(F), dtype=np.float64)
    Z = _normalised(F)
    P, k = Z.shape
    extremes = np.array([np.lexsort((Z.sum(axis=1) - Z[:, c], Z[:, c]))[0] for c in range(k)])
    normal = np.ones(k)
    if len(set(extremes.tolist())) == k:
        solved = plane_normal(Z[extremes])
        if solved is not None and np.all(solved > 0):  # plane_normal's are finite
            normal = solved
    distance = (1.0 - (Z * normal).sum(axis=1)) / np.sqrt((normal * normal).sum())
    # Only a plan no other plan dominates: normalising can round a tiny gap to a tie.
    candidate = np.full(P, -np.inf)
    keep = non_dominated(F)
    candidate[keep] = distance[keep]
    return int(np.argmax(candidate))


def select(stats: np.ndarray, objectives=DEFAULT_OBJECTIVES, policy: str = defaults.SELECT) -> int:
    """Index of the plan (row of the statistics matrix ``stats``) that ``policy`` picks.

    * ``compromise``: normalise the objectives (minimisation form) to [0, 1] over the given
      plans and take the plan closest (Euclidean) to the ideal point 0 (compromise
      programming): every objective weighs the same.
    * ``knee``: the knee of the front (``knee_point``): the plan where a step along the
      front in any direction costs more than it gains.
    * ``weights:a,b,...``: the smallest weighted sum of those normalised objectives, one
      weight per objective in ``objectives`` order.
    * ``sla:SECONDS``: the highest utilisation among plans with makespan <= SECONDS (ties:
      the shorter makespan); SpecError naming the best achievable makespan if none meets it.

    Ties go to the lowest index. docs/metrics.md compares the two rules.
    """
    kind, arg = parse_policy(policy)
    stats = np.atleast_2d(np.asarray(stats, dtype=np.float64))
    if stats.shape[0] == 0:
        raise SpecError("select", "there are no plans to choose from")
    if kind == "sla":
        makespan = stats[:, STAT_INDEX["makespan"]]
        ok = np.flatnonzero(makespan <= arg)
        if ok.size == 0:
            raise SpecError(
                "select",
                f"no plan meets the makespan bound of {arg:g} s; the best achievable makespan is "
                f"{makespan.min():g} s",
            )
        utilisation = stats[ok, STAT_INDEX["utilization"]]
        # lexsort: last key is primary -> highest utilisation, then shortest makespan, then index.
        return int(ok[np.lexsort((ok, makespan[ok], -utilisation))[0]])
    F = objective_matrix(stats, objectives)
    if kind == "knee":
        return knee_point(F)
    Z = _normalised(F)
    if kind == "compromise":
        return int(np.argmin(np.sqrt(np.sum(Z * Z, axis=1))))
    weights = arg
    if weights.shape[0] != Z.shape[1]:
        raise SpecError(
            "select",
            f"weights gives {weights.shape[0]} numbers for {Z.shape[1]} objectives "
            f"{list(check_objectives(objectives))}",
        )
    return int(np.argmin((Z * weights).sum(axis=1)))  # a sum, not BLAS: see knee_point

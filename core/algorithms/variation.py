"""Variation operators for allocation chromosomes, as pymoo operator classes.

A chromosome is an int32 row of ``2 n`` genes: the node of each task (genes ``0..n-1``, only
ever an eligible node), then the dispatch order itself (genes ``n..2n-1``: the task dispatched
k-th, always a topological order), so any topological order can be reached and every plan is
exactly representable (``PlanCodec``). Crossover and mutation keep orders topological: the
precedence-preserving crossover fills the child's order from either parent's list, each
time with that parent's first task not taken yet, and the shift move re-inserts one task
between its last parent and its first child.

Every operator works on the whole batch with NumPy or a Numba kernel and draws its randomness
from the ``random_state`` Generator pymoo passes in (derived from the run's seed), so a run is
reproducible bit for bit. Orders change in few children per generation (``order_rate``): the
evaluator lays out each distinct order of a batch once (about 0.16 ms at 1,000 tasks, as much
as scoring ten plans), so children mostly inherit a parent's order whole.

pymoo's base classes move rows in and out of per-individual objects one attribute at a time;
the ``do`` overrides here read the rows once, work on a matrix and write each row back once.
"""

from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.individual import Individual
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.util import default_random_state

from apportion.core._jit import jit
from apportion.core.evaluate import Plan
from apportion.core.model import ROWS_AT_ONCE, Instance

GENE_DTYPE = np.int32


class PlanCodec:
    """Maps plans to chromosomes and back, and holds each task's eligible nodes (CSR).

    ``orders`` are the topological orders random chromosomes start from (e.g. every
    baseline's); any other topological order is representable too.
    """

    def __init__(self, instance: Instance, orders: np.ndarray):
        self.instance = instance
        self.n_tasks = instance.n_tasks
        self.orders = np.ascontiguousarray(orders, dtype=np.int32).reshape(-1, instance.n_tasks)
        counts = instance.eligible.sum(axis=1)
        self.eligible_ptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # Ascending per task; a block of rows at a time (np.nonzero of the whole table makes two
        # int64 arrays of every eligible pair).
        self.eligible_nodes = np.empty(int(self.eligible_ptr[-1]), dtype=np.int32)
        for lo in range(0, instance.n_tasks, ROWS_AT_ONCE):
            block = np.nonzero(instance.eligible[lo:lo + ROWS_AT_ONCE])[1]
            at = int(self.eligible_ptr[lo])
            self.eligible_nodes[at:at + block.size] = block
        self.eligible_count = counts.astype(np.int64)
        self.movable = np.flatnonzero(counts > 1)  # tasks with a choice of node

    @property
    def n_genes(self) -> int:
        return 2 * self.n_tasks

    def encode(self, plan: Plan) -> np.ndarray:
        """The chromosome of ``plan`` (its order must be topological, as every plan's is)."""
        return np.concatenate((plan.assignment, plan.order)).astype(GENE_DTYPE)

    def decode(self, row: np.ndarray) -> Plan:
        return Plan(assignment=row[: self.n_tasks].copy(), order=row[self.n_tasks:].copy())

    def split(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(assignments (P, n), orders (P, n)) of a batch of chromosomes."""
        return X[:, : self.n_tasks], X[:, self.n_tasks:]

    def random(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` chromosomes with a uniformly random eligible node per task and one of
        ``orders`` at random."""
        X = np.empty((count, self.n_genes), dtype=GENE_DTYPE)
        pick = (rng.random((count, self.n_tasks)) * self.eligible_count).astype(np.int64)
        X[:, : self.n_tasks] = self.eligible_nodes[self.eligible_ptr[:-1] + pick]
        X[:, self.n_tasks:] = self.orders[rng.integers(0, self.orders.shape[0], size=count)]
        return X


def population_matrix(pop) -> np.ndarray:
    """The chromosomes of a population (any shape) as one (P, n_genes) matrix."""
    return np.array([ind.X for ind in np.ravel(pop)], dtype=GENE_DTYPE)


# A blank individual's attributes; copying them is ~5x cheaper than Individual(), which
# rebuilds a config dict and resets a dozen fields (a third of the loop's own cost). The
# mutable members (evaluated, data) are fresh per individual; the rest are never mutated
# in place (pymoo itself shares one empty array between all of a blank individual's fields).
_BLANK = Individual().__dict__


def new_individual(row: np.ndarray) -> Individual:
    ind = Individual.__new__(Individual)
    state = _BLANK.copy()
    state["_X"], state["evaluated"], state["data"] = row, set(), {}
    ind.__dict__ = state
    return ind


def new_population(X: np.ndarray) -> Population:
    """A population with one fresh individual per row of X, each owning a copy of its row
    (a view would keep all of X alive for as long as any one of them survives)."""
    return Population([new_individual(row.copy()) for row in X])


def set_rows(pop, X: np.ndarray) -> None:
    """Give each individual its row of X as its own array (no view keeps X alive)."""
    for ind, row in zip(pop, X, strict=True):
        ind.X = row.copy()


class PlanSampling(Sampling):
    """The given seed chromosomes (e.g. every baseline's plan) topped up with random plans."""

    def __init__(self, codec: PlanCodec, seeds: np.ndarray):
        super().__init__()
        self.codec = codec
        self.seeds = np.asarray(seeds, dtype=GENE_DTYPE).reshape(-1, codec.n_genes)

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        extra = max(0, n_samples - self.seeds.shape[0])
        return np.vstack((self.seeds, self.codec.random(extra, random_state)))


class UniformCrossover(Crossover):
    """Uniform crossover of the nodes: each task's node from either parent with even odds, two
    complementary children per pair. Each child takes one parent's order whole, except that
    with probability ``order_rate`` a pair's orders are crossed (precedence-preserving: see
    the module docstring). Eligible, topological parents give eligible, topological children."""

    def __init__(self, prob: float = 0.9, order_rate: float = 0.02):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.order_rate = order_rate

    def cross(self, X: np.ndarray, first: np.ndarray, second: np.ndarray, rng: np.random.Generator,
              vary_orders: bool = True) -> np.ndarray:
        """Children (2 x pairs, genes) of the row pairs ``X[first[i]]``, ``X[second[i]]``; no
        order crossover unless ``vary_orders``."""
        n_pairs, n_genes = first.shape[0], X.shape[1]
        # One random bit per gene, drawn as bytes: far cheaper than a float per gene.
        bits = np.frombuffer(rng.bytes(n_pairs * ((n_genes + 7) // 8)), dtype=np.uint8)
        take_first = np.unpackbits(bits).reshape(n_pairs, -1)  # the kernel reads the first n_genes columns
        crossing = rng.random(n_pairs) < self.prob.value
        take_first[~crossing] = 1  # no crossover: the children copy the parents
        cross_orders = crossing & (rng.random(n_pairs) < (self.order_rate if vary_orders else 0.0))
        out = np.empty((2 * n_pairs, n_genes), dtype=GENE_DTYPE)
        # Contiguous arguments whatever the batch: one compiled signature to load from the cache.
        _uniform_cross(np.ascontiguousarray(X, dtype=GENE_DTYPE), np.ascontiguousarray(first, dtype=np.int64),
                       np.ascontiguousarray(second, dtype=np.int64), take_first, cross_orders,
                       np.empty(n_genes // 2, dtype=np.bool_), out)
        return out

    @default_random_state
    def do(self, problem, pop, parents=None, *args, random_state=None, **kwargs):
        pairs = pop if parents is None else pop[parents]
        X = population_matrix(pairs)
        return new_population(self.cross(X, np.arange(0, len(X), 2), np.arange(1, len(X), 2), random_state))


@jit
def _precedence_cross(a, b, take_a, taken, out):
    # Position k takes the first task of a's order (take_a[k] 1) or b's (0) that is not taken
    # yet. Each pick's parents all come before it in that order, so they are taken already:
    # the child's order is topological when a's and b's are.
    taken[:] = False
    ia = ib = 0
    for k in range(out.shape[0]):
        if take_a[k]:
            while taken[a[ia]]:
                ia += 1
            t = a[ia]
        else:
            while taken[b[ib]]:
                ib += 1
            t = b[ib]
        out[k] = t
        taken[t] = True


@jit
def _uniform_cross(X, first, second, take_first, cross_orders, taken, out):
    # Child i takes node gene g from X[first[i]] where take_first[i, g] is 1, else from
    # X[second[i]]; child P+i the other way round (branch-free: the bits are random). The
    # orders: crossed where cross_orders[i], else child i takes first's order when
    # take_first[i, n] is 1, second's otherwise, and child P+i the other.
    P, n = first.shape[0], X.shape[1] // 2
    for i in range(P):
        a, b = first[i], second[i]
        for g in range(n):
            swap = (X[a, g] ^ X[b, g]) & -np.int32(take_first[i, g])
            out[i, g] = X[b, g] ^ swap
            out[P + i, g] = X[a, g] ^ swap
        if cross_orders[i]:
            _precedence_cross(X[a, n:], X[b, n:], take_first[i, n:], taken, out[i, n:])
            _precedence_cross(X[b, n:], X[a, n:], take_first[i, n:], taken, out[P + i, n:])
        else:
            if take_first[i, n] == 0:
                a, b = b, a
            out[i, n:] = X[a, n:]
            out[P + i, n:] = X[b, n:]


@jit
def _reassign(X, rows, genes, u, eligible_ptr, eligible_nodes):
    # Move task genes[i] of row rows[i] to a different eligible node, uniformly.
    for i in range(rows.shape[0]):
        r = rows[i]
        t = genes[i]
        lo = eligible_ptr[t]
        count = eligible_ptr[t + 1] - lo
        if count <= 1:
            continue
        k = int(u[i] * (count - 1))
        node = eligible_nodes[lo + k]
        if node >= X[r, t]:  # skip the current node (eligible lists are ascending)
            node = eligible_nodes[lo + k + 1]
        X[r, t] = node


@jit
def _busy(duration, eligible, t, j):
    # Task t's runtime on node j, 0 where it may not run (duration is inf there).
    return duration[t, j] if eligible[t, j] else 0.0


@jit
def _shift_load(X, rows, u, duration, eligible, eligible_ptr, eligible_nodes, load):
    # Move one task off the busiest node (by busy time) to the eligible node where it would
    # finish the accumulated load soonest, if that is below the busiest node's load.
    n = duration.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        load[:] = 0.0
        for t in range(n):
            load[X[r, t]] += _busy(duration, eligible, t, X[r, t])
        busiest = np.argmax(load)
        first = int(u[i] * n)
        for step in range(n):
            t = (first + step) % n
            if X[r, t] != busiest:
                continue
            best = -1
            best_load = load[busiest]
            for e in range(eligible_ptr[t], eligible_ptr[t + 1]):
                j = eligible_nodes[e]
                if j != busiest and load[j] + _busy(duration, eligible, t, j) < best_load:
                    best = j
                    best_load = load[j] + _busy(duration, eligible, t, j)
            if best >= 0:
                X[r, t] = best
                break


@jit
def _release_node(X, rows, duration, eligible, eligible_ptr, eligible_nodes, load, used):
    # Empty the least-loaded used node (by busy time): each of its tasks moves to the other
    # used eligible node where it would finish the accumulated load soonest. A task with no
    # other used eligible node stays, so the node is then only lightened.
    n, m = duration.shape[0], load.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        load[:] = 0.0
        used[:] = False
        for t in range(n):
            load[X[r, t]] += _busy(duration, eligible, t, X[r, t])
            used[X[r, t]] = True
        victim = -1
        n_used = 0
        for j in range(m):
            if used[j]:
                n_used += 1
                if victim < 0 or load[j] < load[victim]:
                    victim = j
        if n_used <= 1:
            continue
        for t in range(n):
            if X[r, t] != victim:
                continue
            best = -1
            best_load = np.inf
            for e in range(eligible_ptr[t], eligible_ptr[t + 1]):
                j = eligible_nodes[e]
                if j != victim and used[j] and load[j] + _busy(duration, eligible, t, j) < best_load:
                    best = j
                    best_load = load[j] + _busy(duration, eligible, t, j)
            if best >= 0:
                X[r, t] = best
                load[best] = best_load


@jit
def _shift_order(X, rows, u, n, parent_ptr, parent_idx, child_ptr, child_idx, position):
    # Move one task of each row's order (genes n..2n-1) to a random position between its last
    # parent and its first child, so the order stays topological. Up to four tasks are
    # tried, for one whose window holds another position.
    for i in range(rows.shape[0]):
        r = rows[i]
        for k in range(n):
            position[X[r, n + k]] = k
        for attempt in range(4):
            t = X[r, n + min(int(u[i, attempt] * n), n - 1)]
            lo, hi = 0, n - 1
            for e in range(parent_ptr[t], parent_ptr[t + 1]):
                lo = max(lo, position[parent_idx[e]] + 1)
            for e in range(child_ptr[t], child_ptr[t + 1]):
                hi = min(hi, position[child_idx[e]] - 1)
            if hi == lo:
                continue
            p = position[t]
            q = lo + min(int(u[i, 4] * (hi - lo)), hi - lo - 1)
            if q >= p:  # a new position other than p, uniformly
                q += 1
            if q < p:
                for k in range(p, q, -1):
                    X[r, n + k] = X[r, n + k - 1]
            else:
                for k in range(p, q):
                    X[r, n + k] = X[r, n + k + 1]
            X[r, n + q] = t
            break


class PlanMutation(Mutation):
    """Every child gets >= 1 task reassigned to another eligible node (each task that has a
    choice with probability ``gene_rate``, default 1 / their number), with probability
    ``shift_rate`` one load-shifting move, with probability ``release_rate`` a node-release
    move, and with probability ``order_rate`` one task shifted in its dispatch order (between
its last parent and its first child).

    The node-release move empties the plan's least-loaded node onto its other used nodes.
    Utilization counts only used nodes, so plans on fewer nodes form their own trade-off
    region, which single-task moves reach only by chance (all tasks off a node at once). On
    the ~100-task WfCommons workflows of ``bench_quality`` (search seeds 0-9, normalised by
    the DEAP and pymoo fronts and the baselines) it and a crossover rate of 0.5 lift NSGA-II's
    mean hypervolume from 1.34 to 1.44.
    """

    def __init__(self, codec: PlanCodec, *, gene_rate: float | None = None, shift_rate: float = 0.5,
                 release_rate: float = 0.1, order_rate: float = 0.02):
        super().__init__()
        self.codec = codec
        self.gene_rate = 1.0 / max(1, codec.movable.size) if gene_rate is None else gene_rate
        self.shift_rate = shift_rate
        self.release_rate = release_rate
        self.order_rate = order_rate
        # The instance's own tables (runtimes read as 0 where not eligible): no tasks x nodes copy.
        self._duration = np.ascontiguousarray(codec.instance.duration)
        self._eligible = np.ascontiguousarray(codec.instance.eligible)
        self._load = np.empty(codec.instance.n_nodes)
        self._used = np.empty(codec.instance.n_nodes, dtype=np.bool_)
        self._position = np.empty(codec.n_tasks, dtype=np.int64)

    def mutate(self, X: np.ndarray, rng: np.random.Generator, vary_orders: bool = True) -> np.ndarray:
        """Mutate the chromosome matrix ``X`` in place and return it; orders only if ``vary_orders``."""
        codec = self.codec
        P, n, movable = X.shape[0], codec.n_tasks, codec.movable
        if movable.size:
            per_row = np.maximum(rng.binomial(movable.size, self.gene_rate, size=P), 1)
            rows = np.repeat(np.arange(P), per_row)
            genes = movable[rng.integers(0, movable.size, size=rows.shape[0])]
            # Each (row, task) once, so a second draw cannot move a task back.
            _, once = np.unique(rows.astype(np.int64) * n + genes, return_index=True)
            rows, genes = rows[once], genes[once]
            _reassign(X, rows, genes, rng.random(rows.shape[0]), codec.eligible_ptr, codec.eligible_nodes)
        shift = np.flatnonzero(rng.random(P) < self.shift_rate)
        _shift_load(X, shift, rng.random(shift.shape[0]), self._duration, self._eligible, codec.eligible_ptr,
                    codec.eligible_nodes, self._load)
        release = np.flatnonzero(rng.random(P) < self.release_rate)
        _release_node(X, release, self._duration, self._eligible, codec.eligible_ptr, codec.eligible_nodes, self._load, self._used)
        reorder = np.flatnonzero(rng.random(P) < (self.order_rate if vary_orders else 0.0))
        inst = codec.instance
        _shift_order(X, reorder, rng.random((reorder.shape[0], 5)), n, inst.parent_ptr, inst.parent_idx,
                     inst.child_ptr, inst.child_idx, self._position)
        return X

    @default_random_state
    def do(self, problem, pop, inplace=True, *args, random_state=None, **kwargs):
        set_rows(pop, self.mutate(population_matrix(pop), random_state))
        return pop


@jit
def _raise_to_parents(keys, topo, parent_ptr, parent_idx):
    # Each task's key raised to its parents' (taken in topological order, so transitively).
    for r in range(keys.shape[0]):
        for t in topo:
            for e in range(parent_ptr[t], parent_ptr[t + 1]):
                keys[r, t] = max(keys[r, t], keys[r, parent_idx[e]])


class EligibilityRepair(Repair):
    """Clip genes into range, move any task on a node it may not use to its fastest eligible
    node, and make the order genes a topological order. The operators above never break a
    chromosome; this makes chromosomes from elsewhere (e.g. pymoo's stock integer operators)
    valid.

    Order repair: each task's priority is its first position in the order genes (a task
    missing from them comes after, by index), raised to its parents' priorities; tasks are
    ordered by priority, then by depth (longest path from an entry task). A topological
    order is left as it is."""

    def __init__(self, codec: PlanCodec):
        super().__init__()
        self.codec = codec
        inst = codec.instance
        # A block of rows at a time: no tasks x nodes temporary.
        self._fastest = np.empty(inst.n_tasks, dtype=GENE_DTYPE)
        for lo in range(0, inst.n_tasks, ROWS_AT_ONCE):
            rows = slice(lo, lo + ROWS_AT_ONCE)
            self._fastest[rows] = np.argmin(np.where(inst.eligible[rows], inst.duration[rows], np.inf), axis=1)
        depth = np.zeros(inst.n_tasks, dtype=np.int64)
        for t in inst.topo_order.tolist():
            parents = inst.parent_idx[inst.parent_ptr[t]:inst.parent_ptr[t + 1]]
            depth[t] = depth[parents].max() + 1 if parents.size else 0
        self._depth = depth

    def fix(self, X: np.ndarray) -> np.ndarray:
        codec, inst = self.codec, self.codec.instance
        n = codec.n_tasks
        X = np.rint(np.asarray(X, dtype=np.float64)).astype(GENE_DTYPE).reshape(-1, codec.n_genes)
        X = np.clip(X, 0, np.concatenate((np.full(n, inst.n_nodes - 1), np.full(n, n - 1))))
        bad = ~inst.eligible[np.arange(n), X[:, :n]]
        X[:, :n] = np.where(bad, self._fastest, X[:, :n])
        P = X.shape[0]
        keys = np.tile(np.arange(n, 2 * n, dtype=np.int64), (P, 1))  # missing tasks: after, by index
        rows = np.repeat(np.arange(P), n)
        positions = np.tile(np.arange(n), P)
        np.minimum.at(keys, (rows, X[:, n:].ravel()), positions)
        _raise_to_parents(keys, inst.topo_order, inst.parent_ptr, inst.parent_idx)
        X[:, n:] = np.lexsort((np.broadcast_to(self._depth, keys.shape), keys), axis=-1)
        return X

    def do(self, problem, pop, **kwargs):
        set_rows(pop, self.fix(population_matrix(pop)))
        return pop


class KeepRepair(Repair):
    """No repair pass: the operators above keep every gene eligible by construction (pymoo's
    ``NoRepair`` still copies every row in and out)."""

    def do(self, problem, pop, **kwargs):
        return pop


@jit
def _row_hashes(X, multipliers, out):
    # A random linear hash mod 2^64 (independent multiply-adds, so it vectorises): equal
    # rows hash equally; the rare collisions of unequal rows are settled by comparing rows.
    for i in range(X.shape[0]):
        h = np.uint64(0)
        for g in range(X.shape[1]):
            h += np.uint64(X[i, g]) * multipliers[g]
        out[i] = h


_MULTIPLIERS: dict[int, np.ndarray] = {}


def row_hashes(X: np.ndarray) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=GENE_DTYPE)
    width = X.shape[1]
    if width not in _MULTIPLIERS:  # a fixed table: hashes are the same in every run
        table = np.random.default_rng(width).integers(0, 2**63, size=width, dtype=np.uint64)
        _MULTIPLIERS[width] = table * np.uint64(2) + np.uint64(1)
    out = np.empty(X.shape[0], dtype=np.uint64)
    _row_hashes(X, _MULTIPLIERS[width], out)
    return out


class RowHashDuplicateElimination(DuplicateElimination):
    """Drops exact duplicate chromosomes by hashing rows (O(P x genes)) instead of pymoo's
    pairwise distance matrix: keeps the first of equal rows within ``pop`` and drops rows
    equal to any row of the other populations given."""

    @staticmethod
    def keep_mask(X: np.ndarray, *others: np.ndarray, to_itself: bool = True) -> np.ndarray:
        """Which rows of X to keep; rows are compared only where their hashes agree."""
        hashed = [(other, row_hashes(other)) for other in others if other.shape[0]]
        in_others = set().union(*(h.tolist() for _, h in hashed))
        hx = row_hashes(X)
        keep = np.ones(X.shape[0], dtype=bool)
        for i in [i for i, h in enumerate(hx.tolist()) if h in in_others]:
            keep[i] = not any((other[ho == hx[i]] == X[i]).all(axis=1).any() for other, ho in hashed)
        if to_itself:
            _, first = np.unique(hx, return_index=True)
            repeats = np.ones(X.shape[0], dtype=bool)
            repeats[first] = False
            for i in np.flatnonzero(repeats & keep).tolist():  # a duplicate, or (rarely) a collision
                earlier = np.flatnonzero((hx[:i] == hx[i]) & keep[:i])
                keep[i] = not (X[earlier] == X[i]).all(axis=1).any()
        return keep

    def do(self, pop, *args, return_indices=False, to_itself=True):
        if len(pop) == 0:
            return (pop, [], []) if return_indices else pop
        others = [population_matrix(o) for o in args if o is not None and len(o) > 0]
        keep = self.keep_mask(population_matrix(pop), *others, to_itself=to_itself)
        out = pop[keep]
        if return_indices:
            return out, np.flatnonzero(keep).tolist(), np.flatnonzero(~keep).tolist()
        return out


# Distinct dispatch orders in a population above which a generation's children make no new
# order: the evaluator keeps the layouts of its last 32 orders, and each one rebuilt costs
# about as much as scoring ten plans at 1,000 tasks.
ORDER_VARIETY = 20


class ArrayMating(Mating):
    """pymoo's mating (select, cross, mutate, drop duplicates, repeat until enough children)
    on one chromosome matrix: the population's rows are read once per generation and the
    children become individuals once, instead of at every step. Children vary orders only
    while the population holds fewer than ``order_variety`` distinct ones."""

    def __init__(self, selection, crossover: UniformCrossover, mutation: PlanMutation,
                 eliminate_duplicates: RowHashDuplicateElimination, n_max_iterations: int = 100,
                 order_variety: int = ORDER_VARIETY):
        super().__init__(selection, crossover, mutation, eliminate_duplicates=eliminate_duplicates,
                         n_max_iterations=n_max_iterations)
        self.order_variety = order_variety

    def children(self, problem, pop, X: np.ndarray, n_offsprings: int, random_state=None,
                 n_max_iterations=None) -> np.ndarray:
        """The chromosome matrix of up to ``n_offsprings`` new children of ``pop`` (whose
        chromosomes are the rows of ``X``), none equal to a row of X or to each other. It
        stops early when a whole batch holds no new child."""
        children = np.empty((0, X.shape[1]), dtype=GENE_DTYPE)
        vary_orders = np.unique(row_hashes(X[:, X.shape[1] // 2:])).size < self.order_variety
        for _ in range(n_max_iterations or self.n_max_iterations):
            n_pairs = -(-(n_offsprings - children.shape[0]) // 2)
            pairs = self.selection._do(problem, pop, n_pairs, n_parents=2, random_state=random_state)
            batch = self.crossover.cross(X, pairs[:, 0], pairs[:, 1], random_state, vary_orders)
            batch = self.mutation.mutate(batch, random_state, vary_orders)
            batch = batch[self.eliminate_duplicates.keep_mask(batch, X, children)]
            if batch.shape[0] == 0:  # all duplicates: a tiny search space, where retries rarely help
                break
            children = np.concatenate((children, batch[: n_offsprings - children.shape[0]]))
            if children.shape[0] >= n_offsprings:
                break
        return children

    def do(self, problem, pop, n_offsprings, random_state=None, n_max_iterations=None, **kwargs):
        return new_population(self.children(problem, pop, population_matrix(pop), n_offsprings, random_state,
                                            n_max_iterations))

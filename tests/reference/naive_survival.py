"""NSGA-II survival written out: feasible plans by (front rank, larger crowding distance within
the front, a random draw), then infeasible plans by constraint violation."""

from __future__ import annotations

import numpy as np

from tests.reference.naive_pareto import brute_crowding, brute_ranks


def reference_survival(F, cv, n_survive: int, rng: np.random.Generator):
    """(survivors, their ranks, their crowding distances), drawing from ``rng`` as the kernel
    does: one uniform number per feasible plan, before anything else."""
    feasible = [i for i in range(len(F)) if cv[i] <= 0.0]
    draws = rng.random(len(feasible)).tolist()
    rank = brute_ranks(F[feasible].tolist()) if feasible else []
    crowd = [0.0] * len(feasible)
    for level in set(rank):
        members = [p for p, r in enumerate(rank) if r == level]
        values = brute_crowding([F[feasible[p]].tolist() for p in members]) if len(members) > 2 \
            else [np.inf] * len(members)
        for p, value in zip(members, values, strict=True):
            crowd[p] = value
    best = sorted(range(len(feasible)), key=lambda p: (rank[p], -crowd[p], draws[p]))[:n_survive]
    infeasible = sorted((i for i in range(len(F)) if cv[i] > 0.0), key=lambda i: cv[i])[:n_survive - len(best)]
    next_rank = max((rank[p] for p in best), default=-1) + 1
    return ([feasible[p] for p in best] + infeasible,
            [rank[p] for p in best] + [next_rank + k for k in range(len(infeasible))],
            [crowd[p] for p in best] + [0.0] * len(infeasible))

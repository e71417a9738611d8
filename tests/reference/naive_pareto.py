"""Brute-force references for the Pareto kernels: domination, fronts, crowding, exact
hypervolume."""

from __future__ import annotations

import itertools


def dominates(a, b):
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def brute_non_dominated(F):
    rows = [tuple(r) for r in F]
    return [i for i, a in enumerate(rows) if not any(dominates(b, a) for b in rows)]


def brute_ranks(F):
    rank = [None] * len(F)
    left = set(range(len(F)))
    level = 0
    while left:
        front = [i for i in left if not any(dominates(F[j], F[i]) for j in left)]
        for i in front:
            rank[i] = level
        left -= set(front)
        level += 1
    return rank


def brute_crowding(F):
    P, k = len(F), len(F[0])
    out = [0.0] * P
    for c in range(k):
        order = sorted(range(P), key=lambda i: F[i][c])  # stable, like the kernel's mergesort
        span = F[order[-1]][c] - F[order[0]][c]
        out[order[0]] = out[order[-1]] = float("inf")
        for pos in range(1, P - 1):
            if span > 0:
                out[order[pos]] += (F[order[pos + 1]][c] - F[order[pos - 1]][c]) / span
    return out


def brute_hypervolume(Z, ref):
    """Exact volume of the union of boxes [z, ref] by cutting space at every coordinate."""
    k = len(ref)
    cuts = [sorted({float(z[c]) for z in Z if z[c] < ref[c]} | {ref[c]}) for c in range(k)]
    volume = 0.0
    for cell in itertools.product(*[range(len(cs) - 1) for cs in cuts]):
        lo = [cuts[c][cell[c]] for c in range(k)]
        if any(all(z[c] <= lo[c] for c in range(k)) for z in Z):
            size = 1.0
            for c in range(k):
                size *= cuts[c][cell[c] + 1] - cuts[c][cell[c]]
            volume += size
    return volume


def cramer_plane_normal(points):
    """n with points @ n = 1 by Cramer's rule in exact rationals, each component rounded once;
    None when the determinant is 0."""
    from fractions import Fraction

    def det(a):
        if len(a) == 1:
            return a[0][0]
        return sum((-1) ** c * a[0][c] * det([row[:c] + row[c + 1:] for row in a[1:]]) for c in range(len(a)))

    a = [[Fraction(float(v)) for v in row] for row in points]
    whole = det(a)
    if whole == 0:
        return None
    return [float(det([row[:c] + [Fraction(1)] + row[c + 1:] for row in a]) / whole) for c in range(len(a))]

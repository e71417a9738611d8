"""Plain-Python references for the variation operators' kernels and duplicate elimination."""

from __future__ import annotations


def reference_reassign(X, rows, genes, u, codec):
    X = X.copy()
    for r, t, x in zip(rows, genes, u, strict=True):
        others = [j for j in codec.instance.eligible_nodes(t) if j != X[r, t]]
        if others:
            X[r, t] = others[int(x * len(others))]
    return X


def reference_shift(X, rows, u, instance):
    X = X.copy()
    n, m = instance.n_tasks, instance.n_nodes
    for r, x in zip(rows, u, strict=True):
        load = [0.0] * m
        for t in range(n):
            load[X[r, t]] += instance.duration[t, X[r, t]]
        busiest = load.index(max(load))
        first = int(x * n)
        for step in range(n):
            t = (first + step) % n
            if X[r, t] != busiest:
                continue
            finish = {j: load[j] + instance.duration[t, j] for j in instance.eligible_nodes(t) if j != busiest}
            better = [j for j in finish if finish[j] < load[busiest]]
            if better:
                X[r, t] = min(better, key=lambda j: (finish[j], j))
                break
    return X


def reference_release(X, rows, instance):
    X = X.copy()
    n = instance.n_tasks
    for r in rows:
        load = {}
        for t in range(n):
            load[X[r, t]] = load.get(X[r, t], 0.0) + instance.duration[t, X[r, t]]
        if len(load) <= 1:
            continue
        victim = min(load, key=lambda j: (load[j], j))
        for t in range(n):
            if X[r, t] != victim:
                continue
            finish = {j: load[j] + instance.duration[t, j]
                      for j in instance.eligible_nodes(t) if j != victim and j in load}
            if finish:
                best = min(finish, key=lambda j: (finish[j], j))
                X[r, t] = best
                load[best] = finish[best]
    return X


def first_unseen(X, other):
    """Reference: keep a row unless it is in ``other`` or equals an earlier row."""
    expected, seen = [], {tuple(r) for r in other}
    for row in map(tuple, X):
        expected.append(row not in seen)
        seen.add(row)
    return expected

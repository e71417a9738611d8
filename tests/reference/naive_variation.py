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


def is_topological(instance, order) -> bool:
    """Whether ``order`` is a permutation of the tasks with every parent before its children."""
    n = instance.n_tasks
    if sorted(int(t) for t in order) != list(range(n)):
        return False
    position = {int(t): k for k, t in enumerate(order)}
    return all(position[int(instance.parent_idx[e])] < position[t]
               for t in range(n) for e in range(instance.parent_ptr[t], instance.parent_ptr[t + 1]))


def reference_precedence_cross(a, b, take_a):
    """Precedence-preserving crossover: position k takes the first task of ``a`` (take_a[k]
    1) or of ``b`` not taken yet."""
    child = []
    for k in range(len(a)):
        source = a if take_a[k] else b
        child.append(next(int(t) for t in source if int(t) not in child))
    return child


def reference_shift_order(X, rows, u, instance):
    """Per row: of up to four tasks (``u[i, :4]``), the first whose window between its last
    parent and first child holds another position moves to one of those (``u[i, 4]``)."""
    X = X.copy()
    n = instance.n_tasks
    for r, x in zip(rows, u, strict=True):
        order = [int(t) for t in X[r, n:]]
        for attempt in range(4):
            t = order[min(int(x[attempt] * n), n - 1)]
            parents = instance.parent_idx[instance.parent_ptr[t]:instance.parent_ptr[t + 1]]
            children = instance.child_idx[instance.child_ptr[t]:instance.child_ptr[t + 1]]
            lo = max([order.index(int(p)) + 1 for p in parents], default=0)
            hi = min([order.index(int(c)) - 1 for c in children], default=n - 1)
            others = [q for q in range(lo, hi + 1) if q != order.index(t)]
            if not others:
                continue
            q = others[min(int(x[4] * len(others)), len(others) - 1)]
            order.remove(t)
            order.insert(q, t)
            break
        X[r, n:] = order
    return X

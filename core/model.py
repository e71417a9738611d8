"""Workload and cluster model, and the compiled arrays (``Instance``) every algorithm works on.

Units used throughout (the README's cost model states them too): work in GFLOP, speed in
GFLOP/s, memory in GB, data in MB, bandwidth in MB/s, latency and times in seconds, power in
watts, cost in currency units per hour.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from apportion.core.errors import SpecError


@dataclass(frozen=True)
class Task:
    id: str
    work: float
    kind: str = "task"
    memory: float = 0.0
    priority: float = 1.0
    deadline: float | None = None
    request: str | None = None
    allowed_kinds: tuple[str, ...] | None = None
    allowed_zones: tuple[str, ...] | None = None
    # Re-planning: a task that ran or is running stays where and when it is (all three set);
    # previous_node is where the plan being revised put it (counted by the migration objective).
    pinned_node: str | None = None
    pinned_start: float | None = None
    pinned_end: float | None = None
    previous_node: str | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    data: float = 0.0


@dataclass(frozen=True)
class Request:
    """A user-visible unit of work (one patient case, one region, one stream)."""

    id: str
    release: float = 0.0
    deadline: float | None = None
    priority: float | None = None


@dataclass(frozen=True)
class Workload:
    tasks: tuple[Task, ...]
    edges: tuple[Edge, ...] = ()
    requests: tuple[Request, ...] = ()
    name: str = "workload"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    speed: float
    memory: float
    zone: str = "default"
    busy_power: float = 0.0
    idle_power: float = 0.0
    cost_per_hour: float = 0.0
    # Re-planning: new work starts here no earlier than available_from (s); a failed node takes
    # no new work (the outputs of tasks pinned to it are assumed to be kept).
    available_from: float = 0.0
    failed: bool = False
    # Seconds every task placed here costs on top of its work (an executor's per-task start-up:
    # about a second per task instance in Airflow): duration = overhead + work / rate.
    overhead: float = 0.0
    # How many tasks the node runs at once (1..MAX_NODE_SLOTS); each runs at the node's full speed.
    slots: int = 1


@dataclass(frozen=True)
class Link:
    """Bandwidth between two nodes, or between two zones (``a``/``b`` name zones then).

    A node-pair link wins over a zone-pair link; a zone pair with itself covers the links
    inside a zone. Bandwidth 0 means the two cannot exchange data.
    """

    a: str
    b: str
    bandwidth: float
    latency: float = 0.0


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, ...]
    links: tuple[Link, ...] = ()
    default_bandwidth: float | None = None
    default_latency: float = 0.0
    # speed_factors[node_kind][task_kind]: a task of that kind runs that many times faster.
    speed_factors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    name: str = "cluster"
    # node_speed_factors[node_id][task_kind]: overrides speed_factors for that one node (what a
    # calibration measures: nodes of one kind need not run alike).
    node_speed_factors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


MAX_NODE_SLOTS = 1024  # slots of one node
MAX_CLUSTER_SLOTS = 4096  # slots of a cluster, all nodes together


def _slot_count(value, path: str) -> int:
    """A node's ``slots``: an integer from 1 to ``MAX_NODE_SLOTS`` (an integral float too, as
    tables read it)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and isinstance(value, (float, np.floating)):
        ok = math.isfinite(value) and float(value).is_integer()
    if not ok or not 1 <= value <= MAX_NODE_SLOTS:
        raise SpecError(path, f"must be an integer from 1 to {MAX_NODE_SLOTS}, got {value!r}")
    return int(value)


def _finite(value, path: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise SpecError(path, f"must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise SpecError(path, f"must be a finite number, got {value!r}")
    if x < minimum or (strict and x == minimum):
        op = ">" if strict else ">="
        raise SpecError(path, f"must be {op} {minimum:g}, got {x:g}")
    return x


def _unique_ids(items, what: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item.id, str) or not item.id:
            raise SpecError(f"{what}[{i}].id", f"must be a non-empty string, got {item.id!r}")
        if item.id in index:
            raise SpecError(f"{what}[{item.id!r}]", f"duplicate id (entries {index[item.id]} and {i})")
        index[item.id] = i
    return index


def eligibility_patterns(eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an (n, m) bool table, sorted, and each row's index among them: what
    ``np.unique(eligible, axis=0, return_inverse=True)`` gives, 20 times faster (rows packed
    to bytes compare as one value each; big-endian bits keep the rows' order)."""
    packed = np.ascontiguousarray(np.packbits(eligible, axis=1))
    rows = packed.view(np.dtype((np.void, max(packed.shape[1], 1)))).reshape(-1)
    _, first, pattern_of = np.unique(rows, return_index=True, return_inverse=True)
    return eligible[first], pattern_of.reshape(-1)


def _find_cycle(n: int, children: list[list[int]]) -> list[int]:
    """Return the task indices of one directed cycle (iterative DFS), or [] if acyclic."""
    colour = [0] * n  # 0 new, 1 on stack, 2 done
    parent = [-1] * n
    for root in range(n):
        if colour[root]:
            continue
        stack = [(root, 0)]
        colour[root] = 1
        while stack:
            v, i = stack[-1]
            if i < len(children[v]):
                stack[-1] = (v, i + 1)
                w = children[v][i]
                if colour[w] == 0:
                    colour[w] = 1
                    parent[w] = v
                    stack.append((w, 0))
                elif colour[w] == 1:
                    cycle = [v]
                    while cycle[-1] != w:
                        cycle.append(parent[cycle[-1]])
                    return cycle[::-1]
            else:
                colour[v] = 2
                stack.pop()
    return []


@dataclass(frozen=True, eq=False)
class Instance:
    """A validated workload on a cluster, as flat arrays for the compiled kernels.

    Tasks and nodes are indexed in the order given. Parents are stored as CSR by child
    (``parent_ptr``, ``parent_idx``, ``parent_data``), children likewise by parent.
    """

    workload: Workload
    cluster: Cluster
    task_ids: tuple[str, ...]
    node_ids: tuple[str, ...]
    duration: np.ndarray  # (n, m) float64 seconds; inf where the task is not eligible
    work: np.ndarray  # (n,) GFLOP
    kind_of: np.ndarray  # (n,) int32 index into task_kinds
    task_kinds: tuple[str, ...]
    rate: np.ndarray  # (m, K) GFLOP/s of node j on tasks of kind k: duration = overhead + work / rate
    eligible: np.ndarray  # (n, m) bool
    parent_ptr: np.ndarray  # (n+1,) int64
    parent_idx: np.ndarray  # (E,) int32
    parent_data: np.ndarray  # (E,) float64 MB
    child_ptr: np.ndarray  # (n+1,) int64
    child_idx: np.ndarray  # (E,) int32
    child_data: np.ndarray  # (E,) float64 MB
    latency: np.ndarray  # (m, m) float64 seconds, 0 on the diagonal
    inv_bandwidth: np.ndarray  # (m, m) float64 s/MB, 0 on the diagonal, inf with no link
    release: np.ndarray  # (n,) float64: the task's request release time
    deadline: np.ndarray  # (n,) float64, inf when none
    priority: np.ndarray  # (n,) float64
    request_of: np.ndarray  # (n,) int32
    request_ids: tuple[str, ...]
    request_release: np.ndarray  # (R,) float64
    request_deadline: np.ndarray  # (R,) float64, inf when none
    request_priority: np.ndarray  # (R,) float64
    busy_power: np.ndarray  # (m,) W
    idle_power: np.ndarray  # (m,) W
    cost_rate: np.ndarray  # (m,) per second
    available_from: np.ndarray  # (m,) s
    overhead: np.ndarray  # (m,) s per task placed on the node
    slots: np.ndarray  # (m,) int32 tasks the node runs at once
    pinned_node: np.ndarray  # (n,) int32, -1 when the task is free
    pinned_start: np.ndarray  # (n,) s, nan when free
    pinned_end: np.ndarray  # (n,) s, nan when free
    previous_node: np.ndarray  # (n,) int32, -1 when unknown
    topo_order: np.ndarray  # (n,) int32, a topological order (smallest index first)
    # A slot instance's (``slot_instance``) node of each of its machines in the instance it
    # comes from; None for an instance built from a spec.
    machine_node: np.ndarray | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    @property
    def n_edges(self) -> int:
        return int(self.parent_idx.shape[0])

    def transfer_time(self, data: float, src: int, dst: int) -> float:
        """Seconds to move ``data`` MB from node ``src`` to node ``dst`` (the cost model)."""
        if src == dst:
            return 0.0
        return self.latency[src, dst] + data * self.inv_bandwidth[src, dst]

    @cached_property
    def slot_ptr(self) -> np.ndarray | None:
        """(m+1,) int64 offsets of each node's slots in a flat array of slots (node j's are
        ``slot_ptr[j]:slot_ptr[j+1]``), or None when every node has one slot: the kernels then
        compile their one-task-per-node path."""
        if (self.slots == 1).all():
            return None
        ptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
        np.cumsum(self.slots, out=ptr[1:])
        return ptr

    def same_node(self) -> np.ndarray:
        """(m, m) bool: whether two nodes are one (the diagonal; on a slot instance, two slots
        of one node too)."""
        if self.machine_node is None:
            return np.eye(self.n_nodes, dtype=bool)
        return self.machine_node[:, None] == self.machine_node[None, :]

    @cached_property
    def slot_nodes(self) -> np.ndarray:
        """(total slots,) int32: the node of each slot, nodes in order (a node with k slots
        appears k times). With one slot everywhere, ``arange(m)``."""
        return np.repeat(np.arange(self.n_nodes, dtype=np.int32), self.slots)

    @cached_property
    def slot_instance(self) -> "Instance":
        """This instance with every slot a node of its own (``slot_nodes`` maps them back): what
        an algorithm that places tasks on one-task-at-a-time machines (the list-scheduling
        baselines, the insertion decoders) plans on. Slots of one node share its numbers and
        its zone, and data between them moves at no cost (the same node). A pinned task sits
        on a slot of its node taken by the evaluator's rule at its start. ``self`` when every
        node has one slot."""
        if self.slot_ptr is None:
            return self
        from dataclasses import replace

        sn = self.slot_nodes
        first = self.slot_ptr[:-1]
        nodes = tuple(replace(self.cluster.nodes[j], id=f"{self.node_ids[j]}#{s - first[j]}", slots=1)
                      for s, j in enumerate(sn.tolist()))
        pinned_slot = np.full(self.n_tasks, -1, dtype=np.int32)
        free = np.full(len(sn), -np.inf)  # pinned tasks take their slots before available_from counts
        for t in sorted(np.flatnonzero(self.pinned_node >= 0).tolist(), key=lambda t: self.pinned_start[t]):
            j = int(self.pinned_node[t])
            span = free[self.slot_ptr[j]:self.slot_ptr[j + 1]]
            idle = np.flatnonzero(span <= self.pinned_start[t])
            i = int(idle[np.argmax(span[idle])]) if idle.size else int(np.argmin(span))  # first of equals
            pinned_slot[t] = self.slot_ptr[j] + i
            span[i] = max(span[i], self.pinned_end[t])
        previous = np.where(self.previous_node >= 0, first[np.maximum(self.previous_node, 0)], -1).astype(np.int32)
        return replace(
            self, cluster=replace(self.cluster, nodes=nodes), node_ids=tuple(nd.id for nd in nodes),
            duration=np.ascontiguousarray(self.duration[:, sn]), rate=np.ascontiguousarray(self.rate[sn]),
            eligible=np.ascontiguousarray(self.eligible[:, sn]),
            latency=np.ascontiguousarray(self.latency[np.ix_(sn, sn)]),
            inv_bandwidth=np.ascontiguousarray(self.inv_bandwidth[np.ix_(sn, sn)]),
            busy_power=self.busy_power[sn], idle_power=self.idle_power[sn], cost_rate=self.cost_rate[sn],
            available_from=self.available_from[sn], overhead=self.overhead[sn],
            slots=np.ones(len(sn), dtype=np.int32), pinned_node=pinned_slot, previous_node=previous, machine_node=sn,
        )

    def eligible_nodes(self, task: int) -> np.ndarray:
        return np.flatnonzero(self.eligible[task])

    @cached_property
    def viable(self) -> np.ndarray:
        """(n, m) bool: eligible, and from that node every child of the task can still be fed
        (some eligible node of the child is the same node or linked to it). A constructive
        algorithm that keeps to these nodes never paints itself into an unroutable corner
        over a single edge. Rows with no viable node fall back to eligibility."""
        n, m = self.n_tasks, self.n_nodes
        connected = (np.isfinite(self.inv_bandwidth) | np.eye(m, dtype=bool)).astype(np.int32)
        patterns, pattern_of = eligibility_patterns(self.eligible)
        reach = (patterns.astype(np.int32) @ connected.T) > 0  # reach[p, j]: pattern p has a node j feeds
        blocked = np.zeros((n, m), dtype=bool)
        parent_of_edge = np.repeat(np.arange(n), np.diff(self.child_ptr))
        np.logical_or.at(blocked, parent_of_edge, ~reach[pattern_of.reshape(-1)[self.child_idx]])
        viable = self.eligible & ~blocked
        empty = ~viable.any(axis=1)
        viable[empty] = self.eligible[empty]
        return viable

    @classmethod
    def build(cls, workload: Workload, cluster: Cluster) -> "Instance":
        """Validate ``workload`` against ``cluster`` and lay both out as arrays.

        Raises ``SpecError`` naming the field and the reason for anything that cannot run. The
        steps check in a fixed order (nodes, links, requests, tasks, edges, routes), so a spec
        with several faults always reports the same one.
        """
        tasks, nodes = workload.tasks, cluster.nodes
        if not tasks:
            raise SpecError("tasks", "the workload has no tasks")
        if not nodes:
            raise SpecError("nodes", "the cluster has no nodes")
        t_index = _unique_ids(tasks, "tasks")
        n_index = _unique_ids(nodes, "nodes")
        r_index = _unique_ids(workload.requests, "requests")

        node = _node_columns(cluster)
        latency, inv_bw = _link_tables(cluster, n_index, node.zones)
        requests = _request_columns(workload.requests)
        task = _task_columns(workload, cluster, node, n_index, r_index)
        requests = _complete_requests(workload.requests, requests, task)
        src, dst, data = _edge_arrays(workload.edges, t_index)
        children = _children(tasks, src, dst, task.pinned_node)
        parent_ptr, child_ptr = _csr_pointers(len(tasks), src, dst)
        _check_routable(workload.edges, nodes, task.eligible, inv_bw, src, dst)
        topo_order = _topological_order(parent_ptr, children)
        _check_routes(tasks, nodes, task.eligible, inv_bw, src, dst, topo_order)
        _check_finite_times(workload, cluster, node, task, requests, latency, inv_bw, data)
        by_child = np.lexsort((src, dst))
        by_parent = np.lexsort((dst, src))

        return cls(
            workload=workload,
            cluster=cluster,
            task_ids=tuple(t.id for t in tasks),
            node_ids=tuple(nd.id for nd in nodes),
            duration=task.duration,
            work=task.work,
            kind_of=task.kind_of,
            task_kinds=task.kinds,
            rate=task.rate,
            eligible=task.eligible,
            parent_ptr=parent_ptr,
            parent_idx=src[by_child].astype(np.int32),
            parent_data=data[by_child],
            child_ptr=child_ptr,
            child_idx=dst[by_parent].astype(np.int32),
            child_data=data[by_parent],
            latency=latency,
            inv_bandwidth=inv_bw,
            release=requests.release[task.request_of],
            deadline=task.deadline,
            priority=task.priority,
            request_of=task.request_of,
            request_ids=requests.ids,
            request_release=requests.release,
            request_deadline=requests.deadline,
            request_priority=requests.priority,
            busy_power=node.busy_power,
            idle_power=node.idle_power,
            cost_rate=node.cost_rate,
            available_from=node.available_from,
            overhead=node.overhead,
            slots=node.slots,
            pinned_node=task.pinned_node,
            pinned_start=task.pinned_start,
            pinned_end=task.pinned_end,
            previous_node=task.previous_node,
            topo_order=topo_order,
        )


class _NodeColumns(NamedTuple):
    speed: np.ndarray  # (m,) GFLOP/s
    memory: np.ndarray  # (m,) GB
    busy_power: np.ndarray
    idle_power: np.ndarray
    cost_rate: np.ndarray  # per second
    available_from: np.ndarray
    overhead: np.ndarray  # (m,) s per task
    zones: list[str]
    slots: np.ndarray  # (m,) int32


def _node_columns(cluster: Cluster) -> _NodeColumns:
    """Check every node's numbers and the speed factors; the nodes' columns."""
    m = len(cluster.nodes)
    col = _NodeColumns(*(np.empty(m) for _ in range(7)), [], np.ones(m, dtype=np.int32))
    for j, nd in enumerate(cluster.nodes):
        p = f"nodes[{nd.id!r}]"
        col.speed[j] = _finite(nd.speed, f"{p}.speed", strict=True)
        col.memory[j] = _finite(nd.memory, f"{p}.memory")
        col.available_from[j] = _finite(nd.available_from, f"{p}.available_from")
        if not isinstance(nd.failed, bool):
            raise SpecError(f"{p}.failed", f"must be true or false, got {nd.failed!r}")
        col.busy_power[j] = _finite(nd.busy_power, f"{p}.busy_power")
        col.idle_power[j] = _finite(nd.idle_power, f"{p}.idle_power")
        col.cost_rate[j] = _finite(nd.cost_per_hour, f"{p}.cost_per_hour") / 3600.0
        col.overhead[j] = _finite(nd.overhead, f"{p}.overhead")
        col.slots[j] = _slot_count(nd.slots, f"{p}.slots")
        if not isinstance(nd.kind, str) or not nd.kind:
            raise SpecError(f"{p}.kind", f"must be a non-empty string, got {nd.kind!r}")
        col.zones.append(nd.zone)
    total = int(col.slots.sum())
    if total > MAX_CLUSTER_SLOTS:
        raise SpecError("nodes", f"{total:,} slots in all; a cluster may hold at most {MAX_CLUSTER_SLOTS:,}")
    for nk, factors in cluster.speed_factors.items():
        for tk, f in factors.items():
            _finite(f, f"speed_factors[{nk!r}][{tk!r}]", strict=True)
    ids = {nd.id for nd in cluster.nodes}
    for node_id, factors in cluster.node_speed_factors.items():
        if node_id not in ids:
            raise SpecError(f"node_speed_factors[{node_id!r}]", f"unknown node {node_id!r}")
        for tk, f in factors.items():
            _finite(f, f"node_speed_factors[{node_id!r}][{tk!r}]", strict=True)
    return col


def _index_links(cluster: Cluster, n_index: Mapping[str, int], zones: Sequence[str]):
    """The cluster's links by node pair and by zone pair, both directions."""
    zone_set = set(zones)
    node_links: dict[tuple[str, str], Link] = {}
    zone_links: dict[tuple[str, str], Link] = {}
    for ln in cluster.links:
        p = f"links[{ln.a!r},{ln.b!r}]"
        _finite(ln.bandwidth, f"{p}.bandwidth")
        _finite(ln.latency, f"{p}.latency")
        if ln.a in n_index and ln.b in n_index:
            node_links[(ln.a, ln.b)] = node_links[(ln.b, ln.a)] = ln
        elif ln.a in zone_set and ln.b in zone_set:
            zone_links[(ln.a, ln.b)] = zone_links[(ln.b, ln.a)] = ln
        else:
            unknown = [x for x in (ln.a, ln.b) if x not in n_index and x not in zone_set]
            raise SpecError(
                p,
                f"unknown node or zone {unknown[0]!r}" if unknown
                else "connects a node to a zone; name two nodes or two zones",
            )
    return node_links, zone_links


def _link_tables(cluster: Cluster, n_index: Mapping[str, int], zones: Sequence[str]):
    """(latency, inverse bandwidth) between every pair of nodes: node pair beats zone pair
    beats the cluster default; bandwidth 0 becomes infinite seconds per MB."""
    default_bw = 0.0 if cluster.default_bandwidth is None else _finite(cluster.default_bandwidth,
                                                                        "default_bandwidth")
    default_lat = _finite(cluster.default_latency, "default_latency")
    node_links, zone_links = _index_links(cluster, n_index, zones)
    zone_index = {z: k for k, z in enumerate(dict.fromkeys(zones))}
    zone_of = np.array([zone_index[z] for z in zones], dtype=np.int64)
    zone_bw = np.full((len(zone_index),) * 2, float(default_bw))
    zone_lat = np.full((len(zone_index),) * 2, float(default_lat))
    for (a, b), ln in zone_links.items():
        zone_bw[zone_index[a], zone_index[b]], zone_lat[zone_index[a], zone_index[b]] = ln.bandwidth, ln.latency
    bandwidth = zone_bw[np.ix_(zone_of, zone_of)]
    latency = zone_lat[np.ix_(zone_of, zone_of)]
    for (a, b), ln in node_links.items():
        bandwidth[n_index[a], n_index[b]], latency[n_index[a], n_index[b]] = ln.bandwidth, ln.latency
    with np.errstate(divide="ignore", over="ignore"):  # a subnormal bandwidth: inf s/MB, as Python divides
        inv_bw = np.where(bandwidth == 0, math.inf, 1.0 / bandwidth)
    np.fill_diagonal(latency, 0.0)
    np.fill_diagonal(inv_bw, 0.0)
    return latency, inv_bw


class _RequestColumns(NamedTuple):
    ids: tuple[str, ...]
    release: np.ndarray
    deadline: np.ndarray  # inf when none
    priority: np.ndarray  # nan until _complete_requests fills the defaults


def _request_columns(requests: Sequence[Request]) -> _RequestColumns:
    """The requests' columns, with one extra row for tasks that name no request."""
    R = len(requests)
    col = _RequestColumns(tuple(r.id for r in requests), np.zeros(R + 1), np.full(R + 1, math.inf),
                          np.full(R + 1, math.nan))
    for i, rq in enumerate(requests):
        p = f"requests[{rq.id!r}]"
        col.release[i] = _finite(rq.release, f"{p}.release")
        if rq.deadline is not None:
            col.deadline[i] = _finite(rq.deadline, f"{p}.deadline")
        if rq.priority is not None:
            col.priority[i] = _finite(rq.priority, f"{p}.priority")
    return col


class _TaskColumns(NamedTuple):
    kinds: tuple[str, ...]  # task kinds, sorted
    rate: np.ndarray  # (m, K)
    work: np.ndarray
    kind_of: np.ndarray
    duration: np.ndarray
    eligible: np.ndarray
    pinned_node: np.ndarray
    pinned_start: np.ndarray
    pinned_end: np.ndarray
    previous_node: np.ndarray
    deadline: np.ndarray
    priority: np.ndarray
    request_of: np.ndarray  # len(requests) for a task that names none


def _kind_rates(tasks: Sequence[Task], cluster: Cluster, speed: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """The task kinds (sorted) and each node's GFLOP/s on each kind."""
    for t in tasks:
        if not isinstance(t.kind, str) or not t.kind:
            raise SpecError(f"tasks[{t.id!r}].kind", f"must be a non-empty string, got {t.kind!r}")
    kinds = tuple(sorted({t.kind for t in tasks}))
    def factor(nd: Node, k: str) -> float:
        own = cluster.node_speed_factors.get(nd.id, {})
        return own[k] if k in own else cluster.speed_factors.get(nd.kind, {}).get(k, 1.0)

    rate = np.array(
        [[speed[j] * factor(nd, k) for k in kinds] for j, nd in enumerate(cluster.nodes)], dtype=float,
    ).reshape(len(cluster.nodes), len(kinds))
    return kinds, rate


def _task_columns(workload: Workload, cluster: Cluster, node: _NodeColumns, n_index: Mapping[str, int],
                  r_index: Mapping[str, int]) -> _TaskColumns:
    """Check every task's numbers, request, pin and placement rules; the tasks' columns.

    The columns are read in bulk (``_bulk_task_columns``); when that finds anything it does
    not take as it is, the tasks are checked one by one (``_task_columns_one_by_one``), which
    reports the first fault in task order, worded as always, and takes what only it accepts
    (NumPy integers, numeric strings)."""
    kinds, rate = _kind_rates(workload.tasks, cluster, node.speed)
    col = (_bulk_task_columns(workload, cluster, node, n_index, r_index, kinds, rate)
           or _task_columns_one_by_one(workload, cluster, node, n_index, r_index, kinds, rate))
    _fill_durations(col, node.overhead)
    return col


def _empty_task_columns(n: int, m: int, kinds: tuple[str, ...], rate: np.ndarray) -> _TaskColumns:
    return _TaskColumns(
        kinds, rate, work=np.empty(n), kind_of=np.empty(n, dtype=np.int32), duration=np.empty((n, m)),
        eligible=np.zeros((n, m), dtype=bool), pinned_node=np.full(n, -1, dtype=np.int32),
        pinned_start=np.full(n, math.nan), pinned_end=np.full(n, math.nan),
        previous_node=np.full(n, -1, dtype=np.int32), deadline=np.full(n, math.inf), priority=np.empty(n),
        request_of=np.empty(n, dtype=np.int32),
    )


def _task_columns_one_by_one(workload: Workload, cluster: Cluster, node: _NodeColumns, n_index: Mapping[str, int],
                             r_index: Mapping[str, int], kinds: tuple[str, ...], rate: np.ndarray) -> _TaskColumns:
    """The columns task by task: the first fault raises ``SpecError``, saying why a task fits no node."""
    tasks = workload.tasks
    kind_index = {k: i for i, k in enumerate(kinds)}
    col = _empty_task_columns(len(tasks), len(cluster.nodes), kinds, rate)
    for i, t in enumerate(tasks):
        p = f"tasks[{t.id!r}]"
        col.work[i] = _finite(t.work, f"{p}.work")
        col.kind_of[i] = kind_index[t.kind]
        mem = _finite(t.memory, f"{p}.memory")
        col.priority[i] = _finite(t.priority, f"{p}.priority")
        if t.deadline is not None:
            col.deadline[i] = _finite(t.deadline, f"{p}.deadline")
        col.request_of[i] = _request_of(t, p, r_index, len(workload.requests))
        col.pinned_node[i], col.pinned_start[i], col.pinned_end[i] = _pin(t, p, n_index)
        if t.previous_node is not None:
            if t.previous_node not in n_index:
                raise SpecError(f"{p}.previous_node", f"unknown node {t.previous_node!r}")
            col.previous_node[i] = n_index[t.previous_node]
        if col.pinned_node[i] >= 0:
            # It ran (or runs) there: the placement rules were checked when it was planned.
            col.eligible[i, col.pinned_node[i]] = True
        else:
            col.eligible[i] = _eligible_nodes(t, p, mem, cluster.nodes, node.memory)
    return col


ROWS_AT_ONCE = 4096  # rows of a task x node table made at once: temporaries stay ~30 MB at 1,000 nodes


def _fill_durations(col: _TaskColumns, overhead: np.ndarray) -> None:
    """Each task's runtime on each node, overhead + work / rate (inf where not eligible; a
    pinned task's own span on its node), a block of rows at a time. With no overhead the
    table is the bare division, so plans stay bit for bit what they were."""
    with_overhead = bool(overhead.any())
    for lo in range(0, len(col.work), ROWS_AT_ONCE):
        rows = slice(lo, lo + ROWS_AT_ONCE)
        with np.errstate(over="ignore"):  # an overflowing runtime is refused by _check_finite_times
            runtime = col.work[rows, None] / col.rate[:, col.kind_of[rows]].T
            if with_overhead:
                runtime += overhead
            col.duration[rows] = np.where(col.eligible[rows], runtime, math.inf)
    pinned = np.flatnonzero(col.pinned_node >= 0)
    col.duration[pinned, col.pinned_node[pinned]] = col.pinned_end[pinned] - col.pinned_start[pinned]


_BULK_NUMBER_TYPES = frozenset({float, int, np.float64})  # others (bool, strings, ...) go one by one


def _bulk_amounts(values: list, *, optional: bool = False) -> np.ndarray | None:
    """``values`` as floats when each is a finite number >= 0 (or None, read as inf, when
    ``optional``); None when any is not, for the one-by-one check to name it."""
    present = [v for v in values if v is not None] if optional else values
    if not set(map(type, present)) <= _BULK_NUMBER_TYPES:
        return None
    try:
        amounts = np.array(present, dtype=float)
    except OverflowError:  # an integer past float range
        return None
    if not (np.isfinite(amounts).all() and (amounts >= 0).all()):
        return None
    if not optional:
        return amounts
    out = np.full(len(values), math.inf)
    out[[i for i, v in enumerate(values) if v is not None]] = amounts
    return out


def _bulk_lookup(values: list, index: Mapping[str, int], absent: int) -> np.ndarray | None:
    """The index of each name (``absent`` for None); None when a name is unknown."""
    try:
        found = np.array([absent if v is None else index.get(v, -2) for v in values], dtype=np.int64)
    except TypeError:  # an unhashable name
        return None
    return None if (found == -2).any() else found


def _bulk_task_columns(workload: Workload, cluster: Cluster, node: _NodeColumns, n_index: Mapping[str, int],
                       r_index: Mapping[str, int], kinds: tuple[str, ...], rate: np.ndarray) -> _TaskColumns | None:
    """The columns read a column at a time, or None when any value needs the one-by-one check."""
    tasks = workload.tasks
    col = _empty_task_columns(len(tasks), len(cluster.nodes), kinds, rate)
    columns = [_bulk_amounts([t.work for t in tasks]), _bulk_amounts([t.memory for t in tasks]),
               _bulk_amounts([t.priority for t in tasks]), _bulk_amounts([t.deadline for t in tasks], optional=True),
               _bulk_lookup([t.request for t in tasks], r_index, len(workload.requests)),
               _bulk_lookup([t.previous_node for t in tasks], n_index, -1)]
    if any(c is None for c in columns) or not _bulk_pins(tasks, n_index, col):
        return None
    col.work[:], memory, col.priority[:], col.deadline[:], col.request_of[:], col.previous_node[:] = columns
    kind_index = {k: i for i, k in enumerate(kinds)}
    col.kind_of[:] = [kind_index[t.kind] for t in tasks]
    return col if _bulk_eligible(tasks, cluster.nodes, node.memory, memory, col) else None


def _bulk_pins(tasks: Sequence[Task], n_index: Mapping[str, int], col: _TaskColumns) -> bool:
    """Fill the pins of the (few) pinned tasks; False when one is wrong."""
    for i, t in enumerate(tasks):
        if t.pinned_node is not None or t.pinned_start is not None or t.pinned_end is not None:
            try:
                col.pinned_node[i], col.pinned_start[i], col.pinned_end[i] = _pin(t, "", n_index)
            except (SpecError, TypeError):
                return False
    return True


def _bulk_eligible(tasks: Sequence[Task], nodes: Sequence[Node], node_memory: np.ndarray, memory: np.ndarray,
                   col: _TaskColumns) -> bool:
    """Fill eligibility from each distinct pair of placement rules (few) and the memory
    column; False when a free task fits no node (the one-by-one check says why)."""
    try:
        rules = [(t.allowed_kinds, t.allowed_zones) for t in tasks]
        rule_index = {rule: k for k, rule in enumerate(dict.fromkeys(rules))}
    except TypeError:  # rules given as lists
        return False
    working = np.array([not nd.failed for nd in nodes], dtype=bool)
    allowed = np.array([[(kinds is None or nd.kind in kinds) and (zones is None or nd.zone in zones) for nd in nodes]
                        for kinds, zones in rule_index], dtype=bool).reshape(len(rule_index), len(nodes)) & working
    rule_of = np.array([rule_index[rule] for rule in rules], dtype=np.int64)
    for lo in range(0, len(tasks), ROWS_AT_ONCE):
        rows = slice(lo, lo + ROWS_AT_ONCE)
        col.eligible[rows] = allowed[rule_of[rows]] & (memory[rows, None] <= node_memory)
    pinned = np.flatnonzero(col.pinned_node >= 0)
    col.eligible[pinned] = False
    col.eligible[pinned, col.pinned_node[pinned]] = True
    return bool(col.eligible.any(axis=1).all())


def _request_of(t: Task, p: str, r_index: Mapping[str, int], default: int) -> int:
    if t.request is None:
        return default
    if t.request not in r_index:
        raise SpecError(f"{p}.request", f"unknown request {t.request!r}")
    return r_index[t.request]


def _pin(t: Task, p: str, n_index: Mapping[str, int]) -> tuple[int, float, float]:
    """(node, start, end) of a task that ran or runs; (-1, nan, nan) for a free one."""
    if t.pinned_node is None and t.pinned_start is None and t.pinned_end is None:
        return -1, math.nan, math.nan
    if t.pinned_node not in n_index:
        raise SpecError(f"{p}.pinned_node", f"unknown node {t.pinned_node!r}")
    if t.pinned_start is None or t.pinned_end is None:
        raise SpecError(p, "a pinned task needs pinned_node, pinned_start and pinned_end")
    start = _finite(t.pinned_start, f"{p}.pinned_start")
    end = _finite(t.pinned_end, f"{p}.pinned_end", minimum=start)
    return n_index[t.pinned_node], start, end


def _eligible_nodes(t: Task, p: str, mem: float, nodes: Sequence[Node], node_mem: np.ndarray) -> np.ndarray:
    """The nodes a free task may run on; none raises, saying why for each node kind."""
    eligible = np.zeros(len(nodes), dtype=bool)
    reasons: dict[str, str] = {}
    for j, nd in enumerate(nodes):
        if nd.failed:
            reasons.setdefault(nd.kind, "node failed")
        elif t.allowed_kinds is not None and nd.kind not in t.allowed_kinds:
            reasons.setdefault(nd.kind, f"kind not in allowed_kinds {list(t.allowed_kinds)}")
        elif t.allowed_zones is not None and nd.zone not in t.allowed_zones:
            reasons.setdefault(nd.kind, f"zone {nd.zone!r} not in allowed_zones {list(t.allowed_zones)}")
        elif mem > node_mem[j]:
            biggest = max(node_mem[k] for k in range(len(nodes)) if nodes[k].kind == nd.kind)
            reasons.setdefault(nd.kind, f"memory: needs {mem:g} GB, largest {nd.kind} node has {biggest:g} GB")
        else:
            eligible[j] = True
    if not eligible.any():
        why = "; ".join(f"{k}: {r}" for k, r in reasons.items())
        raise SpecError(p, f"fits no node ({why})")
    return eligible


def _complete_requests(requests: Sequence[Request], col: _RequestColumns, task: _TaskColumns) -> _RequestColumns:
    """Every request has a task; the extra row stays only when some task names no request; a
    request's priority defaults to the highest priority of its tasks."""
    R = len(requests)
    members = np.bincount(task.request_of, minlength=R + 1)
    for i, rq in enumerate(requests):
        if members[i] == 0:
            raise SpecError(f"requests[{rq.id!r}]", "no task belongs to this request")
    if members[R]:
        col = col._replace(ids=col.ids + ("(no request)",))
    else:
        col = _RequestColumns(col.ids, col.release[:R], col.deadline[:R], col.priority[:R])
    highest = np.full(len(col.ids), -math.inf)
    np.maximum.at(highest, task.request_of, task.priority)
    unset = np.isnan(col.priority)
    col.priority[unset] = np.where(np.isfinite(highest[unset]), highest[unset], 1.0)
    return col


def _edge_arrays(edges: Sequence[Edge], t_index: Mapping[str, int]):
    """(source, target, data) of every edge, as task indices and MB: read in bulk, or edge by
    edge (``_edge_arrays_one_by_one``, which names the first fault) when anything is wrong."""
    src = _bulk_lookup([e.source for e in edges], t_index, -2)
    dst = _bulk_lookup([e.target for e in edges], t_index, -2)
    data = _bulk_amounts([e.data for e in edges])
    if src is None or dst is None or data is None or (src == dst).any() or \
            np.unique(src * len(t_index) + dst).size < len(edges):
        return _edge_arrays_one_by_one(edges, t_index)
    return src.astype(np.int32), dst.astype(np.int32), data


def _edge_arrays_one_by_one(edges: Sequence[Edge], t_index: Mapping[str, int]):
    E = len(edges)
    src = np.empty(E, dtype=np.int32)
    dst = np.empty(E, dtype=np.int32)
    data = np.empty(E)
    seen: set[tuple[int, int]] = set()
    for k, e in enumerate(edges):
        p = f"edges[{e.source!r}->{e.target!r}]"
        if e.source not in t_index:
            raise SpecError(f"{p}.source", f"unknown task {e.source!r}")
        if e.target not in t_index:
            raise SpecError(f"{p}.target", f"unknown task {e.target!r}")
        s, d = t_index[e.source], t_index[e.target]
        if s == d:
            raise SpecError(p, f"cycle: task {e.source!r} depends on itself")
        if (s, d) in seen:
            raise SpecError(p, "duplicate edge")
        seen.add((s, d))
        src[k], dst[k] = s, d
        data[k] = _finite(e.data, f"{p}.data")
    return src, dst, data


def _children(tasks: Sequence[Task], src: np.ndarray, dst: np.ndarray, pinned_node: np.ndarray) -> list[list[int]]:
    """Each task's children; raises for a cycle, or a pinned task under a free parent."""
    children: list[list[int]] = [[] for _ in tasks]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        children[s].append(d)
        if pinned_node[d] >= 0 and pinned_node[s] < 0:
            raise SpecError(f"tasks[{tasks[d].id!r}]", f"pinned, but its parent {tasks[s].id!r} is not: "
                            "a task cannot have run before its inputs")
    cycle = _find_cycle(len(tasks), children)
    if cycle:
        names = " -> ".join(repr(tasks[i].id) for i in cycle + cycle[:1])
        raise SpecError("edges", f"cycle: {names}")
    return children


def _csr_pointers(n: int, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row pointers of the edges grouped by child (parents) and by parent (children)."""
    parent_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(parent_ptr, dst + 1, 1)
    child_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(child_ptr, src + 1, 1)
    return np.cumsum(parent_ptr), np.cumsum(child_ptr)


def _check_routable(edges: Sequence[Edge], nodes: Sequence[Node], eligible: np.ndarray, inv_bw: np.ndarray,
                    src: np.ndarray, dst: np.ndarray) -> None:
    """Every edge must be routable for at least one eligible placement of its ends; tasks
    share few eligibility patterns, so check each pair of patterns once."""
    connected = np.isfinite(inv_bw) | np.eye(len(nodes), dtype=bool)
    patterns, pattern_of = eligibility_patterns(eligible)
    checked: set[tuple[int, int]] = set()
    for k in range(len(edges)):
        key = (int(pattern_of[src[k]]), int(pattern_of[dst[k]]))
        if key in checked:
            continue
        ps, pd = patterns[key[0]], patterns[key[1]]
        if not (connected[ps][:, pd]).any():
            e = edges[k]
            raise SpecError(
                f"edges[{e.source!r}->{e.target!r}]",
                "zero bandwidth between every pair of nodes the two tasks may run on "
                f"({e.source!r} on {[nodes[j].id for j in np.flatnonzero(ps)]}, "
                f"{e.target!r} on {[nodes[j].id for j in np.flatnonzero(pd)]})",
            )
        checked.add(key)


def _check_finite_times(workload: Workload, cluster: Cluster, node: _NodeColumns, task: _TaskColumns,
                        requests: _RequestColumns, latency: np.ndarray, inv_bw: np.ndarray, data: np.ndarray) -> None:
    """Refuse numbers whose runtimes, transfers, or any plan's times, energy or cost overflow
    float64 (work 1e308 on a slow node, data 1e308 over a thin link): every plan must have
    finite times. The bound used: no plan ends later than the latest release, node start or
    pinned end plus every task's longest runtime and every edge's longest transfer."""
    with np.errstate(over="ignore", invalid="ignore"):
        longest = _longest_runtimes(workload, cluster, task)
        linked = np.isfinite(inv_bw)
        slowest = float(inv_bw[linked].max()) if linked.any() else 0.0
        transfer = float(latency.max()) + data * slowest
        for k in np.flatnonzero(~np.isfinite(transfer)).tolist():
            e = workload.edges[k]
            raise SpecError(f"edges[{_short_id(e.source)}->{_short_id(e.target)}].data",
                            f"transfer time overflows ({data[k]:g} MB over the slowest link, {1 / slowest:g} MB/s)")
        horizon = (max(float(requests.release.max()), float(node.available_from.max()),
                       float(np.nan_to_num(task.pinned_end, nan=0.0).max()))
                   + float(longest.sum()) + float(transfer.sum()))
        if not math.isfinite(horizon):
            raise SpecError("tasks", "the runtimes and transfers add up beyond float range (overflow above 1.8e308 s): "
                            "scale work, speeds, data or bandwidths")
        for name, column in (("busy_power", node.busy_power), ("idle_power", node.idle_power),
                             ("cost_per_hour", node.cost_rate)):
            over = np.flatnonzero(~np.isfinite(column * horizon * len(node.speed)))
            if over.size:
                nd = cluster.nodes[int(over[0])]
                raise SpecError(f"nodes[{_short_id(nd.id)}].{name}",
                                f"{name} x the plan's time bound ({horizon:g} s) overflows")


def _longest_runtimes(workload: Workload, cluster: Cluster, task: _TaskColumns) -> np.ndarray:
    """Each task's longest runtime over its eligible nodes, a block of rows at a time; raises
    for the first runtime that overflows."""
    longest = np.empty(len(task.work))
    for lo in range(0, len(longest), ROWS_AT_ONCE):
        runtime = np.where(task.eligible[lo:lo + ROWS_AT_ONCE], task.duration[lo:lo + ROWS_AT_ONCE], 0.0)
        for row in np.flatnonzero(~np.isfinite(runtime).all(axis=1)).tolist():
            i, j = lo + row, int(np.flatnonzero(~np.isfinite(runtime[row]))[0])
            t, nd = workload.tasks[i], cluster.nodes[j]
            raise SpecError(f"tasks[{_short_id(t.id)}].work",
                            f"runtime on node {_short_id(nd.id)} overflows (work {task.work[i]:g} GFLOP at "
                            f"{task.rate[j, task.kind_of[i]]:g} GFLOP/s)")
        longest[lo:lo + ROWS_AT_ONCE] = runtime.max(axis=1)
    return longest


def _short_id(task_id: str, limit: int = 40) -> str:
    """A task id as a message quotes it: repr, cut to ``limit`` characters."""
    text = repr(task_id)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _bits(row: np.ndarray) -> int:
    """A bool row as a Python int, bit j set when ``row[j]`` (a set of nodes)."""
    return int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")


class _Reach:
    """Node sets as int bitsets, and the nodes a set can send data to (or receive it from)."""

    def __init__(self, connected: np.ndarray):
        self.out = [_bits(row) for row in connected]  # out[i]: nodes node i can send to
        self.into = [_bits(col) for col in connected.T]  # into[j]: nodes that can send to j
        self._cache: dict[tuple[bool, int], int] = {}

    def neighbours(self, nodes: int, forward: bool) -> int:
        key = (forward, nodes)
        if key not in self._cache:
            table, found, j = (self.out if forward else self.into), 0, 0
            rest = nodes
            while rest:
                if rest & 1:
                    found |= table[j]
                rest >>= 1
                j += 1
            self._cache[key] = found
        return self._cache[key]


def _prunes_nothing(eligible: np.ndarray, connected: np.ndarray, src: np.ndarray, dst: np.ndarray) -> bool:
    """True when, along every edge, each node either end may use reaches one the other may
    use: then no placement rule constrains another and the graph is routable as it is."""
    patterns, pattern_of = eligibility_patterns(eligible)
    as_int = patterns.astype(np.int32)
    sends_to = (as_int @ connected.astype(np.int32)) > 0  # sends_to[p, j]: some node of p sends to j
    receives = (as_int @ connected.T.astype(np.int32)) > 0
    pairs = np.unique(np.stack((pattern_of[src], pattern_of[dst]), axis=1), axis=0)
    for ps, pd in pairs.tolist():
        if (patterns[pd] & ~sends_to[ps]).any() or (patterns[ps] & ~receives[pd]).any():
            return False
    return True


def _check_routes(tasks: Sequence[Task], nodes: Sequence[Node], eligible: np.ndarray, inv_bw: np.ndarray,
                  src: np.ndarray, dst: np.ndarray, topo_order: np.ndarray) -> None:
    """Refuse a workload no placement can route, deciding on the whole graph: each task's
    usable nodes shrink to those an input can arrive at (forward, topological order) and an
    output can leave from (backward), until nothing changes. A task left with no node raises,
    naming the chain of tasks whose placement rules forced it (each task's last pruner).
    (This is arc consistency: necessary for a routable plan; the single-edge check above is
    the one-step case of it.)"""
    connected = np.isfinite(inv_bw) | np.eye(len(nodes), dtype=bool)
    if connected.all() or _prunes_nothing(eligible, connected, src, dst):
        return
    reach = _Reach(connected)
    parents: list[list[int]] = [[] for _ in tasks]
    children: list[list[int]] = [[] for _ in tasks]
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        parents[d].append(s)
        children[s].append(d)
    usable = [_bits(row) for row in eligible]
    cause = [-1] * len(tasks)
    order = topo_order.tolist()
    changed = True
    while changed:
        changed = False
        for forward, sequence, neighbours in ((True, order, parents), (False, order[::-1], children)):
            for t in sequence:
                for other in neighbours[t]:
                    narrowed = usable[t] & reach.neighbours(usable[other], forward)
                    if narrowed != usable[t]:
                        usable[t], cause[t], changed = narrowed, other, True
                        if not narrowed:
                            _raise_unroutable(tasks, nodes, eligible, cause, t)


def _raise_unroutable(tasks: Sequence[Task], nodes: Sequence[Node], eligible: np.ndarray, cause: list[int],
                      t: int) -> None:
    chain = [t]
    while cause[chain[-1]] >= 0 and cause[chain[-1]] not in chain:
        chain.append(cause[chain[-1]])
    shown = [_short_id(tasks[i].id) for i in chain[::-1]]
    if len(shown) > 8:
        shown = shown[:4] + [f"... ({len(shown) - 7} more)"] + shown[-3:]
    names = [nodes[j].id for j in np.flatnonzero(eligible[t])]
    where = ", ".join(repr(x)[:40] for x in names[:5]) + (", ..." if len(names) > 5 else "")
    raise SpecError(
        f"tasks[{_short_id(tasks[t].id)}]",
        f"no placement routes its data: along the chain {' -> '.join(shown)} the placement rules and the "
        f"links (bandwidth > 0) leave none of its nodes [{where}] reachable",
    )


def _topological_order(parent_ptr: np.ndarray, children: list[list[int]]) -> np.ndarray:
    """Kahn's algorithm, the smallest ready index first."""
    indeg = np.diff(parent_ptr).astype(np.int64)
    heap = [i for i in range(len(children)) if indeg[i] == 0]
    heapq.heapify(heap)
    topo = []
    while heap:
        v = heapq.heappop(heap)
        topo.append(v)
        for w in children[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                heapq.heappush(heap, w)
    return np.asarray(topo, dtype=np.int32)


def ids_to_tuple(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """Normalise an optional list of names (allowed kinds or zones) from a spec."""
    return None if values is None else tuple(str(v) for v in values)

"""Re-planning an enactment in flight: a node's worker is lost, or its queue backs up.

``watch_enactment`` runs beside the enacted steps (the ``watch_enactment`` task). On the
CeleryExecutor it polls the enacted step instances' states and the queues the live workers
consume. When a node whose queue has no live worker (twice in a row) still has steps to run,
or a step has waited in its node's queue longer than ``backlog`` seconds, it re-plans what is
left (``replan_enactment``): finished steps stay where they ran, queued and running steps on
live nodes stay where they are, the lost node's steps (running ones included: their worker
died with them) go to nodes with a live worker. It pushes the new routing under the XCom key
``REPLAN_XCOM``; the scheduler's executor (``operators/rerouting.py``) sends each step it
queues from then on, a lost step's retry included, to the queue that record names. A step
that finished is never routed again, so none runs twice; every unfinished step keeps a route,
so none is lost. On another executor every node is a pool of this machine: nothing to watch.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping

from apportion.operators.placement import REPLAN_XCOM, node_pool

POLL_SECONDS = 5.0
CONFIRM_POLLS = 2  # a queue missing from this many polls in a row is a lost worker
DEFAULT_BACKLOG = 120.0  # s a step may wait in its node's queue before the node counts as backed up
REPLAN_POPULATION, REPLAN_GENERATIONS = 24, 30

FINISHED = frozenset({"success", "failed", "upstream_failed", "skipped", "removed"})
STARTED = frozenset({"queued", "running", "restarting"})  # in a worker's hands or its queue

Key = tuple[str, int]  # (task id in the enact group, map index)


def initial_routing(assignments: Iterable[Mapping[str, Any]], group: str) -> dict[Key, str]:
    """(task id, map index) -> node of every enacted step instance, as ``prepare_enactment`` placed it."""
    return {(f"{group}.{step}", a["index"]): placed["node"] for a in assignments for step, placed in a["steps"].items()}


def replan_enactment(allocation: Mapping[str, Any], assignments: list[Mapping[str, Any]], routing: Mapping[Key, str],
                     states: Mapping[Key, str | None], live_queues: Mapping[str, set[str]], *, group: str,
                     lost: Iterable[str] = (), backlog: Mapping[str, float] | None = None,
                     seed: int = 0) -> dict[Key, str]:
    """The enacted steps' new nodes after a change (see the module's docs).

    ``routing`` is where each step instance is routed now, ``states`` its Airflow state,
    ``live_queues`` the queues live workers consume: a node whose queue is not among them, or
    is in ``lost``, takes no work; ``backlog`` maps a node to the seconds its queue is behind
    (it takes new work only after that). The problem is the enacted units' steps alone,
    released at once (as Airflow runs them); finished steps are pinned where they ran, queued
    and running steps on a live node where they are; the rest is planned by
    ``core.replan.replan`` from the current routing, and the plan its settings select is
    taken. Same inputs and seed, same routing. A step no live node can take is a ``SpecError``
    naming it and why.
    """
    import numpy as np

    from apportion.core.api import Settings
    from apportion.core.evaluate import Evaluator, Plan
    from apportion.core.model import Instance
    from apportion.core.replan import NodeFailure, replan
    from apportion.operators.chosen_plan import load_chosen_plan

    instance, plan, _ = load_chosen_plan(allocation)
    task_of = {(f"{group}.{step}", a["index"]): placed["task"] for a in assignments
               for step, placed in a["steps"].items()}
    enacted, units = set(task_of.values()), {a["unit"] for a in assignments}
    workload, cluster = instance.workload, instance.cluster
    if backlog:
        cluster = replace(cluster, nodes=tuple(
            replace(n, available_from=max(n.available_from, float(backlog[n.id]))) if n.id in backlog else n
            for n in cluster.nodes))
    sub = Instance.build(replace(
        workload, tasks=tuple(task for task in workload.tasks if task.id in enacted),
        edges=tuple(e for e in workload.edges if e.source in enacted and e.target in enacted),
        requests=tuple(replace(r, release=0.0) for r in workload.requests if r.id in units)), cluster)

    index = {task_id: i for i, task_id in enumerate(sub.task_ids)}
    node_index = {node: j for j, node in enumerate(sub.node_ids)}
    assignment = np.empty(sub.n_tasks, dtype=np.int32)
    for key, task_id in task_of.items():
        assignment[index[task_id]] = node_index[routing[key]]
    order = [index[instance.task_ids[t]] for t in plan.order if instance.task_ids[t] in index]
    current = Plan(assignment, np.array(order, dtype=np.int32))
    predicted = Evaluator(sub).schedule(current)
    duration = predicted.end - predicted.start

    now = 1.0  # the re-plan's clock: finished steps before it, steps to come after it
    start, end = np.full(sub.n_tasks, now + 1.0), now + 1.0 + duration
    for key, task_id in task_of.items():
        t = index[task_id]
        if states.get(key) == "success":
            start[t], end[t] = 0.0, 0.5
        elif states.get(key) in STARTED:  # lost with its node when that node takes no work
            start[t], end[t] = 0.5, now + duration[t]
    down = set(lost) | {node for node in sub.node_ids if not live_queues.get(node_pool(node))}
    changes = [NodeFailure(node) for node in sub.node_ids if node in down]
    settings = Settings(population=REPLAN_POPULATION, generations=REPLAN_GENERATIONS, seed=seed)
    residual, result = replan(sub, current, now, changes, settings=settings, start=start, end=end)
    position = {task_id: i for i, task_id in enumerate(residual.task_ids)}
    chosen = result.chosen.plan.assignment
    return {key: residual.node_ids[chosen[position[task_id]]] for key, task_id in task_of.items()}


def replan_record(assignments: list[Mapping[str, Any]], routing: Mapping[Key, str], *, group: str,
                  previous: Mapping[str, Any] | None, lost: Iterable[str], backlog: Mapping[str, float],
                  moved: Iterable[Key]) -> dict[str, Any]:
    """The XCom the executor routes by: per enacted task id, the node, queue and pool of each
    map index now; every queue each map index was ever routed to (a step already in a queue
    when it was re-routed runs there, and ``run_step`` accepts it); what this re-plan was for."""
    initial = initial_routing(assignments, group)
    tasks = sorted({task for task, _ in initial})
    count = len(assignments)
    nodes = {task: [routing[(task, i)] for i in range(count)] for task in tasks}
    before = (previous or {}).get("routes", {})
    routes = {task: [sorted({*before.get(task, [[]] * count)[i], node_pool(initial[(task, i)]),
                             node_pool(nodes[task][i])}) for i in range(count)] for task in tasks}
    queues = {task: [node_pool(node) for node in row] for task, row in nodes.items()}
    return {"version": int((previous or {}).get("version", 0)) + 1, "nodes": nodes, "queues": queues,
            "pools": queues, "routes": routes, "lost": sorted(lost), "backlog": dict(sorted(backlog.items())),
            "moved": [f"{task}[{i}]" for task, i in sorted(moved)]}


def watch_enactment(allocation: Mapping[str, Any], assignments: list[Mapping[str, Any]], *, group: str,
                    task_states: Callable[[], Mapping[Key, str | None]],
                    live_queues: Callable[[], Mapping[str, set[str]]],
                    push: Callable[[dict], None], seed: int = 0, backlog: float = DEFAULT_BACKLOG,
                    poll: float = POLL_SECONDS, sleep: Callable[[float], None] = time.sleep,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """Watch the enacted steps until every one has finished; re-plan and ``push`` a new record
    when a node's worker is lost (its queue missing from ``CONFIRM_POLLS`` polls in a row) while
    it still has steps to run, or a step waited in its queue ``backlog`` seconds or more.
    Returns ``{"replans": [record, ...]}``."""
    routing = initial_routing(assignments, group)
    nodes = sorted(set(routing.values()))
    missing = dict.fromkeys(nodes, 0)
    queued_polls: dict[Key, int] = {}
    replans: list[dict] = []
    while True:
        states = task_states()
        if all(states.get(key) in FINISHED for key in routing):
            return {"replans": replans}
        live = live_queues()
        for node in nodes:
            missing[node] = 0 if live.get(node_pool(node)) else missing[node] + 1
        lost = {node for node, polls in missing.items() if polls >= CONFIRM_POLLS}
        for key in routing:
            queued_polls[key] = queued_polls.get(key, 0) + 1 if states.get(key) == "queued" else 0
        behind: dict[str, float] = {}
        for key, polls in queued_polls.items():
            if polls * poll >= backlog and routing[key] not in lost:
                behind[routing[key]] = max(behind.get(routing[key], 0.0), polls * poll)
        stranded = [key for key, node in routing.items() if node in lost and states.get(key) not in FINISHED]
        movable = [key for key, node in routing.items() if node in behind and states.get(key) not in FINISHED | STARTED]
        if stranded or movable:
            new = replan_enactment(allocation, assignments, routing, states, live, group=group, lost=lost,
                                   backlog=behind, seed=seed + len(replans))
            moved = [key for key in routing if new[key] != routing[key]]
            record = replan_record(assignments, new, group=group, previous=replans[-1] if replans else None,
                                   lost=lost, backlog=behind, moved=moved)
            routing = new
            replans.append(record)
            push(record)
            log(f"apportion: re-plan {record['version']}: lost {sorted(lost) or 'none'}, backed up "
                f"{sorted(behind) or 'none'}; moved {len(moved)} step instances: {', '.join(record['moved'])}")
            nodes = sorted(set(nodes) | set(routing.values()))
            missing.update({node: missing.get(node, 0) for node in nodes})
            queued_polls = {key: 0 if routing[key] in behind else polls for key, polls in queued_polls.items()}
        sleep(poll)



def watch_in_airflow(allocation: Mapping[str, Any], assignments: list[Mapping[str, Any]],
                     context: Mapping[str, Any], *, group: str, seed: int = 0,
                     backlog: float = DEFAULT_BACKLOG) -> dict[str, Any]:
    """``watch_enactment`` from an Airflow task: the enact group's states through the Task
    SDK, the live queues from the Celery workers, each record pushed as this task's XCom
    ``REPLAN_XCOM``. Off the CeleryExecutor, or with nothing enacted, returns at once."""
    from apportion.operators.queues import live_queues, routes_by_queue

    if not assignments or not routes_by_queue():
        return {"replans": []}
    ti, run_id = context["ti"], context["run_id"]

    def task_states() -> dict[Key, str | None]:
        states = ti.get_task_states(dag_id=ti.dag_id, task_group_id=group, run_ids=[run_id]).get(run_id, {})
        return {(task, int(index)): state for name, state in states.items()
                for task, _, index in [name.rpartition("_")] if index.isdigit()}

    return watch_enactment(allocation, assignments, group=group, task_states=task_states, live_queues=live_queues,
                           push=lambda record: ti.xcom_push(key=REPLAN_XCOM, value=record), seed=seed,
                           backlog=backlog, log=lambda line: print(line, flush=True))

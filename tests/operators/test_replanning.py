"""Re-planning an enactment in flight, from a real allocation: a lost node's steps move to nodes
with a live worker, finished and started steps stay, and the watcher re-plans only when a node's
worker is really gone (or its queue backs up) while it still has steps to run."""

from __future__ import annotations

import pytest

from apportion.core.errors import SpecError
from apportion.operators.enactment import prepare_enactment
from apportion.operators.placement import node_pool
from apportion.operators.replanning import (
    CONFIRM_POLLS,
    initial_routing,
    replan_enactment,
    replan_record,
    watch_enactment,
)
from apportion.operators.steps import WORKFLOW_STEPS

GROUP = "enact"
HOSPITAL_GPUS = ("hospital/a6000-0", "hospital/a6000-1")


@pytest.fixture
def enacted(allocation):
    """Three enacted cases of the DRILL allocation (medical_diagnosis, 8 nodes) and their routing."""
    assignments = prepare_enactment(allocation, scenario="medical_diagnosis", units=3, scale=1e-3)["assignments"]
    return allocation, assignments, initial_routing(assignments, GROUP)


def _cluster(allocation):
    from apportion.operators.chosen_plan import load_chosen_plan

    instance, _, _ = load_chosen_plan(allocation)
    return instance


def _queues(nodes) -> dict[str, set[str]]:
    return {node_pool(node): {f"worker@{node}"} for node in nodes}


def _busiest(routing) -> str:
    from collections import Counter

    return Counter(routing.values()).most_common(1)[0][0]


def test_a_lost_nodes_steps_move_and_finished_and_started_steps_stay(enacted):
    allocation, assignments, routing = enacted
    instance = _cluster(allocation)
    steps = WORKFLOW_STEPS["medical_diagnosis"]
    roots = {f"{GROUP}.{step}" for step, needs in steps.items() if not needs}
    lost = _busiest({key: node for key, node in routing.items() if key[0] in roots})
    first_ready = {i: [key for key, node in routing.items() if key[1] == i and node != lost and key[0] not in roots
                       and all(f"{GROUP}.{need}" in roots for need in steps[key[0].split(".")[1]])]
                   for i in range(len(assignments))}
    unit = next(i for i, keys in first_ready.items() if keys)  # a unit with a step off the lost node
    done = sorted(key for key in routing if key[0] in roots and key[1] == unit)
    running = first_ready[unit][0]
    dying = next(key for key, node in routing.items() if key[0] in roots and key[1] != unit and node == lost)
    states = {**dict.fromkeys(done, "success"), dying: "running", running: "running"}
    live = _queues(node.id for node in instance.cluster.nodes if node.id != lost)

    new = replan_enactment(allocation, assignments, routing, states, live, group=GROUP, lost={lost}, seed=4)
    assert set(new) == set(routing)
    assert all(new[key] == routing[key] for key in done)  # finished where they ran: outputs kept
    assert new[running] == routing[running]  # running on a live node: stays
    assert all(new[key] != lost for key in routing if key not in done)  # the running one died with its worker
    index = {node: j for j, node in enumerate(instance.node_ids)}
    task = {(f"{GROUP}.{step}", a["index"]): placed["task"] for a in assignments for step, placed in a["steps"].items()}
    for key, node in new.items():  # every step on a node its rules allow
        assert instance.eligible[instance.task_ids.index(task[key]), index[node]], (key, node)
    assert new == replan_enactment(allocation, assignments, routing, states, live, group=GROUP, lost={lost}, seed=4)


def test_nodes_without_a_live_worker_take_no_step(enacted):
    allocation, assignments, routing = enacted
    live = {HOSPITAL_GPUS[0], "hospital/xeon16-0", "cloud/xeon16-0"}
    new = replan_enactment(allocation, assignments, routing, {}, _queues(live), group=GROUP)
    assert set(new.values()) <= live


def test_a_step_no_live_node_can_take_is_named(enacted):
    allocation, assignments, routing = enacted
    live = _queues(node.id for node in _cluster(allocation).cluster.nodes if node.id not in HOSPITAL_GPUS)
    with pytest.raises(SpecError, match=r"c0\.ct_seg"):
        replan_enactment(allocation, assignments, routing, {}, live, group=GROUP)


def test_the_record_routes_every_step_and_remembers_earlier_queues(enacted):
    allocation, assignments, routing = enacted
    lost = _busiest(routing)
    moved = {key: ("cloud/xeon16-0" if node == lost else node) for key, node in routing.items()}
    record = replan_record(assignments, moved, group=GROUP, previous=None, lost={lost}, backlog={},
                           moved=[key for key in routing if moved[key] != routing[key]])
    assert record["version"] == 1 and record["lost"] == [lost]
    for (task, index), node in moved.items():
        assert record["nodes"][task][index] == node
        assert record["queues"][task][index] == record["pools"][task][index] == node_pool(node)
        assert record["routes"][task][index] == sorted({node_pool(routing[(task, index)]), node_pool(node)})
    again = replan_record(assignments, routing, group=GROUP, previous=record, lost=(), backlog={}, moved=[])
    assert again["version"] == 2 and again["routes"] == record["routes"]


class Cluster:
    """What the watcher sees, poll by poll: the steps' states and the live queues."""

    def __init__(self, routing, nodes):
        self.states = dict.fromkeys(routing)
        self.live = set(nodes)
        self.polls = 0
        self.pushed: list[dict] = []
        self.on_poll = lambda poll: None

    def task_states(self):
        self.polls += 1
        self.on_poll(self.polls)
        return dict(self.states)

    def live_queues(self):
        return _queues(self.live)


def _watch(allocation, assignments, cluster, **kwargs):
    return watch_enactment(allocation, assignments, group=GROUP, task_states=cluster.task_states,
                           live_queues=cluster.live_queues, push=cluster.pushed.append, sleep=lambda s: None,
                           log=lambda line: None, **kwargs)


def test_the_watcher_replans_once_a_lost_worker_is_confirmed(enacted):
    allocation, assignments, routing = enacted
    nodes = [node.id for node in _cluster(allocation).cluster.nodes]
    cluster = Cluster(routing, nodes)
    lost = _busiest(routing)
    blip = "cloud/t4-0"

    def on_poll(poll):
        if poll == 2:  # one missed answer is not a lost worker
            cluster.live.discard(blip)
        elif poll == 3:
            cluster.live.add(blip)
            cluster.live.discard(lost)
        elif poll == 3 + CONFIRM_POLLS + 2:
            cluster.states = dict.fromkeys(routing, "success")
    cluster.on_poll = on_poll

    watched = _watch(allocation, assignments, cluster)
    assert watched["replans"] == cluster.pushed and len(cluster.pushed) == 1
    record = cluster.pushed[0]
    assert record["lost"] == [lost] and record["moved"]
    assert lost not in {node for row in record["nodes"].values() for node in row}


def test_the_watcher_leaves_a_lost_node_alone_when_its_steps_are_done(enacted):
    allocation, assignments, routing = enacted
    cluster = Cluster(routing, [node.id for node in _cluster(allocation).cluster.nodes])
    lost = _busiest(routing)
    cluster.states = {key: ("success" if node == lost else None) for key, node in routing.items()}
    cluster.live.discard(lost)

    def on_poll(poll):
        if poll == CONFIRM_POLLS + 3:
            cluster.states = dict.fromkeys(routing, "success")
    cluster.on_poll = on_poll
    assert _watch(allocation, assignments, cluster) == {"replans": []}


def test_a_backed_up_queue_moves_the_steps_not_yet_queued(enacted):
    allocation, assignments, routing = enacted
    cluster = Cluster(routing, [node.id for node in _cluster(allocation).cluster.nodes])
    busy = _busiest(routing)
    roots = {f"{GROUP}.{step}" for step, needs in WORKFLOW_STEPS["medical_diagnosis"].items() if not needs}
    waiting = sorted(key for key, node in routing.items() if node == busy and key[0] in roots)
    cluster.states[waiting[0]] = "queued"

    def on_poll(poll):  # queued 10 s at the second poll; all done at the third
        if poll == 3:
            cluster.states = dict.fromkeys(routing, "success")
    cluster.on_poll = on_poll
    watched = _watch(allocation, assignments, cluster, backlog=10.0, poll=5.0)
    (record,) = watched["replans"]
    assert record["lost"] == [] and record["backlog"] == {busy: 10.0}
    assert record["nodes"][waiting[0][0]][waiting[0][1]] == busy  # already in the queue: stays
    assert record["moved"]  # the node takes new work only 10 s from now: some steps go elsewhere

"""Preparing an enactment from a real allocation: nodes, pools and predictions per step instance,
and bad input refused before any step runs."""

from __future__ import annotations

import time

import pytest

from apportion.core.errors import SpecError
from apportion.operators import enactment
from apportion.operators.enactment import node_pools, prepare_enactment
from apportion.operators.placement import node_pool
from apportion.operators.steps import WORKFLOW_STEPS
from tests.operators.conftest import local

STEPS = WORKFLOW_STEPS["medical_diagnosis"]


def test_each_step_instance_gets_its_planned_node_pool_and_prediction(allocation):
    import json

    prepared = prepare_enactment(allocation, scenario="medical_diagnosis", units=3, scale=1e-3, seed=2)
    plan = {t["task"]: t for t in json.loads(local(allocation["plan_uri"]).read_text())["tasks"]}
    assignments, placement = prepared["assignments"], prepared["placement"]
    assert [a["unit"] for a in assignments] == ["c0", "c1", "c2"]
    for index, assignment in enumerate(assignments):
        assert list(assignment["steps"]) == list(STEPS) and assignment["index"] == index
        for step, placed in assignment["steps"].items():
            planned = plan[f"{assignment['unit']}.{step}"]
            assert (placed["node"], placed["predicted_start"], placed["predicted_end"]) == (
                planned["node"], planned["start"], planned["end"])
            assert placed["pool"] == placed["queue"] == node_pool(planned["node"])
            assert placement["tasks"][f"enact.{step}"][index] == placed["pool"]
            assert placement["pools"][placed["pool"]] == {"node": planned["node"], "slots": 1}
    assert len(placement["pools"]) == 8  # every node of the cluster has a pool, used or not
    assert prepared == prepare_enactment(allocation, scenario="medical_diagnosis", units=3, scale=1e-3, seed=2)


def test_plan_only_enacts_nothing_and_reads_nothing():
    assert prepare_enactment({"artifact_uri": "file:///nowhere"}, scenario="medical_diagnosis", units=0,
                             scale=1.0) == {"assignments": [], "placement": None}


def test_a_step_on_a_node_without_a_pool_is_refused_naming_the_node(allocation, monkeypatch):
    """No pool for the GPUs (as if they had left the cluster): a step the plan put on one cannot
    be enacted; prepare_enactment fails before anything is placed."""
    real = enactment.node_pools

    def without_gpus(cluster):
        gpus = {node.id for node in cluster.nodes if node.kind == "gpu"}
        return {name: spec for name, spec in real(cluster).items() if spec["node"] not in gpus}

    monkeypatch.setattr(enactment, "node_pools", without_gpus)
    with pytest.raises(SpecError, match=r"plan.tasks\['c0\.\w+'\].node: node 'hospital/a6000-\d' has no pool"):
        prepare_enactment(allocation, scenario="medical_diagnosis", units=2, scale=1.0)


@pytest.mark.parametrize(("arguments", "field"), [
    ({"scenario": "payroll"}, "scenario"), ({"units": -1}, "enact_units"), ({"units": True}, "enact_units"),
    ({"scale": 0}, "enact_scale"), ({"scale": float("nan")}, "enact_scale"),
])
def test_bad_arguments_name_their_field(arguments, field):
    with pytest.raises(SpecError) as error:
        prepare_enactment({"artifact_uri": "file:///nowhere"}, **{"scenario": "medical_diagnosis", "units": 1, "scale": 1.0, **arguments})
    assert error.value.field == field


def test_a_workload_edge_the_step_graph_lacks_is_refused(allocation, monkeypatch):
    monkeypatch.setitem(WORKFLOW_STEPS, "medical_diagnosis", {**STEPS, "report": ()})
    with pytest.raises(SpecError, match=r"'c0.fusion' -> 'c0.report'.*not a dependency of the enacted step 'report'"):
        prepare_enactment(allocation, scenario="medical_diagnosis", units=1, scale=1.0)


def test_pool_names_and_slots():
    from apportion.core.model import Cluster, Node

    def node(node_id, **extra):
        return Node(id=node_id, kind="cpu", speed=1.0, memory=1.0, zone="z", **extra)

    assert node_pool("hospital/a6000-0") == "node-hospital.a6000-0"
    assert node_pool("edge box #1") == "node-edge.box..1"
    pools = node_pools(Cluster(nodes=(node("a/b"), node("c"), node("down", failed=True))))
    assert pools == {"node-a.b": {"node": "a/b", "slots": 1}, "node-c": {"node": "c", "slots": 1}}
    with pytest.raises(SpecError, match="gives the pool name 'node-a.b' of node 'a/b' too"):
        node_pools(Cluster(nodes=(node("a/b"), node("a.b"))))


def test_airflow_loads_the_placement_policy_from_the_installed_package():
    """The ``airflow.policy`` entry point: Airflow's policy manager holds the hook with no
    airflow_local_settings.py anywhere."""
    from airflow.settings import get_policy_plugin_manager

    implementations = get_policy_plugin_manager().hook.task_instance_mutation_hook.get_hookimpls()
    assert "apportion.operators.placement" in {impl.plugin.__name__ for impl in implementations}


def test_pool_names_are_safe_and_keep_plain_ids_apart():
    """Any node id gives a name of letters, digits, '_', '.' and '-' (a REST path segment and a
    Celery queue as it is); ids already of those characters keep their own names."""
    import re

    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.text(min_size=1, max_size=40), st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True),
           st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True))
    def check(any_id, plain, other):
        assert re.fullmatch(r"node-[A-Za-z0-9_.-]+", node_pool(any_id))
        assert node_pool(plain) == "node-" + plain
        assert (node_pool(plain) == node_pool(other)) == (plain == other)

    check()


def test_inputs_across_units_are_the_edges_between_enacted_units_only():
    from apportion.core.scenarios import build
    from apportion.operators.enactment import inputs_across_units

    workload, _ = build("traffic_prediction", size=4, nodes=4, seed=3)
    owner = {task.id: task.request for task in workload.tasks}
    enacted = ["r0", "r1", "r2"]  # r3 is not enacted: its edges are left out
    across = inputs_across_units(workload, enacted)
    expected = {}
    for edge in workload.edges:
        if owner[edge.source] != owner[edge.target] and {owner[edge.source], owner[edge.target]} <= set(enacted):
            expected.setdefault(edge.target, set()).add((edge.source, enacted.index(owner[edge.source])))
    assert expected and {task: {(s["task"], s["index"]) for s in sources} for task, sources in across.items()} == expected
    assert all(s["step"] == "ingest" and task.endswith(".forecast") for task, sources in across.items() for s in sources)


class _StepInstance:
    """The two calls ``results_of_other_units`` makes of a running task instance: the XComs and
    the states of the other units' steps, as this run has them. ``finishing``: outputs of running
    steps, which come once the step has looked at their states ``after`` times."""

    dag_id, run_id = "traffic_prediction", "manual__1"

    def __init__(self, outputs: dict, states: dict, finishing: dict | None = None, after: int = 1):
        self.outputs, self.states, self.finishing, self.after, self.looks = dict(outputs), states, finishing, after, 0

    def xcom_pull(self, *, task_ids, map_indexes):
        return self.outputs.get((task_ids, map_indexes))

    def get_task_states(self, *, dag_id, task_ids, run_ids):
        self.looks += 1
        if self.finishing and self.looks >= self.after:
            self.outputs.update(self.finishing)
        return {self.run_id: {name: state for name, state in self.states.items() if name.rpartition("_")[0] in task_ids}}


def test_a_step_waits_for_another_units_output_and_fails_when_it_can_no_longer_come():
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from apportion.operators.enactment import results_of_other_units
    from apportion.operators.step_task import RESUME_METHOD, EnactedStepOperator

    placed = {"task": "r0.forecast", "after": [{"task": "r1.ingest", "step": "ingest", "index": 1},
                                               {"task": "r2.ingest", "step": "ingest", "index": 2}]}
    done = {("enact.ingest", 1): {"output": {"flow_mean": 21.0}, "realised": {"end": 5.0}},
            ("enact.ingest", 2): {"output": {"flow_mean": 19.0}, "realised": {"end": 6.0}}}
    both = {"r1.ingest": done[("enact.ingest", 1)], "r2.ingest": done[("enact.ingest", 2)]}
    assert results_of_other_units(placed, _StepInstance(done, {})) == (both, None)
    assert results_of_other_units({"task": "r0.ingest", "after": []}, _StepInstance({}, {})) == ({}, None)
    one = {("enact.ingest", 1): done[("enact.ingest", 1)]}
    states = {"enact.ingest_1": "success", "enact.ingest_2": "running"}
    # r2's ingest is running: the step polls for it in its own process, no deferral
    before = time.time()
    coming = _StepInstance(one, states, finishing={("enact.ingest", 2): done[("enact.ingest", 2)]}, after=3)
    results, since = results_of_other_units(placed, coming)
    assert results == both and coming.looks == 3 and before <= since <= time.time()
    assert time.time() - before >= 2 * enactment.INPUT_POLL_SECONDS
    # r2's ingest has not started (queued for its node's slot): defer, give the slot back
    queued = _StepInstance(one, {**states, "enact.ingest_2": "queued"})
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        results_of_other_units(placed, queued)
    assert deferred.value.method_name == RESUME_METHOD and hasattr(EnactedStepOperator, RESUME_METHOD)
    assert before <= deferred.value.kwargs["waiting_since"] <= time.time()
    wakes = deferred.value.trigger.serialize()[1]["moment"].timestamp()
    assert before + enactment.INPUT_RECHECK_SECONDS <= wakes <= time.time() + enactment.INPUT_RECHECK_SECONDS
    with pytest.raises(TaskDeferred) as again:  # still missing on resume: keeps its first wait's start
        results_of_other_units(placed, queued, waiting_since=before - 60)
    assert again.value.kwargs["waiting_since"] == before - 60
    with pytest.raises(AirflowFailException, match=r"r0.forecast: its input r2.ingest from another unit has not come in \d+ s"):
        results_of_other_units(placed, queued, waiting_since=before - enactment.INPUT_WAIT_LIMIT_SECONDS - 1)
    with pytest.raises(AirflowFailException, match=r"r0.forecast: its input r2.ingest \(enact.ingest\[2\]\) is failed"):
        results_of_other_units(placed, _StepInstance(one, {**states, "enact.ingest_2": "failed"}))


def test_the_forecast_takes_its_neighbours_spill_over():
    from apportion.operators.steps import run_stand_in

    inputs = {"ingest": run_stand_in("traffic_prediction", "ingest", work=1.0, scale=1.0, seed=5),
              "detect": {"incidents": 0}}
    alone = run_stand_in("traffic_prediction", "forecast", work=1.0, scale=1.0, seed=5, inputs=inputs)
    busier = {"r1.ingest": {"flow_mean": inputs["ingest"]["flow_mean"] + 10.0}}
    spilled = run_stand_in("traffic_prediction", "forecast", work=1.0, scale=1.0, seed=5,
                           inputs={**inputs, "other_units": busier})
    assert (alone["neighbours"], spilled["neighbours"]) == ([], ["r1.ingest"])
    assert spilled["spill"] == pytest.approx(1.0)
    assert spilled["forecast"] == pytest.approx([v + 1.0 for v in alone["forecast"]], abs=2e-3)

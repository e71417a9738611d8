"""Preparing an enactment from a real allocation: nodes, pools and predictions per step instance,
and bad input refused before any step runs."""

from __future__ import annotations

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

"""The CeleryExecutor's check before enacting: every planned node's queue has a live worker
(operators/queues.py). The live queues are given here; tests/integration/test_cluster.py asks
real Celery workers."""

from __future__ import annotations

import pytest

from apportion.core.errors import SpecError
from apportion.operators import queues
from apportion.operators.enactment import prepare_enactment
from apportion.operators.placement import node_pool

PLANNED = {"district-0/orin-0": "node-district-0.orin-0", "metro/xeon16-0": "node-metro.xeon16-0"}


def _never():
    raise AssertionError("the workers were asked on an executor without queues")


@pytest.mark.parametrize(("setting", "name"), [
    ("CeleryExecutor", "CeleryExecutor"), ("LocalExecutor", "LocalExecutor"),
    ("airflow.providers.celery.executors.celery_executor.CeleryExecutor,LocalExecutor", "CeleryExecutor"),
    ("LocalExecutor,CeleryExecutor", "LocalExecutor"),
    ("nodes:airflow.providers.celery.executors.celery_executor.CeleryExecutor", "CeleryExecutor"),
])
def test_the_default_executor_is_the_first_configured(monkeypatch, setting, name):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", setting)
    assert queues.default_executor() == name


@pytest.mark.parametrize(("setting", "celery"), [
    ("CeleryExecutor", True), ("apportion.operators.rerouting.ReroutingCeleryExecutor", True),
    ("LocalExecutor", False), ("LocalExecutor,CeleryExecutor", False),
])
def test_both_celery_executors_route_by_queue(monkeypatch, setting, celery):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", setting)
    assert queues.routes_by_queue() is celery


def test_on_the_local_executor_no_worker_is_asked(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    queues.check_node_workers(PLANNED, inspect=_never)


def test_on_celery_every_planned_queue_needs_a_live_worker(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    live = {"default": {"worker-1@h"}, "node-district-0.orin-0": {"node-district-0.orin-0@h"},
            "node-metro.xeon16-0": {"node-metro.xeon16-0@h"}}
    queues.check_node_workers(PLANNED, inspect=lambda: live)
    queues.check_node_workers({}, inspect=_never)  # nothing planned: nothing to ask
    del live["node-metro.xeon16-0"]
    with pytest.raises(SpecError) as refused:
        queues.check_node_workers(PLANNED, inspect=lambda: live)
    line = str(refused.value)
    assert "\n" not in line
    assert line.startswith("enact: node 'metro/xeon16-0' has no live worker on queue 'node-metro.xeon16-0'")
    assert "node-district-0.orin-0" in line and "nothing was enacted" in line
    with pytest.raises(SpecError, match="node 'district-0/orin-0' has no live worker"):  # first in plan order
        queues.check_node_workers(PLANNED, inspect=dict)


def test_prepare_enactment_on_celery_refuses_a_node_without_worker(allocation, monkeypatch):
    """The plan's nodes but one have workers: prepare_enactment fails naming that node and queue."""
    import json

    from tests.operators.conftest import local

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    plan = json.loads(local(allocation["plan_uri"]).read_text())["tasks"]
    used = list(dict.fromkeys(t["node"] for t in plan if t["task"].split(".")[0] in ("c0", "c1")))
    live = {node_pool(node): {f"{node_pool(node)}@h"} for node in used}
    monkeypatch.setattr(queues, "live_queues", lambda: live)
    assert prepare_enactment(allocation, scenario="medical_diagnosis", units=2, scale=1.0)["assignments"]
    missing = used[-1]
    del live[node_pool(missing)]
    with pytest.raises(SpecError, match=f"node '{missing}' has no live worker on queue '{node_pool(missing)}'"):
        prepare_enactment(allocation, scenario="medical_diagnosis", units=2, scale=1.0)

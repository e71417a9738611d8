"""Where Airflow runs an enacted step: the cluster policy that gives each step instance its node's pool.

Airflow cannot set a mapped task instance's pool or queue from an upstream result
(apache/airflow#33657, #35542). A cluster policy can: ``task_instance_mutation_hook`` runs in
the scheduler (and in ``dag.test()``) when mapped tasks expand, after their upstream's XComs
exist. The package ships this module as an ``airflow.policy`` entry point, so Airflow loads it
with its settings wherever the package is installed; nothing is copied into
``airflow_local_settings.py``.

``prepare_enactment`` (``operators/enactment.py``) pushes, under the XCom key
``ENACTMENT_XCOM``, which pool and queue each enacted task instance takes and every pool's
node and slots. For a task instance that record names, the hook creates the missing pools (in
the scheduler's own transaction: it never commits) and sets the instance's ``pool`` and
``queue`` (the CeleryExecutor routes on the queue; LocalExecutor ignores it). Every other task
instance is left alone. The hook never raises into the scheduler: a record it cannot apply is
logged, and the step itself then refuses to run outside its node (``enactment.run_step``).

Only the standard library and ``pluggy`` (through ``airflow.policies``) load with this module:
Airflow imports it in every process it starts.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from airflow.policies import hookimpl

ENACTMENT_XCOM = "apportion_enactment"
REPLAN_XCOM = "apportion_replan"  # pushed by the watch_enactment task (operators/replanning.py)
POOL_PREFIX = "node-"

log = logging.getLogger(__name__)


def node_pool(node_id: str) -> str:
    """The pool (and Celery queue) of a node: ``node-`` and the node id, any character other
    than letters, digits, ``_``, ``.`` and ``-`` as ``.`` (``hospital/a6000-0`` ->
    ``node-hospital.a6000-0``), a name the REST API's paths and Celery take as it is."""
    return POOL_PREFIX + re.sub(r"[^A-Za-z0-9_.-]", ".", node_id)


@hookimpl
def task_instance_mutation_hook(task_instance, dag_run) -> None:
    """Put an enacted step instance in its node's pool and queue (see the module's docs)."""
    if task_instance.map_index is None or task_instance.map_index < 0:
        return
    try:
        _place(task_instance, dag_run)
    except Exception:  # the scheduler must go on; the step checks its queue itself
        log.exception("apportion: cannot place %s[%s] of run %s", task_instance.task_id, task_instance.map_index,
                      task_instance.run_id)


def _place(task_instance, dag_run) -> None:
    from sqlalchemy.orm import object_session

    session = (object_session(dag_run) if dag_run is not None else None) or object_session(task_instance)
    if session is None:
        from airflow import settings

        session = settings.Session()
    with session.no_autoflush:
        record = enactment_record(session, task_instance.dag_id, task_instance.run_id)
        if not record or task_instance.task_id not in record.get("tasks", {}):
            return
        pools = record["tasks"][task_instance.task_id]
        if task_instance.map_index >= len(pools):
            return
        pool = pools[task_instance.map_index]
        _ensure_pools(session, record["pools"])
    task_instance.pool = pool
    task_instance.pool_slots = 1
    task_instance.queue = record.get("queues", {}).get(task_instance.task_id, pools)[task_instance.map_index]


def enactment_record(session, dag_id: str, run_id: str, key: str = ENACTMENT_XCOM) -> dict[str, Any] | None:
    """The run's placement record (or, with ``key=REPLAN_XCOM``, its latest re-plan), or None."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.scalars(select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == key,
        XComModel.map_index == -1).limit(1)).first()
    if row is None:
        return None
    value = XComModel.deserialize_value(row)
    return value if isinstance(value, dict) else None


def _ensure_pools(session, pools: dict[str, dict[str, Any]]) -> None:
    """Add the pools that do not exist yet (slots = the node's ``slots``); existing pools keep
    the slots an administrator gave them."""
    from airflow.models.pool import Pool
    from sqlalchemy import select

    existing = set(session.scalars(select(Pool.pool).where(Pool.pool.in_(list(pools)))))
    for name, spec in pools.items():
        if name not in existing:
            session.add(Pool(pool=name, slots=int(spec["slots"]), include_deferred=False,
                             description=f"Apportion: node {spec['node']} (created for an enacted plan)"))
            session.flush()

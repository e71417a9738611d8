"""The CeleryExecutor that sends an enacted step to the node its run's latest re-plan chose.

Airflow fixes a task instance's queue and pool when the instance is created (the placement
policy, ``operators/placement.py``) and never asks again: a retry goes back to the queue it
had, so a step whose node's worker died would wait in that dead queue. When the
``watch_enactment`` task re-plans (``operators/replanning.py``), it pushes the new routing
under the XCom key ``REPLAN_XCOM``. This executor, in the scheduler, reads that record as it
queues each enacted step instance (map index >= 0 on a ``node-`` queue) and, where the record
routes it elsewhere, rewrites the workload's queue (what Celery routes on) and the task
instance's queue and pool in the scheduler's session. A step already waiting in a lost node's
queue when the re-plan came is revoked and set back to ``scheduled`` (``sync``), so it is
queued again the same way. Every other workload is queued as the CeleryExecutor queues it. A
record it cannot read is logged, never raised into the scheduler.

Configure it as ``[core] executor = apportion.operators.rerouting.ReroutingCeleryExecutor``
(``apportion cluster up`` does); the Celery workers, commands and settings are the
CeleryExecutor's own.
"""

from __future__ import annotations

import logging
import time

from airflow.providers.celery.executors.celery_executor import CeleryExecutor

from apportion.operators.placement import POOL_PREFIX, REPLAN_XCOM, enactment_record

LOOK_SECONDS = 5.0  # how often the executor looks for steps stranded in a lost node's queue

log = logging.getLogger(__name__)


def reroute(ti, session) -> str | None:
    """Give the task instance ``ti`` (a workload's) the queue and pool its run's latest re-plan
    routes it to, here and in ``session``; the new queue, or None when nothing changes."""
    if ti.map_index is None or ti.map_index < 0 or not (ti.queue or "").startswith(POOL_PREFIX):
        return None
    record = enactment_record(session, ti.dag_id, ti.run_id, key=REPLAN_XCOM)
    queues = (record or {}).get("queues", {}).get(ti.task_id)
    if not queues or ti.map_index >= len(queues) or queues[ti.map_index] == ti.queue:
        return None
    queue, pool = queues[ti.map_index], record["pools"][ti.task_id][ti.map_index]
    from airflow.models.taskinstance import TaskInstance

    row = session.get(TaskInstance, ti.id)
    if row is not None:
        row.queue, row.pool = queue, pool
    log.info("apportion: re-plan %s routes %s[%s] of run %s from %s to %s", record.get("version"), ti.task_id,
             ti.map_index, ti.run_id, ti.queue, queue)
    ti.queue = queue
    return queue


def stranded(session) -> list:
    """Enacted task instances queued on a queue their run's latest re-plan moved them off (they
    were queued before the re-plan, to a node whose worker was lost)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    queued = session.scalars(select(TaskInstance).where(
        TaskInstance.state == TaskInstanceState.QUEUED, TaskInstance.map_index >= 0,
        TaskInstance.queue.startswith(POOL_PREFIX))).all()
    records: dict[tuple[str, str], dict | None] = {}
    found = []
    for ti in queued:
        run = (ti.dag_id, ti.run_id)
        if run not in records:
            records[run] = enactment_record(session, *run, key=REPLAN_XCOM)
        queues = (records[run] or {}).get("queues", {}).get(ti.task_id)
        if queues and ti.map_index < len(queues) and queues[ti.map_index] != ti.queue:
            found.append(ti)
    return found


class ReroutingCeleryExecutor(CeleryExecutor):
    """The CeleryExecutor, routing each enacted step by its run's latest re-plan (module docs)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_look = 0.0

    def sync(self) -> None:
        """The CeleryExecutor's sync; then, every ``LOOK_SECONDS``, a step stranded in a lost
        node's queue is taken back (revoked, state ``scheduled``), so that the scheduler queues
        it again, through ``queue_workload``, where the re-plan routes it."""
        super().sync()
        if time.monotonic() - self._last_look < LOOK_SECONDS:
            return
        self._last_look = time.monotonic()
        try:
            self._take_back_stranded()
        except Exception:  # the scheduler must go on; the scheduler's queued timeout still applies
            log.exception("apportion: cannot look for steps stranded in lost queues")

    def _take_back_stranded(self) -> None:
        from airflow.utils.session import create_session
        from airflow.utils.state import TaskInstanceState

        with create_session() as session:
            for ti in stranded(session):
                log.info("apportion: %s[%s] of run %s waits in %s, which a re-plan left; queueing it again",
                         ti.task_id, ti.map_index, ti.run_id, ti.queue)
                self.revoke_task(ti=ti)
                ti.state, ti.queued_dttm, ti.queued_by_job_id = TaskInstanceState.SCHEDULED, None, None

    def queue_workload(self, workload, session) -> None:
        from airflow.executors.workloads import ExecuteTask

        if isinstance(workload, ExecuteTask):
            try:
                reroute(workload.ti, session)
            except Exception:  # the scheduler must go on; the step then runs where it was placed
                log.exception("apportion: cannot re-route %s[%s] of run %s", workload.ti.task_id,
                              workload.ti.map_index, workload.ti.run_id)
        super().queue_workload(workload, session)

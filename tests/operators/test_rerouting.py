"""The executor that routes an enacted step by its run's latest re-plan (operators/rerouting.py),
on a real enacted run's task instances in Airflow's metadata database: Airflow loads it as the
configured executor; queueing a step the re-plan moved rewrites the workload's queue and the
task instance's queue and pool; every other workload is queued as the CeleryExecutor queues it.
(tests/integration/test_cluster.py runs it as the scheduler's executor on real Celery workers.)"""

from __future__ import annotations

import pytest

from tests.dags.test_dag_runs import run_dag

EXECUTOR = "apportion.operators.rerouting.ReroutingCeleryExecutor"


def test_airflow_loads_it_as_a_celery_executor(monkeypatch):
    from airflow.executors.executor_loader import ExecutorLoader
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", EXECUTOR)
    cls, _ = ExecutorLoader.import_default_executor_cls()
    assert cls.__name__ == "ReroutingCeleryExecutor" and issubclass(cls, CeleryExecutor)
    assert cls.get_cli_commands() == CeleryExecutor.get_cli_commands()  # `airflow celery worker` as before


@pytest.mark.slow
def test_queueing_a_step_takes_the_latest_replans_queue_and_pool(apportion_dagbag, airflow_metadata_db):
    """The run itself is enacted under this process's executor (with Celery configured,
    ``prepare_enactment`` would ask live workers for their queues); the executor under test is
    then made here and fed that run's task instances."""
    from airflow.executors.workloads import ExecuteTask
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from apportion.operators.placement import REPLAN_XCOM, node_pool
    from apportion.operators.rerouting import ReroutingCeleryExecutor, stranded

    dag_run = run_dag(apportion_dagbag, "medical_diagnosis",
                      {"nodes": 6, "population": 12, "generations": 4, "seed": 3, "cases": 2,
                       "enact": "plan and run", "enact_units": 1})

    def task_instances(session):
        return {ti.task_id: ti for ti in session.scalars(select(TaskInstance).where(
            TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id)).all()}

    def replan(record, session):
        XComModel.set(key=REPLAN_XCOM, value=record, dag_id=dag_run.dag_id, task_id="watch_enactment",
                      run_id=dag_run.run_id, session=session)

    with create_session() as session:
        tis = task_instances(session)
        report, fusion = tis["enact.report"], tis["enact.fusion"]
        planned = report.queue
        elsewhere = node_pool("hospital/xeon16-1" if planned != node_pool("hospital/xeon16-1") else "hospital/xeon16-0")
        replan({"version": 1, "queues": {"enact.report": [elsewhere], "enact.fusion": [fusion.queue]},
                "pools": {"enact.report": [elsewhere], "enact.fusion": [fusion.pool]}}, session)
        for ti in (report, fusion):  # as if both were waiting in their queues when the re-plan came
            ti.state = "queued"

    executor = ReroutingCeleryExecutor()
    with create_session() as session:
        assert [ti.task_id for ti in stranded(session)] == ["enact.report"]  # fusion's queue is still its own
    executor._take_back_stranded()
    with create_session() as session:
        tis = task_instances(session)
        assert (tis["enact.report"].state, tis["enact.fusion"].state) == ("scheduled", "queued")
        assert tis["enact.report"].queue == planned  # the scheduler queues it again, through queue_workload

        workloads = {task: ExecuteTask.make(tis[task]) for task in ("enact.report", "enact.fusion", "allocate")}
        for workload in workloads.values():
            executor.queue_workload(workload, session=session)
        report = tis["enact.report"]
        assert planned.startswith("node-") and planned != elsewhere
        assert workloads["enact.report"].ti.queue == report.queue == report.pool == elsewhere
        assert workloads["enact.fusion"].ti.queue == tis["enact.fusion"].queue  # the re-plan left it there
        assert workloads["allocate"].ti.queue == tis["allocate"].queue == "default"  # not an enacted step
        assert set(executor.queued_tasks) == {workload.ti.key for workload in workloads.values()}

        replan("not a record", session)
        fusion = ExecuteTask.make(tis["enact.fusion"])
        executor.queue_workload(fusion, session=session)  # logged; queued where it was placed
        assert fusion.ti.queue == tis["enact.fusion"].queue
        session.rollback()

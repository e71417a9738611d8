"""Bring your own DAG: an Airflow DAG's tasks and history as a workload and cluster spec.

``import_dag(dag_id)`` reads Airflow's metadata database (the one ``AIRFLOW_HOME`` /
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` point at):

* the DAG as Airflow last parsed it (its serialized form): one workload task per Airflow task,
  one edge per dependency (data 0 MB: Airflow does not record what flows between tasks), the
  task kind its operator (``PythonOperator``, ...);
* each task's **work** from its past task instances: the median duration (end - start, in
  seconds) of its successful instances in the DAG's last ``last_runs`` runs (mapped instances
  count one each), times ``reference_speed`` (GFLOP/s, default 1): with the default, 1 GFLOP of
  work is one second on the workers that ran it. A task that never succeeded there gets the
  median of the others' work and is listed in ``estimated``;
* the **cluster** from where the tasks can run: with the CeleryExecutor one node kind per queue
  the DAG's tasks use, one node per host that ran the queue, its ``slots`` the worker's
  concurrency (``[celery] worker_concurrency``); with the embedded default (LocalExecutor) one
  node per pool, its ``slots`` the pool's (at most ``[core] parallelism``). A node never gets
  more slots than its group has tasks (more could never be busy at once), nor more than a node
  may hold (``MAX_NODE_SLOTS``). Each node runs at ``reference_speed``;
  ``overhead`` is left at 0 for a calibration to learn. A task may only run on the nodes of its
  own queue or pool (``allowed_kinds``) when the DAG uses more than one.

A DAG that is not in the database, or has no successful task instance, raises ``SpecError``
naming the DAG.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apportion.core.errors import SpecError
    from apportion.core.model import Cluster, Node, Workload

REFERENCE_SPEED = 1.0  # GFLOP/s: work = median seconds x this
LAST_RUNS = 20
BANDWIDTH = 1000.0  # MB/s between the nodes: edges carry 0 MB, so only routability matters


@dataclass(frozen=True)
class ImportedDag:
    workload: Workload
    cluster: Cluster
    executor: str  # Local or Celery: how the cluster was read
    runs: tuple[str, ...]  # the DAG runs whose task instances gave the work
    instances: int  # successful task instances used
    estimated: tuple[str, ...]  # tasks with no successful instance (work: the others' median)


def _dag_error(dag_id: str, reason: str) -> SpecError:
    from apportion.core.errors import SpecError, excerpt

    return SpecError(f"dag {excerpt(dag_id)}", reason)


def _executor() -> str:
    from airflow.configuration import conf

    first = conf.get("core", "executor").split(",")[0].strip()
    return "Celery" if "Celery" in first else "Local"


def _successful_instances(dag_id: str, last_runs: int, session) -> tuple[list[str], list]:
    """The DAG's last ``last_runs`` runs (newest first) and their successful task instances."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    runs = session.scalars(select(DagRun.run_id).where(DagRun.dag_id == dag_id)
                           .order_by(DagRun.id.desc()).limit(last_runs)).all()
    if not runs:
        return [], []
    rows = session.execute(
        select(TaskInstance.task_id, TaskInstance.run_id, TaskInstance.start_date, TaskInstance.end_date,
               TaskInstance.queue, TaskInstance.hostname)
        .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id.in_(runs),
               TaskInstance.state == TaskInstanceState.SUCCESS,
               TaskInstance.start_date.is_not(None), TaskInstance.end_date.is_not(None))
    ).all()
    return list(runs), rows


def _kind(task_type: str) -> str:
    """An operator's class name as a task kind (``_PythonDecoratedOperator``: ``PythonDecoratedOperator``)."""
    return task_type.lstrip("_") or "task"


def _group_sizes(dag, executor: str, rows, session) -> dict[str, tuple[int, list[str]]]:
    """Each node group (queue or pool) the DAG's tasks use: (slots per host, hosts)."""
    from airflow.configuration import conf

    parallelism = conf.getint("core", "parallelism")
    groups: dict[str, tuple[int, list[str]]] = {}
    if executor == "Celery":
        concurrency = conf.getint("celery", "worker_concurrency", fallback=16)
        for queue in sorted({t.queue for t in dag.tasks}):
            hosts = sorted({r.hostname for r in rows if r.queue == queue and r.hostname}) or ["worker"]
            groups[queue] = (concurrency, hosts)
        return groups
    from airflow.models.pool import Pool
    from sqlalchemy import select

    slots = dict(session.execute(select(Pool.pool, Pool.slots)).all())
    for pool in sorted({t.pool for t in dag.tasks}):
        size = slots.get(pool, parallelism)
        groups[pool] = (parallelism if size is None or size < 0 else min(size, parallelism), ["local"])
    return groups


def _nodes(dag, executor: str, groups: dict[str, tuple[int, list[str]]], reference_speed: float) -> tuple[Node, ...]:
    from apportion.core.model import MAX_NODE_SLOTS, Node

    nodes = []
    for group, (slots, hosts) in groups.items():
        tasks_here = sum(1 for t in dag.tasks if (t.queue if executor == "Celery" else t.pool) == group)
        per_host = max(1, min(slots, tasks_here, MAX_NODE_SLOTS))
        nodes += [Node(id=f"{group}-{host}" if executor == "Celery" else group, kind=group, speed=reference_speed,
                       memory=0.0, zone=host, slots=per_host) for host in hosts]
    return tuple(nodes)


def _read(dag_id: str, last_runs: int, session):
    """The DAG as Airflow stored it, its last runs and their successful task instances; one
    ``SpecError`` when the DAG, its history or the database itself is missing."""
    from airflow.models.serialized_dag import SerializedDagModel
    from sqlalchemy.exc import SQLAlchemyError

    from apportion.core.errors import SpecError

    try:
        dag = SerializedDagModel.get_dag(dag_id, session=session)
        runs, rows = _successful_instances(dag_id, last_runs, session) if dag is not None else ([], [])
    except SQLAlchemyError as error:
        first = (str(error.orig if getattr(error, "orig", None) else error).strip().splitlines() or ["?"])[0]
        raise SpecError("airflow", f"cannot read Airflow's metadata database ({first}); is it set up "
                                   "(`airflow db migrate`) and is AIRFLOW_HOME the right one?") from None
    if dag is None:
        raise _dag_error(dag_id, "not found in Airflow's metadata database (has the DAG processor parsed it? "
                                 "`airflow dags list` shows the DAGs it knows)")
    if not rows:
        raise _dag_error(dag_id, f"no history: no successful task instance in its last {last_runs} runs "
                                 f"({len(runs)} runs found); run it first (`airflow dags test {dag_id}`)")
    return dag, runs, rows


def import_dag(dag_id: str, *, reference_speed: float = REFERENCE_SPEED, last_runs: int = LAST_RUNS,
               session=None) -> ImportedDag:
    """The workload and cluster of the Airflow DAG ``dag_id`` (see the module's docstring)."""
    from apportion.core.errors import SpecError, excerpt
    from apportion.core.model import Cluster, Edge, Task, Workload

    if not isinstance(reference_speed, (int, float)) or isinstance(reference_speed, bool) \
            or not 0 < reference_speed < float("inf"):
        raise SpecError("reference_speed", f"must be a finite number > 0, got {excerpt(reference_speed)}")
    if isinstance(last_runs, bool) or not isinstance(last_runs, int) or last_runs < 1:
        raise SpecError("last_runs", f"must be an integer >= 1, got {excerpt(last_runs)}")
    if session is None:
        from airflow.utils.session import create_session

        with create_session() as session:
            return import_dag(dag_id, reference_speed=reference_speed, last_runs=last_runs, session=session)
    dag, runs, rows = _read(dag_id, last_runs, session)
    executor = _executor()
    seconds: dict[str, list[float]] = {}
    for r in rows:
        seconds.setdefault(r.task_id, []).append((r.end_date - r.start_date).total_seconds())
    work = {task_id: statistics.median(values) * reference_speed for task_id, values in seconds.items()}
    typical = statistics.median(work.values())
    groups = _group_sizes(dag, executor, rows, session)
    several = len(groups) > 1
    tasks = tuple(Task(id=t.task_id, work=max(0.0, work.get(t.task_id, typical)), kind=_kind(t.task_type),
                       allowed_kinds=((t.queue if executor == "Celery" else t.pool),) if several else None)
                  for t in sorted(dag.tasks, key=lambda t: t.task_id))
    edges = tuple(Edge(up, t.task_id) for t in sorted(dag.tasks, key=lambda t: t.task_id)
                  for up in sorted(t.upstream_task_ids))
    cluster = Cluster(nodes=_nodes(dag, executor, groups, reference_speed), default_bandwidth=BANDWIDTH,
                      name=f"{dag_id}-workers")
    return ImportedDag(workload=Workload(tasks=tasks, edges=edges, name=dag_id), cluster=cluster, executor=executor,
                       runs=tuple(sorted({r.run_id for r in rows})), instances=len(rows),
                       estimated=tuple(sorted(t.task_id for t in dag.tasks if t.task_id not in work)))


def write_specs(imported: ImportedDag, outputs) -> Iterable[str]:
    """Write ``workload.yaml`` and ``cluster.yaml`` into an ``OutputSet``; their names."""
    from apportion.core.io import dump
    from apportion.core.spec import cluster_to_dict, workload_to_dict

    dump({"workload": workload_to_dict(imported.workload)}, outputs.path("workload.yaml"))
    dump({"cluster": cluster_to_dict(imported.cluster)}, outputs.path("cluster.yaml"))
    return ("workload.yaml", "cluster.yaml")

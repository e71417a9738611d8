"""Before a plan is enacted on the CeleryExecutor: every planned node's queue has a live worker.

On the CeleryExecutor each enacted step instance is routed to its node's queue (``node-<ID>``,
``placement.node_pool``), which only that node's worker serves (``apportion cluster up
--node-workers CLUSTER_SPEC``). A step on a queue nobody consumes would wait in the broker
forever, and the steps already started elsewhere would have run for nothing. So
``prepare_enactment`` asks the workers which queues they consume (Celery's ``inspect
active_queues``, through Airflow's Celery app, which reads the broker settings every component
shares) and refuses the whole enactment, in one line naming the node and its queue, before any
step instance exists. On any other executor (LocalExecutor: queues mean nothing) it does not
look. A worker lost after the check is not seen here (re-planning on worker loss is separate).
"""

from __future__ import annotations

from typing import Callable, Mapping

# The executors that route by Celery queue: Airflow's and the one that also re-routes enacted
# steps after a re-plan (operators/rerouting.py).
CELERY_EXECUTORS = frozenset({"CeleryExecutor", "ReroutingCeleryExecutor"})
INSPECT_TIMEOUT = 3.0  # s: how long the workers have to answer the broadcast


def default_executor() -> str:
    """The class name of Airflow's default executor (the first of ``[core] executor``): an
    alias (``name:module.Class``) and a module path are reduced to the class name."""
    from airflow.configuration import conf

    first = (conf.get("core", "executor", fallback="") or "").split(",")[0].strip()
    return first.split(":")[-1].rsplit(".", 1)[-1]


def routes_by_queue() -> bool:
    """Whether the default executor sends each task instance to its queue's workers (Celery)."""
    return default_executor() in CELERY_EXECUTORS


def live_queues(timeout: float = INSPECT_TIMEOUT) -> dict[str, set[str]]:
    """Queue name -> the Celery hostnames of the live workers consuming it (the workers that
    answer ``inspect active_queues`` within ``timeout``)."""
    from airflow.providers.celery.executors.celery_executor_utils import app

    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    queues: dict[str, set[str]] = {}
    for worker, consumed in replies.items():
        for queue in consumed or ():
            queues.setdefault(queue["name"], set()).add(worker)
    return queues


def check_node_workers(node_queues: Mapping[str, str],
                       inspect: Callable[[], Mapping[str, set[str]]] | None = None) -> None:
    """On the CeleryExecutor, refuse (one-line ``SpecError``) when a planned node's queue has no
    live worker. ``node_queues`` maps each node a step is planned on to its queue, in plan
    order; the first node without a worker is named. ``inspect`` (default ``live_queues``) gives
    the live queues. On another executor nothing is asked."""
    from apportion.core.errors import SpecError

    if not node_queues or not routes_by_queue():
        return
    live = (inspect or live_queues)()
    for node, queue in node_queues.items():
        if not live.get(queue):
            served = sorted(name for name in live if name.startswith("node-")) or ["none"]
            raise SpecError("enact", f"node {node!r} has no live worker on queue {queue!r} (CeleryExecutor; "
                                     f"node queues served now: {', '.join(served)}; start one with apportion "
                                     "cluster up --node-workers CLUSTER_SPEC); nothing was enacted")

"""Airflow's ``[core] hostname_callable`` for the cluster's Celery workers.

Airflow records the host a task instance ran on (``task_instance.hostname``) from this callable.
Two workers on one machine share the machine's name, so each cluster worker sets
``APPORTION_WORKER_HOSTNAME`` to a name of its own; anywhere else this is the machine's name, as
Airflow's default (``airflow.utils.net.getfqdn``) gives. Standard library only: every task
process imports it.
"""

from __future__ import annotations

import os
import socket

WORKER_HOSTNAME_ENV = "APPORTION_WORKER_HOSTNAME"


def worker_hostname() -> str:
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()

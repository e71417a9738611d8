"""``enacted_step``: the ``@task`` of an enacted step, which can wait in the triggerer.

A step that takes another unit's output (a region's forecast reads its neighbours' ingest)
cannot have that edge as an Airflow dependency: a mapped task group orders its steps within
one map index only. So the step checks the other unit's XCom when it starts; while that input
has not started, it defers (``TaskDeferred`` with a ``TimeDeltaTrigger``): the task instance
gives its pool slot and its worker back, the triggerer wakes it, and the scheduler queues it
again, on the same try, to its node's queue and pool, where this operator's ``resume_step``
runs it again (a plain ``@task`` cannot resume: the trigger's event comes as ``event=``, which
``execute`` does not take). ``operators/enactment.py``'s ``results_of_other_units`` decides.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.bases.decorator import task_decorator_factory

RESUME_METHOD = "resume_step"


class EnactedStepOperator(_PythonDecoratedOperator):
    """``@task``'s operator, resumable after waiting for another unit's output.

    ``waited`` is None on a first start; after a deferral, ``{"since": the epoch second the
    step first found an input missing, "until": the epoch second the triggerer woke it}``, which
    the step reads (``context["task"].waited``) to count its start from when it resumed."""

    custom_operator_name = "@enacted_step"
    waited: dict[str, float] | None = None

    def resume_step(self, context, event: Any = None, waiting_since: float | None = None) -> Any:
        """Run the step again after the triggerer woke it (``event``: the trigger's moment)."""
        until = event.timestamp() if isinstance(event, datetime) else time.time()
        self.waited = {"since": until if waiting_since is None else waiting_since, "until": until}
        return self.execute(context)


def enacted_step(python_callable=None, **kwargs):
    """``@task`` with ``EnactedStepOperator``: same arguments, same ``override``/``expand``."""
    return task_decorator_factory(python_callable=python_callable, decorated_operator_class=EnactedStepOperator,
                                  **kwargs)

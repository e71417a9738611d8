"""Airflow operators: allocate a workload on a cluster, and check the chosen plan.

Both are thin over the step functions (``allocating.allocate``, ``chosen_plan.evaluate_plan``) (which DAG ``@task`` functions may call directly).
Only ``airflow.sdk`` is imported at module level; numpy, numba, pymoo, mlflow and the core
load inside ``execute()``, so DAG files parse in milliseconds.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator

from apportion.operators.allocation_arguments import AllocationArguments
from apportion.operators.hooks import DEFAULT_CONN_ID
from apportion.operators.links import MlflowPlanLink, MlflowRunLink

if TYPE_CHECKING:
    from airflow.sdk import Context


@contextmanager
def fail_on_bad_input(step: str):
    """Bad input stays bad on a retry: a ``SpecError`` (naming the field) or a missing tracking
    configuration fails the task at once, as one ``AirflowFailException`` line, instead of a
    traceback and two retries. Every Apportion task runs its step inside this."""
    from airflow.sdk.exceptions import AirflowFailException

    from apportion.core.errors import SpecError
    from apportion.operators.hooks import TrackingNotConfigured

    try:
        yield
    except SpecError as error:
        raise AirflowFailException(f"bad {step} input: {error}") from error
    except TrackingNotConfigured as error:
        raise AirflowFailException(f"{step}: {error}") from error


class AllocationOperator(BaseOperator):
    """Decide where each task of a workload runs on a cluster, and track it in MLflow.

    Runs ``core.api.optimize`` and writes plan.json, pareto.csv, schedule.csv, the Pareto
    front (pareto.html, pareto.png), a Gantt chart of the chosen plan (gantt.png), the
    workload and cluster specs and result.json into the task's run folder
    ``<output_root>/<dag_id>/<run_id>/<task_id>``. Then it logs params, metrics, per-generation
    convergence and every file to the DAG run's MLflow run (one experiment per workflow, one
    run per DAG run; a retry resumes the same run, and reuses a complete result in the run
    folder instead of recomputing). With ``nested=True`` it logs to a child run of the DAG
    run's run, so several allocations (a benchmark) sit side by side.

    Returns to XCom: ``plan_id``, ``algorithm``, ``seed``, ``objectives`` (name -> value),
    ``makespan``, ``utilization``, ``imbalance``, ``hypervolume``, ``pareto_size``,
    ``optimiser_seconds``, ``reused``, ``artifact_uri``, ``plan_uri``, ``workload``,
    ``cluster`` (URIs in the storage root, docs/storage.md), ``mlflow_run_id``, ``mlflow_parent_run_id``,
    ``mlflow_experiment_id``, ``mlflow_run_url``, ``mlflow_plan_url``, ``tracking_uri``.

    Every argument is keyword-only and declared once, in ``AllocationArguments``:

    """

    __doc__ += AllocationArguments.param_docs() + "\n"
    template_fields: Sequence[str] = AllocationArguments.template_fields()
    template_fields_renderers = AllocationArguments.template_fields_renderers()
    ui_color = "#d8e7f5"
    operator_extra_links = (MlflowRunLink(), MlflowPlanLink())

    def __init__(self, **kwargs) -> None:
        arguments = AllocationArguments(**{name: kwargs.pop(name) for name in AllocationArguments.names()
                                           if name in kwargs})
        super().__init__(**kwargs)
        for name in AllocationArguments.names():
            setattr(self, name, getattr(arguments, name))

    __init__.__signature__ = AllocationArguments.init_signature()

    def execute(self, context: Context) -> dict[str, Any]:
        from apportion.operators.allocating import run_allocation

        with fail_on_bad_input("allocation"):
            summary = run_allocation(AllocationArguments.of(self), context=context)
        self.log.info(
            "plan %s: makespan %.4g s, utilization %.3f, imbalance %.3f, front of %d%s; MLflow run %s; files in %s",
            summary["plan_id"], summary["makespan"], summary["utilization"], summary["imbalance"],
            summary["pareto_size"], " (reused the folder's result)" if summary["reused"] else "",
            summary["mlflow_run_url"] or summary["mlflow_run_id"], summary["artifact_uri"],
        )
        if summary["robust_makespan"] is not None:
            self.log.info("robust plan: p95 makespan %.4g s under noise", summary["robust_makespan"])
        if summary["warm_start"]:
            self.log.info("warm start from MLflow run %s: %d tasks moved", summary["warm_start_source"],
                          summary["moved_tasks"])
        return summary


class EvaluatePlanOperator(BaseOperator):
    """Re-evaluate the chosen plan from plan.json and the saved specs, independently of the
    optimiser, and fail if its metrics or task times differ from what the optimiser claimed.

    Logs ``evaluation/max_relative_error`` and ``evaluation/verified`` to the allocation's
    MLflow run. Returns ``plan_id``, ``verified``, ``max_relative_error``, ``checked`` and the
    recomputed ``metrics``.

    :param allocation: the ``AllocationOperator`` result (usually its ``.output``). (templated)
    :param tolerance: largest accepted relative difference.
    :param tracking_uri: MLflow tracking URI; default the one the allocation used. (templated)
    :param mlflow_conn_id: Airflow connection for the tracking URI.
    :param metric_prefix: prefix of the logged metrics (a failure drill checks its re-plan
        under ``drill/evaluation/``).
    """

    template_fields: Sequence[str] = ("allocation", "tracking_uri")
    ui_color = "#e4f0d8"

    def __init__(self, *, allocation: Any, tolerance: float = 1e-9, tracking_uri: str | None = None,
                 mlflow_conn_id: str | None = DEFAULT_CONN_ID, metric_prefix: str = "evaluation/", **kwargs) -> None:
        super().__init__(**kwargs)
        self.allocation = allocation
        self.tolerance = tolerance
        self.tracking_uri = tracking_uri
        self.mlflow_conn_id = mlflow_conn_id
        self.metric_prefix = metric_prefix

    def execute(self, context: Context) -> dict[str, Any]:
        from apportion.operators.chosen_plan import evaluate_plan

        with fail_on_bad_input("evaluation"):
            outcome = evaluate_plan(self.allocation, tolerance=self.tolerance, tracking_uri=self.tracking_uri,
                                    mlflow_conn_id=self.mlflow_conn_id, metric_prefix=self.metric_prefix)
        self.log.info("plan %s verified: %d values agree within %.3g", outcome["plan_id"], outcome["checked"],
                      outcome["max_relative_error"])
        return outcome

"""Airflow operators: allocate a workload on a cluster, and check the chosen plan.

Both are thin over the step functions (``allocating.allocate``, ``chosen_plan.evaluate_plan``) (which DAG ``@task`` functions may call directly).
Only ``airflow.sdk`` is imported at module level; numpy, numba, pymoo, mlflow and the core
load inside ``execute()``, so DAG files parse in milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from airflow.sdk import BaseOperator

from apportion.operators.links import MlflowPlanLink, MlflowRunLink
from apportion.operators.tracking import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context


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
    ``optimiser_seconds``, ``reused``, ``artifact_dir``, ``plan_path``, ``workload``,
    ``cluster`` (spec paths), ``mlflow_run_id``, ``mlflow_parent_run_id``,
    ``mlflow_experiment_id``, ``mlflow_run_url``, ``mlflow_plan_url``, ``tracking_uri``.

    :param workload: workload spec path, spec dict, or an upstream result dict with a
        ``"workload"`` entry (and optionally ``"cluster"``). (templated)
    :param cluster: cluster spec path, spec dict, or an upstream result with a ``"cluster"``
        entry. (templated)
    :param scenario: built-in scenario name (``medical_diagnosis``, ``traffic_prediction``,
        ``multimodal_speech``) used for whichever of workload/cluster is not given. (templated)
    :param scenario_params: ``size``, ``nodes``, ``seed``, ``logical_date`` for the scenario. (templated)
    :param algorithm: registered allocator name (``nsga2``, ``nsga3``, baselines). (templated)
    :param population: population size of iterative algorithms. (templated)
    :param generations: generations of iterative algorithms. (templated)
    :param seed: random seed; same seed and inputs give the same plan. (templated)
    :param objectives: objective names, a list or comma-separated string; default
        makespan, utilization, imbalance. (templated)
    :param select: how to pick one plan from the front (``knee``, ...). (templated)
    :param experiment_name: MLflow experiment; default the DAG id. (templated)
    :param run_name: name of the DAG run's MLflow run; default the DAG run id. (templated)
    :param nested: log to a child run of the DAG run's run (benchmarks).
    :param child_run_name: name of the child run; default the algorithm. (templated)
    :param tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI``, then the
        connection ``mlflow_conn_id``. (templated)
    :param mlflow_conn_id: Airflow connection whose host/port/schema give the tracking URI.
    :param output_root: root of the run folders; default ``$APPORTION_OUTPUT_ROOT`` or
        ``$AIRFLOW_HOME/apportion``. (templated)
    :param tracking_attempts: tries to reach an http(s) tracking server before failing.
    :param warm_start: start from the front this DAG last published (``front.json`` beside the
        published plan.json), mapped by task and node id onto this run's workload and cluster;
        logs ``warm_start``/``warm_start_source``, ``moved_tasks``, ``moved_share``,
        ``warm_start_plans`` and ``delta/<metric>`` versus the previous plan. (templated)
    :param migration_objective: with a previous plan, also minimise the tasks moved off the
        node it gave them (objective ``migrations``). (templated)
    :param robust_scenarios: K > 0 plans against noise (docs/robust.md): scores plans over K
        sampled scenarios, searching from the plan a nominal run picks; logs ``robust/<metric>``
        and ``robust/nominal_choice_makespan``. 0: nominal plans. (templated)
    :param noise_sigma: lognormal sigma of task durations and transfers in those scenarios. (templated)
    """

    template_fields: Sequence[str] = (
        "workload", "cluster", "scenario", "scenario_params", "algorithm", "population", "generations",
        "seed", "objectives", "select", "experiment_name", "run_name", "child_run_name", "tracking_uri",
        "output_root", "warm_start", "migration_objective", "robust_scenarios", "noise_sigma",
    )
    template_fields_renderers = {"workload": "json", "cluster": "json", "scenario_params": "json"}
    ui_color = "#d8e7f5"
    operator_extra_links = (MlflowRunLink(), MlflowPlanLink())

    def __init__(
        self,
        *,
        workload: Any = None,
        cluster: Any = None,
        scenario: str | None = None,
        scenario_params: dict[str, Any] | None = None,
        algorithm: str = "nsga2",
        population: int | str = 100,
        generations: int | str = 200,
        seed: int | str = 0,
        objectives: Sequence[str] | str | None = None,
        select: str = "knee",
        experiment_name: str | None = None,
        run_name: str | None = None,
        nested: bool = False,
        child_run_name: str | None = None,
        tracking_uri: str | None = None,
        mlflow_conn_id: str | None = DEFAULT_CONN_ID,
        output_root: str | None = None,
        tracking_attempts: int = 3,
        warm_start: bool | str = False,
        migration_objective: bool | str = False,
        robust_scenarios: int | str = 0,
        noise_sigma: float | str = 0.3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.workload = workload
        self.cluster = cluster
        self.scenario = scenario
        self.scenario_params = scenario_params
        self.algorithm = algorithm
        self.population = population
        self.generations = generations
        self.seed = seed
        self.objectives = objectives
        self.select = select
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.nested = nested
        self.child_run_name = child_run_name
        self.tracking_uri = tracking_uri
        self.mlflow_conn_id = mlflow_conn_id
        self.output_root = output_root
        self.tracking_attempts = tracking_attempts
        self.warm_start = warm_start
        self.migration_objective = migration_objective
        self.robust_scenarios = robust_scenarios
        self.noise_sigma = noise_sigma

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from apportion.core.errors import SpecError
        from apportion.operators.allocating import allocate

        try:
            summary = allocate(
                self.workload, self.cluster, scenario=self.scenario, scenario_params=self.scenario_params,
                algorithm=self.algorithm, population=self.population, generations=self.generations,
                seed=self.seed, objectives=self.objectives, select=self.select,
                experiment_name=self.experiment_name, run_name=self.run_name, nested=self.nested,
                child_run_name=self.child_run_name, tracking_uri=self.tracking_uri,
                mlflow_conn_id=self.mlflow_conn_id, output_root=self.output_root,
                tracking_attempts=self.tracking_attempts, warm_start=self.warm_start,
                migration_objective=self.migration_objective, robust_scenarios=self.robust_scenarios,
                noise_sigma=self.noise_sigma, context=context,
            )
        except SpecError as error:
            # Bad input stays bad on a retry: fail at once with the field and the reason.
            raise AirflowFailException(f"bad allocation input: {error}") from error
        self.log.info(
            "plan %s: makespan %.4g s, utilization %.3f, imbalance %.3f, front of %d%s; MLflow run %s; files in %s",
            summary["plan_id"], summary["makespan"], summary["utilization"], summary["imbalance"],
            summary["pareto_size"], " (reused the folder's result)" if summary["reused"] else "",
            summary["mlflow_run_url"] or summary["mlflow_run_id"], summary["artifact_dir"],
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
        under ``replan_evaluation/``).
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

        outcome = evaluate_plan(self.allocation, tolerance=self.tolerance, tracking_uri=self.tracking_uri,
                                mlflow_conn_id=self.mlflow_conn_id, metric_prefix=self.metric_prefix)
        self.log.info("plan %s verified: %d values agree within %.3g", outcome["plan_id"], outcome["checked"],
                      outcome["max_relative_error"])
        return outcome

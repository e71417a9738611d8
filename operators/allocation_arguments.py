"""The arguments of one allocation, declared once.

``AllocationArguments`` lists every argument with its default, whether Airflow renders it
(templated) and its documentation. ``AllocationOperator`` derives its ``template_fields``, its
keyword-only ``__init__`` signature and its ``:param:`` docs from it, and hands it to
``allocating.run_allocation``; ``allocating.allocate`` takes the same names as keywords. A new
argument is one field here (and its use in ``run_allocation``).

Standard library only: DAG files import the operator, and through it this module, at parse time.
Defaults that are the project's (budget, seed, objectives, selection, noise) are ``None`` here
and come from ``apportion.core.defaults`` when the settings are made.
"""

from __future__ import annotations

import inspect
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from apportion.operators.hooks import DEFAULT_CONN_ID


def _arg(default: Any = None, *, doc: str, templated: bool = True, renderer: str | None = None):
    return field(default=default, metadata={"doc": doc, "templated": templated, "renderer": renderer})


@dataclass(frozen=True, kw_only=True)
class AllocationArguments:
    """What one allocation runs on, how it searches and where it is recorded."""

    workload: Any = _arg(renderer="json", doc=(
        'workload spec path, spec dict, or an upstream result dict with a ``"workload"`` entry '
        '(and optionally ``"cluster"``).'))
    cluster: Any = _arg(renderer="json", doc='cluster spec path, spec dict, or an upstream result with a '
                                             '``"cluster"`` entry.')
    scenario: str | None = _arg(doc=(
        "built-in scenario name (``medical_diagnosis``, ``traffic_prediction``, ``multimodal_speech``) used "
        "for whichever of workload/cluster is not given."))
    scenario_params: dict[str, Any] | None = _arg(renderer="json", doc=(
        "``size``, ``nodes``, ``seed``, ``logical_date`` for the scenario (e.g. ``build_workload``'s "
        "``scenario_params`` output)."))
    algorithm: str | None = _arg(doc=(
        "registered allocator name (``apportion.core.algorithms.registry.algorithm_names()``: ``nsga2``, "
        "``nsga3``, baselines, plug-ins); default ``nsga2``."))
    population: int | None = _arg(doc="population size of iterative algorithms; default 100.")
    generations: int | None = _arg(doc="generations of iterative algorithms; default 200.")
    seed: int | None = _arg(doc="random seed; same seed and inputs give the same plan; default 0.")
    objectives: list[str] | None = _arg(doc=(
        "objective names; default (None or empty) the workload's: mean_response, utilization, imbalance when "
        "its requests arrive over time, else makespan, utilization, imbalance "
        "(``apportion.core.defaults.objectives_for``)."))
    select: str | None = _arg(doc="how to pick one plan from the front (``compromise``, ``knee``, "
                                  "``weights:a,b,c``, ``sla:SECONDS``); default ``compromise``.")
    experiment_name: str | None = _arg(doc="MLflow experiment; default the DAG id.")
    run_name: str | None = _arg(doc="name of the DAG run's MLflow run; default the DAG run id.")
    nested: bool = _arg(False, templated=False, doc="log to a child run of the DAG run's run (benchmarks).")
    child_run_name: str | None = _arg(doc="name of the child run; default the algorithm.")
    tracking_uri: str | None = _arg(doc=(
        "MLflow tracking URI; default ``MLFLOW_TRACKING_URI``, then the connection ``mlflow_conn_id``."))
    mlflow_conn_id: str | None = _arg(DEFAULT_CONN_ID, templated=False, doc=(
        "Airflow connection whose host/port/schema give the tracking URI."))
    output_root: str | None = _arg(doc=(
        "root of the run folders; default ``$APPORTION_OUTPUT_ROOT`` or ``$AIRFLOW_HOME/apportion``."))
    tracking_attempts: int = _arg(3, templated=False, doc="tries to reach an http(s) tracking server before failing.")
    warm_start: bool = _arg(False, doc=(
        "start from the front this DAG last published (``front.json`` beside the published plan.json), "
        "mapped by task and node id onto this run's workload and cluster; logs ``warm_start``/"
        "``warm_start_source``, ``moved_tasks``, ``moved_share``, ``warm_start_plans`` and "
        "``delta/<metric>`` versus the previous plan."))
    migration_objective: bool = _arg(False, doc=(
        "with a previous plan, also minimise the tasks moved off the node it gave them (objective "
        "``migrations``)."))
    robust_scenarios: int = _arg(0, doc=(
        "K > 0 plans against noise (docs/robust.md): scores plans over K sampled scenarios, searching from "
        "the plan a nominal run picks; logs ``robust/<metric>`` and ``robust/nominal_choice_makespan``. "
        "0: nominal plans."))
    noise_sigma: float | None = _arg(doc=(
        "lognormal sigma of task durations and transfers in those scenarios; default 0.3 "
        "(``apportion.core.defaults.NOISE_SIGMA``)."))
    calibration: Any = _arg(doc=(
        "plan with calibrated speeds and overheads (docs/calibration.md): ``True`` the calibration file of "
        "this scenario and cluster in the storage root (``<root>/calibration/<scenario>/<cluster>.json``, "
        "which enactments update), a path or URI that file; every node is planned as the machine the "
        "enactment measured. ``None``/``False``: the declared cluster. Logs ``calibration/planned_revision`` "
        "(0: nothing calibrated yet)."))
    calibration_scale: float | None = _arg(doc=(
        "the enactment's stand-in items per GFLOP (``enact_scale``): the calibration's items per second over "
        "it are the speeds planned with; required with ``calibration``."))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def template_fields(cls) -> tuple[str, ...]:
        """The arguments Airflow renders before ``execute()``."""
        return tuple(f.name for f in fields(cls) if f.metadata["templated"])

    @classmethod
    def template_fields_renderers(cls) -> dict[str, str]:
        return {f.name: f.metadata["renderer"] for f in fields(cls) if f.metadata["renderer"]}

    @classmethod
    def param_docs(cls) -> str:
        """``:param name: doc`` lines, ``(templated)`` marked, for an operator's docstring."""
        lines = []
        for f in fields(cls):
            lines.append(f"    :param {f.name}: {f.metadata['doc']}" + (" (templated)" if f.metadata["templated"] else ""))
        return "\n".join(lines)

    @classmethod
    def init_signature(cls) -> inspect.Signature:
        """``(self, *, <every argument with its default>, **kwargs)``: what Airflow inspects to
        apply ``default_args`` and to check ``partial()``/``expand()`` keywords."""
        parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                         default=None if f.default is MISSING else f.default) for f in fields(cls)]
        parameters.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
        return inspect.Signature(parameters)

    @classmethod
    def of(cls, obj: Any) -> "AllocationArguments":
        """The arguments held as attributes of ``obj`` (an operator, after rendering)."""
        return cls(**{name: getattr(obj, name) for name in cls.names()})

"""What the Apportion DAG files share: trigger-form Params, docs, default arguments and the steps.

Only the standard library and ``airflow.sdk`` are imported at module level, so every DAG file
parses in milliseconds; each task imports its step from ``apportion.operators`` (and through it
numpy, numba, pymoo, MLflow and the core) when it runs. Airflow puts the dags folder on
``sys.path`` (the bundle path) for the DAG processor and the task runner, which is how the DAG
files import this.

The forms' choices and defaults have one source each: the algorithms come from
``apportion.core.algorithms.registry.algorithm_names()`` (built in, entry points,
``register()``), objectives, budget, selection pattern, noise and samples from
``apportion.core.defaults`` (both standard library only), imported inside the functions that
build the Params.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, Param, get_current_context, task
from enactment_workflow import calibration_arguments, enactment_steps

# The built-in scenarios (``apportion.core.scenarios.SCENARIOS``, which imports NumPy, so it
# is not read at parse time; tests/dags/test_params.py checks they agree).
SCENARIOS = ("medical_diagnosis", "traffic_prediction", "multimodal_speech")

START_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "apportion",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "execution_timeout": timedelta(hours=1),
}


def operator_classes():
    """``(AllocationOperator, EvaluatePlanOperator)``, imported when a DAG is built so that DAG
    files import nothing but ``airflow.sdk`` and the standard library at module level (the
    operators module itself loads only ``airflow.sdk``; numpy, numba, pymoo, mlflow and the
    core load in ``execute()``)."""
    from apportion.operators.allocation import AllocationOperator, EvaluatePlanOperator

    return AllocationOperator, EvaluatePlanOperator


def plan_asset(dag_id: str) -> Asset:
    """The Asset a workflow DAG updates each time it publishes a verified plan."""
    return Asset(uri=f"apportion://plans/{dag_id}", name=f"{dag_id}_plan", group="apportion-plans")


def scenario_params(*, unit: str, what: str, default_size: int, max_size: int, default_nodes: int) -> dict[str, Param]:
    """A workflow DAG's instance size: the workload size (named after its ``unit``) and the node count."""
    return {
        unit: Param(
            default_size, type="integer", minimum=1, maximum=max_size, title=f"{unit.capitalize()}",
            description=f"How many {what} the workload holds (1-{max_size}).", section="Scenario",
        ),
        "nodes": _nodes_param(default_nodes),
    }


def chosen_scenario_params(*, default_size: int, purpose: str) -> dict[str, Param]:
    """The scenario to run on and its size, for the DAGs that take any scenario (benchmark, drill)."""
    return {
        "scenario": Param(
            SCENARIOS[0], type="string", enum=list(SCENARIOS), title="Scenario",
            description=f"Which workflow's workload and cluster {purpose}.", section="Scenario",
        ),
        "size": Param(
            default_size, type="integer", minimum=1, maximum=2000, title="Size",
            description="Workload size in the scenario's unit: patient cases, city regions or streams (1-2000).",
            section="Scenario",
        ),
        "nodes": _nodes_param(16),
    }


def _nodes_param(default: int) -> Param:
    return Param(
        default, type="integer", minimum=1, maximum=512, title="Nodes",
        description="Cluster size: nodes of the scenario's cluster (1-512), split over its zones and kinds.",
        section="Scenario",
    )


def form_objectives() -> tuple[str, ...]:
    """The objectives a form offers: ``migrations`` only means something against a previous
    plan, so the ``migration_objective`` Param adds it instead."""
    from apportion.core import defaults

    return tuple(name for name in defaults.OBJECTIVES if name != "migrations")


def algorithms_param(*, many: bool = False) -> Param:
    """One algorithm (a workflow) or several (a benchmark), from the registry's names."""
    from apportion.core import defaults
    from apportion.core.algorithms.registry import algorithm_names

    names = list(algorithm_names())
    if many:
        return Param(
            names, type="array", minItems=1, uniqueItems=True, items={"type": "string", "enum": names},
            title="Algorithms", section="Optimiser",
            description="The algorithms to compare; each becomes one mapped allocate task and one child MLflow run.",
        )
    return Param(
        defaults.ALGORITHM, type="string", enum=names, title="Algorithm", section="Optimiser",
        description="nsga2/nsga3 search a Pareto front; the others are one-plan heuristics (baselines).",
    )


def optimiser_params(*, with_algorithm: bool = True) -> dict[str, Param]:
    """Algorithm, budget, seed, objectives and the plan-selection policy."""
    from apportion.core import defaults

    params: dict[str, Param] = {"algorithm": algorithms_param()} if with_algorithm else {}
    params.update({
        "population": Param(
            defaults.POPULATION, type="integer", minimum=4, maximum=2000, title="Population", section="Optimiser",
            description="Plans per generation of nsga2/nsga3 (4-2000); ignored by the heuristics.",
        ),
        "generations": Param(
            defaults.GENERATIONS, type="integer", minimum=1, maximum=5000, title="Generations", section="Optimiser",
            description="Generations of nsga2/nsga3 (1-5000); run time grows linearly with it.",
        ),
        "seed": Param(
            defaults.SEED, type="integer", minimum=0, maximum=2**31 - 1, title="Seed", section="Optimiser",
            description="Random seed of the scenario and the optimiser: same seed and inputs, same plan.",
        ),
        "objectives": Param(
            [], type="array", uniqueItems=True,
            items={"type": "string", "enum": list(form_objectives())}, title="Objectives", section="Optimiser",
            description="What the optimiser trades off (utilization is maximised, the others minimised). "
                        f"Empty: {', '.join(defaults.STREAMING_OBJECTIVES)} when the workload's requests "
                        f"arrive over time, else {', '.join(defaults.DEFAULT_OBJECTIVES)}.",
        ),
        "select": Param(
            defaults.SELECT, type="string", pattern=defaults.SELECT_PATTERN, title="Selection policy",
            section="Optimiser",
            description="How one plan is picked from the front: 'compromise' (nearest the ideal point, "
                        "every objective normalised over the front), 'knee' (where the front bends most: "
                        "moving off it costs more than it gains), 'weights:a,b,c' (one weight per "
                        "objective) or 'sla:SECONDS' (most utilised plan whose makespan meets the bound).",
        ),
    })
    return params


def replanning_params() -> dict[str, Param]:
    """Warm start from the previous run, the migrations objective, and nodes down in the snapshot."""
    return {
        "warm_start": Param(
            True, type="boolean", title="Warm start", section="From run to run",
            description="Start from the front the previous run of this DAG published (mapped onto this run's "
                        "workload and cluster) and count the tasks that move; off: search from scratch.",
        ),
        "migration_objective": migration_objective_param(
            "With a previous plan, also minimise the tasks moved off the node it gave them "
            "(adds the 'migrations' objective).", section="From run to run"),
        "nodes_down": Param(
            [], type="array", uniqueItems=True, items={"type": "string", "minLength": 1}, title="Nodes down",
            section="From run to run",
            description="Node ids marked failed in this run's cluster snapshot (they take no work), "
                        "e.g. hospital/a6000-0.",
        ),
    }


def migration_objective_param(description: str, *, section: str) -> Param:
    return Param(False, type="boolean", title="Minimise migrations", description=description, section=section)


def simulation_params() -> dict[str, Param]:
    """How the simulate step perturbs the chosen plan (and a robust search plans against);
    the defaults are the command line's (``apportion.core.defaults``)."""
    from apportion.core import defaults

    return {
        "noise_sigma": Param(
            defaults.NOISE_SIGMA, type="number", minimum=0, maximum=3, title="Noise sigma", section="Uncertainty",
            description="Lognormal sigma (mean 1) of task durations and transfers in the simulation (0-3), "
                        "and in the scenarios of a robust search.",
        ),
        "robust_scenarios": Param(
            0, type="integer", minimum=0, maximum=256, title="Robust scenarios (K)", section="Uncertainty",
            description="0: plan for the nominal durations. K > 0: plan against the noise above: plans are "
                        "scored over K sampled scenarios (p95 makespan), and the pick is no worse under noise, "
                        "in any objective, than a nominal run's; about K times the search time.",
        ),
        "mtbf": Param(
            None, type=["null", "number"], exclusiveMinimum=0, title="Node MTBF (s)", section="Uncertainty",
            description="Mean time between failures of each node in the simulation, s; empty: nodes never fail. "
                        "A failed node is repaired in 60 s on average and the lost task rerun.",
        ),
        "samples": Param(
            defaults.SAMPLES, type="integer", minimum=1, maximum=100000, title="Simulated samples",
            section="Uncertainty", description="How many times the chosen plan is enacted (Monte Carlo samples).",
        ),
    }


WORKFLOW_DOC = """
**From run to run**: the param `warm_start/enabled` (and `warm_start/source`, the MLflow run
started from), `warm_start/moved_tasks`/`warm_start/moved_share` (tasks placed on another node
than last time) and `warm_start/delta/makespan`, `warm_start/delta/utilization`... (this plan
minus the previous one). **Predicted versus realised**: the `plan/` metrics are the plan's
predictions; `sim/<metric>_mean`, `_p50`, `_p95`... come from the simulation, with simulation.png (histograms, predicted value marked).
**Robust planning**: `robust_scenarios` K > 0 plans against the `noise_sigma` noise (plans
scored over K sampled scenarios, the pick no worse under noise than a nominal run's);
`robust/makespan` (p95 under noise) sits beside `robust/nominal_choice_makespan`, what the
nominal pick would give.
"""


def workflow_doc(dag_id: str, intro: str, results: str) -> str:
    """A workflow DAG's ``doc_md``: its own introduction, the steps every workflow DAG runs,
    its own results paragraph, then what every workflow DAG logs from run to run."""
    steps = f"""
**Steps** (Graph view): `build_workload` builds the scenario instance and `snapshot_cluster`
freezes its cluster (workload.json, cluster.json); `allocate` searches plans with the chosen
algorithm and picks one with the selection policy, starting from the front the previous run
published (`warm_start`); `evaluate_plan` re-computes the chosen plan independently and fails on
any mismatch; `simulate_plan` enacts it `samples` times under noise (`noise_sigma`, node failures
with `mtbf`); `publish_plan` copies the verified plan (and its front, for the next run) to
`<storage root>/published/{dag_id}/plan.json` (docs/storage.md) and updates the Asset
`apportion://plans/{dag_id}` (schedule other DAGs on it); `record` closes the MLflow run.
With **Enact the plan** = `plan and run`, `prepare_enactment`, the mapped group `enact` (one
index per enacted unit, the workflow's own steps inside, each in the Airflow pool of the node
the plan gave it) and `observe_enactment` (`enact/*` metrics, enactment.png: predicted against
realised) also run; `plan only` skips them (docs/enactment.md).
"""
    return "\n".join(part.strip("\n") for part in (intro, steps, results, WORKFLOW_DOC)) + "\n"


def optimiser_arguments(*, algorithm: str | None = "{{ params.algorithm }}") -> dict[str, str]:
    """``AllocationOperator`` arguments rendered from the run's Params (as native objects: the
    DAGs set ``render_template_as_native_obj``, so numbers arrive as numbers, lists as lists)."""
    arguments = {name: f"{{{{ params.{name} }}}}" for name in ("population", "generations", "seed", "objectives",
                                                              "select")}
    if algorithm is not None:
        arguments["algorithm"] = algorithm
    return arguments


def scenario_inputs(scenario: str | None = None, size_param: str = "size") -> dict[str, Any]:
    """Build the scenario once (``build_workload``), snapshot its cluster (``snapshot_cluster``)
    and return the ``AllocationOperator`` arguments that carry them: workload, cluster, and the
    scenario name and parameters it was built with (logged as ``scenario_*`` params), all task
    outputs."""
    built = build_workload(scenario=scenario, size_param=size_param)
    return {"workload": built, "cluster": snapshot_cluster(built), "scenario": built["scenario"],
            "scenario_params": built["scenario_params"]}


def _scenario_request(context, scenario: str | None, size_param: str) -> dict[str, Any]:
    """Scenario name, size, nodes, seed and the run's date in the city's time zone."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from apportion.core.errors import SpecError

    params = context["params"]
    when = context.get("logical_date") or context["dag_run"].run_after
    try:
        zone = ZoneInfo(params.get("city_timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError("city_timezone", f"unknown time zone {params.get('city_timezone')!r}") from None
    local = when.astimezone(zone)
    return {
        "scenario": scenario or params["scenario"], "size": params[size_param], "nodes": params["nodes"],
        "seed": params["seed"], "logical_date": local.isoformat(),
    }


@task(task_id="build_workload", multiple_outputs=True)
def build_workload(scenario: str | None = None, size_param: str = "size") -> dict:
    """Build the scenario instance: its workload as workload.json and its cluster as built; the
    output adds the ``scenario_params`` it was built with (each key is also its own XCom)."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.inputs import build_workload as build

    context = get_current_context()
    with fail_on_bad_input("build_workload"):
        request = _scenario_request(context, scenario, size_param)
        name = request.pop("scenario")
        return {**build(name, **request, context=context), "scenario_params": request}


@task(task_id="snapshot_cluster")
def snapshot_cluster(built: dict) -> dict:
    """Freeze the cluster this run allocates on as cluster.json: the scenario's cluster from
    ``build_workload``, the ``nodes_down`` Param's nodes marked failed."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.inputs import snapshot_cluster as snapshot

    context = get_current_context()
    with fail_on_bad_input("snapshot_cluster"):
        return snapshot(built, nodes_down=context["params"].get("nodes_down", ()), context=context)


@task(task_id="simulate_plan")
def simulate_plan(allocation: dict, evaluation: dict) -> dict:
    """Enact the plan many times under noise (and node failures if ``mtbf``) and log the
    realised metrics and their histograms beside the predicted ones; takes ``evaluation`` so it
    runs only on a verified plan."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.simulation import simulate_plan as simulate

    context = get_current_context()
    params = context["params"]
    with fail_on_bad_input("simulate_plan"):
        return simulate(allocation, noise_sigma=params["noise_sigma"], mtbf=params["mtbf"],
                        samples=params["samples"], seed=params["seed"], context=context)


@task(task_id="publish_plan")
def publish_plan(allocation: dict, evaluation: dict) -> dict:
    """Copy the verified plan to its stable URI in the storage root and mark the DAG's plan
    Asset updated (its extra names that URI, never a worker's local path)."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.publishing import publish_plan as publish

    context = get_current_context()
    with fail_on_bad_input("publish_plan"):
        publication = publish(allocation, evaluation, context=context)
    for asset in context["task"].outlets:
        context["outlet_events"][asset].extra = {
            "uri": publication["uri"], "plan_id": publication["plan_id"],
            "mlflow_run_id": allocation.get("mlflow_run_id"), "makespan": allocation["makespan"],
        }
    return publication


@task(task_id="record")
def record(allocation, evaluation: dict | None = None, publication: dict | None = None) -> dict:
    """Close the DAG run's MLflow run with its plan id, verification and published URI."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.publishing import record_run

    with fail_on_bad_input("record"):
        return record_run(allocation, evaluation=evaluation, publication=publication)


def workflow_steps(scenario: str, size_param: str, *, enactment: bool = False) -> None:
    """Wire a workflow DAG's steps (inside its ``with DAG``): build the workload and snapshot
    the cluster, allocate (warm start and robust planning from the Params), re-check the plan,
    then simulate it, publish it to the ``plan_asset`` and record the MLflow run; with
    ``enactment``, also enact the verified plan (``enactment_steps``) before the record."""
    AllocationOperator, EvaluatePlanOperator = operator_classes()
    allocation = AllocationOperator(
        task_id="allocate", **scenario_inputs(scenario, size_param), **optimiser_arguments(),
        warm_start="{{ params.warm_start }}", migration_objective="{{ params.migration_objective }}",
        robust_scenarios="{{ params.robust_scenarios }}", noise_sigma="{{ params.noise_sigma }}",
        **(calibration_arguments() if enactment else {}),
    )
    evaluation = EvaluatePlanOperator(task_id="evaluate_plan", allocation=allocation.output)
    simulation = simulate_plan(allocation.output, evaluation.output)
    publication = publish_plan.override(outlets=[plan_asset(scenario)])(allocation.output, evaluation.output)
    simulation >> publication
    recorded = record.override(trigger_rule="none_failed")(allocation.output, evaluation.output, publication)
    if enactment:
        enactment_steps(scenario, allocation.output, evaluation.output) >> recorded

"""The enactment part of the workflow DAGs (docs/enactment.md): its trigger-form Params and the
tasks that run a verified plan's steps on the nodes it chose and observe what happened.

Like ``allocation_workflow``, only the standard library and ``airflow.sdk`` at module level; the
tasks import ``apportion.operators.enactment`` when they run.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, get_current_context, task

ENACT_CHOICES = ("plan only", "plan and run")
CALIBRATION_CHOICES = ("use when enacting", "use always", "ignore")


def enactment_params(*, unit: str, scenario: str, default_units: int = 3) -> dict[str, Param]:
    """Whether a run also enacts its plan (docs/enactment.md), how many units and at what scale."""
    from apportion.operators.steps import DEFAULT_SCALE

    return {
        "enact": Param(
            ENACT_CHOICES[0], type="string", enum=list(ENACT_CHOICES), title="Enact the plan", section="Enactment",
            description="'plan only' plans as before; 'plan and run' then runs the workflow's own steps for the "
                        f"first {unit} as Airflow task instances, each in the pool of the node the plan gave it "
                        "(about a second of Airflow overhead per step instance).",
        ),
        "enact_units": Param(
            default_units, type="integer", minimum=1, maximum=50, title=f"{unit.capitalize()} to enact",
            section="Enactment",
            description=f"How many of the workload's {unit} 'plan and run' enacts (1-50; the first ones).",
        ),
        "enact_scale": Param(
            DEFAULT_SCALE[scenario], type="number", exclusiveMinimum=0, maximum=1000, title="Stand-in scale",
            section="Enactment",
            description="Stand-in work items per declared GFLOP of a step: its real work is proportional to its "
                        "declared size; the default keeps a step to seconds here.",
        ),
        "calibration": Param(
            CALIBRATION_CHOICES[0], type="string", enum=list(CALIBRATION_CHOICES), title="Calibration",
            section="Enactment",
            description="Plan with the speeds and overheads learned from earlier enactments of this scenario and "
                        "cluster (docs/calibration.md): each node's own where its steps ran, the pooled ones "
                        "elsewhere, at the stand-in scale. "
                        "'use when enacting' (a run that enacts predicts its steps' durations here), 'use always', "
                        "'ignore' (the declared speeds). Every enactment updates the calibration either way.",
        ),
    }


@task(task_id="prepare_enactment")
def prepare_enactment(allocation: dict, evaluation: dict, scenario: str) -> list:
    """Give each step instance of the enacted units its node, pool and queue from the verified
    plan; checks every node has a pool before any step runs. Returns the units' assignments
    (what ``enact`` expands over) and pushes the placement record the policy reads when the
    steps expand (XCom ``apportion_enactment``). 'plan only': nothing to enact."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.enactment import prepare_enactment as prepare
    from apportion.operators.placement import ENACTMENT_XCOM

    context = get_current_context()
    params = context["params"]
    units = params["enact_units"] if params.get("enact") == ENACT_CHOICES[1] else 0
    with fail_on_bad_input("prepare_enactment"):
        prepared = prepare(allocation, scenario=scenario, units=units, scale=params["enact_scale"],
                           seed=params["seed"])
    if prepared["placement"] is not None:
        context["ti"].xcom_push(key=ENACTMENT_XCOM, value=prepared["placement"])
    return prepared["assignments"]


@task(task_id="watch_enactment")
def watch_enactment(allocation: dict, assignments: list) -> dict:
    """Beside the enacted steps, on the CeleryExecutor: when a node's worker is lost, or its
    queue backs up, re-plan the steps not yet run and route them again (the steps' own
    executor reads the record). Elsewhere every node is a pool here: nothing to watch."""
    from airflow.sdk.exceptions import AirflowSkipException

    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.enactment import GROUP
    from apportion.operators.replanning import watch_in_airflow

    if not assignments:
        raise AirflowSkipException("plan only: no step enacted, nothing to watch")
    context = get_current_context()
    with fail_on_bad_input("watch_enactment"):
        return watch_in_airflow(allocation, assignments, context, group=GROUP, seed=context["params"]["seed"])


def run_step(assignment: dict, step: str, inputs: dict) -> dict:
    """Run one step of one enacted unit (its stand-in), refusing to run off its node; waits
    for its inputs from other units (polling while they run, deferred while they have not started)."""
    from airflow.sdk.exceptions import AirflowFailException

    from apportion.operators.enactment import PlacementError
    from apportion.operators.enactment import run_step as run

    try:
        return run(assignment, step, inputs, get_current_context())
    except PlacementError as error:
        raise AirflowFailException(str(error)) from error


@task(task_id="observe_enactment")
def observe_enactment(allocation: dict, assignments: list, results: dict, watched: dict) -> dict:
    """Compare each enacted step's realised start, end, pool and host with the plan's
    predictions; log them, and the re-plans made meanwhile, to the DAG run's MLflow run."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.enactment import observe_enactment as observe

    with fail_on_bad_input("observe_enactment"):
        return observe(allocation, assignments, [r for step in results.values() for r in _as_list(step)],
                       replans=watched["replans"], context=get_current_context())


def _as_list(results) -> list:
    """A mapped step's results: one result (a dict) when a single unit was enacted, else a sequence."""
    return [results] if isinstance(results, dict) else list(results)


@task(task_id="calibrate")
def calibrate(allocation: dict, observation: dict, scenario: str) -> dict:
    """Merge the enacted steps' observations into the scenario's calibration file (once per DAG
    run, under a lock) and log it to the DAG run's MLflow run (once); the next run plans with it."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.calibrating import calibrate_enactment

    with fail_on_bad_input("calibrate"):
        return calibrate_enactment(allocation, observation, scenario=scenario, context=get_current_context())


def calibration_arguments() -> dict[str, str]:
    """``AllocationOperator``'s ``calibration`` (a boolean: the scenario's file, per the
    ``calibration`` Param and whether the run enacts) and ``calibration_scale`` (``enact_scale``)."""
    use = (f"params.calibration == '{CALIBRATION_CHOICES[1]}' or (params.calibration == '{CALIBRATION_CHOICES[0]}' "
           f"and params.enact == '{ENACT_CHOICES[1]}')")
    return {"calibration": f"{{{{ {use} }}}}", "calibration_scale": "{{ params.enact_scale }}"}


def enactment_steps(scenario: str, allocation, evaluation):
    """The enactment part: ``prepare_enactment``, the mapped task group ``enact`` (one map
    index per unit, the workflow's steps inside with their dependencies) with
    ``watch_enactment`` beside it, ``observe_enactment``, ``calibrate``."""
    from airflow.sdk import task_group

    from apportion.operators.enactment import GROUP
    from apportion.operators.step_task import enacted_step
    from apportion.operators.steps import WORKFLOW_STEPS

    # A step whose worker dies is failed by the scheduler (no heartbeat) and retried, on the node
    # a re-plan routes it to; a step waiting for another unit's output is deferred (no try spent).
    step_task = enacted_step(run_step, retries=2, retry_delay=timedelta(seconds=5))
    prepared = prepare_enactment(allocation, evaluation, scenario=scenario)
    results: dict = {}

    @task_group(group_id=GROUP)
    def enact(assignment):
        for step, needs in WORKFLOW_STEPS[scenario].items():
            results[step] = step_task.override(task_id=step)(assignment, step=step,
                                                             inputs={need: results[need] for need in needs})

    enact.expand(assignment=prepared)
    watched = watch_enactment(allocation, prepared)
    return calibrate(allocation, observe_enactment(allocation, prepared, results, watched), scenario=scenario)

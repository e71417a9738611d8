"""The enactment part of the workflow DAGs (docs/enactment.md): its trigger-form Params and the
tasks that run a verified plan's steps on the nodes it chose and observe what happened.

Like ``allocation_workflow``, only the standard library and ``airflow.sdk`` at module level; the
tasks import ``apportion.operators.enactment`` when they run.
"""

from __future__ import annotations

from airflow.sdk import Param, get_current_context, task

ENACT_CHOICES = ("plan only", "plan and run")


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


@task
def run_step(assignment: dict, step: str, inputs: dict) -> dict:
    """Run one step of one enacted unit (its stand-in), refusing to run off its node."""
    from airflow.sdk.exceptions import AirflowFailException

    from apportion.operators.enactment import PlacementError
    from apportion.operators.enactment import run_step as run

    try:
        return run(assignment, step, inputs, get_current_context())
    except PlacementError as error:
        raise AirflowFailException(str(error)) from error


@task(task_id="observe_enactment")
def observe_enactment(allocation: dict, assignments: list, results: dict) -> dict:
    """Compare each enacted step's realised start, end, pool and host with the plan's
    predictions; log them to the DAG run's MLflow run."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.enactment import observe_enactment as observe

    with fail_on_bad_input("observe_enactment"):
        return observe(allocation, assignments, [r for step in results.values() for r in step],
                       context=get_current_context())


def enactment_steps(scenario: str, allocation, evaluation):
    """The enactment part: ``prepare_enactment``, the mapped task group ``enact`` (one map
    index per unit, the workflow's steps inside with their dependencies), ``observe_enactment``."""
    from airflow.sdk import task_group

    from apportion.operators.enactment import GROUP
    from apportion.operators.steps import WORKFLOW_STEPS

    prepared = prepare_enactment(allocation, evaluation, scenario=scenario)
    results: dict = {}

    @task_group(group_id=GROUP)
    def enact(assignment):
        for step, needs in WORKFLOW_STEPS[scenario].items():
            results[step] = run_step.override(task_id=step)(assignment, step=step,
                                                            inputs={need: results[need] for need in needs})

    enact.expand(assignment=prepared)
    return observe_enactment(allocation, prepared, results)

"""
### Failure drill: a node fails mid-plan, the plan is revised

Triggered by hand. Plans one scenario instance (the `scenario`, `size`, `nodes` and `seed`
Params: `size` counts cases, regions or streams), then makes a node fail part-way through the
plan and re-plans what is left: tasks that finished, and tasks running on the other nodes, keep
their node and times; the task running on the failed node is lost and planned again with
everything not yet started, starting from the old Pareto front.

* `fail_node`: the node id, or `busiest` (the node with the most work in the plan whose loss
  leaves every remaining task somewhere to run).
* `fail_at`: when, as a fraction of the planned makespan (0-1).
* `repair`: seconds until the node is back; empty: it never comes back.
* `migration_objective`: also minimise how many tasks move off the node the plan gave them.

**Steps** (Graph view): `build_workload` and `snapshot_cluster` write the instance;
`allocate` plans it; `evaluate_plan` re-computes the plan independently; `inject_failure`
fails the node and re-plans (`core.replan.replan`); `evaluate_replan` re-computes the revised
plan independently; `record` closes the MLflow run.

**Results**: MLflow experiment `failure_drill`, one run per DAG run. The plan's own metrics
(`plan/makespan`, `plan/utilization`, `plan/imbalance`, ...) as in the workflow DAGs, and for
the drill: `drill/before/makespan` and `drill/after/makespan` (s, lower is better),
`drill/before/deadline_misses` and `drill/after/deadline_misses`, `drill/lost_tasks` (running on
the node when it failed), `drill/displaced_tasks` (planned on it and not finished),
`drill/moved_tasks` (moved although their node still works), `drill/finished_tasks`,
`drill/failure_time` (s) and `drill/seconds`. Artifacts under `replan/`:
gantt_before.png and gantt_after.png (the failed node shaded from the failure on, the failure
time a dashed line), the revised plan.json, schedule.csv and pareto.csv, drill.json.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, get_current_context, task
from allocation_workflow import (
    DEFAULT_ARGS,
    START_DATE,
    chosen_scenario_params,
    migration_objective_param,
    operator_classes,
    optimiser_arguments,
    optimiser_params,
    record,
    scenario_inputs,
)

DAG_ID = "failure_drill"


@task(task_id="inject_failure")
def inject_failure(allocation: dict, evaluation: dict) -> dict:
    """Fail the node at the chosen time and re-plan the rest; log both Gantt charts and the
    metrics before and after to the run's MLflow run. Takes ``evaluation`` so it drills only a
    verified plan."""
    from apportion.operators.allocation import fail_on_bad_input
    from apportion.operators.drill import replan_after_failure

    context = get_current_context()
    params = context["params"]
    with fail_on_bad_input("inject_failure"):
        return replan_after_failure(allocation, fail_node=params["fail_node"], fail_at=params["fail_at"],
                                    repair=params["repair"], migration_objective=params["migration_objective"],
                                    context=context)


with DAG(
    dag_id=DAG_ID,
    description="Fail a node part-way through a plan and show the re-plan: Gantt charts and metrics before/after.",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["apportion", "allocation", "replanning"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        **chosen_scenario_params(default_size=30, purpose="the drill runs on"),
        **optimiser_params(),
        "fail_node": Param(
            "busiest", type="string", minLength=1, title="Node that fails", section="Failure",
            description="A node id (e.g. hospital/a6000-0), or 'busiest': the node with the most work in the plan "
                        "that the remaining work can do without.",
        ),
        "fail_at": Param(
            0.5, type="number", minimum=0, maximum=1, title="Failure time (share of the makespan)", section="Failure",
            description="When the node fails, as a fraction of the planned makespan (0-1).",
        ),
        "repair": Param(
            None, type=["null", "number"], minimum=0, title="Repair time (s)", section="Failure",
            description="Seconds until the node is back; empty: it never comes back.",
        ),
        "migration_objective": migration_objective_param(
            "Also minimise the tasks moved off the node the plan gave them (the 'migrations' objective).",
            section="Failure"),
    },
) as dag:
    AllocationOperator, EvaluatePlanOperator = operator_classes()
    allocation = AllocationOperator(task_id="allocate", **scenario_inputs(), **optimiser_arguments())
    evaluation = EvaluatePlanOperator(task_id="evaluate_plan", allocation=allocation.output)
    revision = inject_failure(allocation.output, evaluation.output)
    revision_check = EvaluatePlanOperator(task_id="evaluate_replan", allocation=revision,
                                          metric_prefix="drill/evaluation/")
    record(allocation.output, revision_check.output)

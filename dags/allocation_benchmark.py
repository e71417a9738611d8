"""
### Allocation benchmark: every algorithm on one scenario, side by side

Triggered by hand. Builds one scenario instance (the `scenario`, `size`, `nodes` and `seed`
Params: `size` counts cases, regions or streams) and runs each algorithm in `algorithms` on it
as one mapped `allocate` task, with the same budget and objectives, so their numbers compare.
The algorithms run one at a time, so they do not compete with each other for the CPU and
their `search/seconds` compare.

**Steps** (Graph view): `build_workload` and `snapshot_cluster` write the shared instance;
`algorithms_to_run` lists the algorithms; `allocate` (mapped, one instance per algorithm)
optimises; `evaluate_plan` (mapped) re-computes each chosen plan independently;
`compare_algorithms` writes comparison.csv (best makespan first) to
`<storage root>/published/allocation_benchmark/comparison.csv` and updates the Asset
`apportion://benchmarks/allocation_benchmark`; `record` closes the MLflow run.

**Results**: MLflow experiment `allocation_benchmark`: one parent run per DAG run (named after
the DAG run id; its tags `apportion.best_algorithm` and `apportion.best_plan_id` name the
winner by makespan, its artifact comparison.csv holds the table) with one child run per
algorithm (named after it). Select the child runs and press *Compare* to see them side by side.
Each child has `plan/makespan` (s: lower is better), `plan/utilization` (higher is better), `plan/imbalance`
(lower is better), `search/hypervolume` (the front's quality, normalised to the same box for every
algorithm on this instance: higher is better; a one-plan heuristic scores its single plan),
`search/pareto_size`, `search/seconds`, and the same artifacts as a workflow run (plan.json,
schedule.csv, pareto.csv, charts).
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, get_current_context, task
from allocation_workflow import (
    DEFAULT_ARGS,
    START_DATE,
    algorithms_param,
    chosen_scenario_params,
    operator_classes,
    optimiser_arguments,
    optimiser_params,
    record,
    scenario_inputs,
)

DAG_ID = "allocation_benchmark"
COMPARISON_ASSET = Asset(uri=f"apportion://benchmarks/{DAG_ID}", name=f"{DAG_ID}_comparison",
                         group="apportion-benchmarks")
COMPARISON_COLUMNS = ("algorithm", "makespan", "utilization", "imbalance", "hypervolume", "pareto_size",
                      "optimiser_seconds", "verified", "plan_id", "mlflow_run_id")


@task
def algorithms_to_run() -> list[str]:
    """The ``algorithms`` Param, as the list ``allocate`` is mapped over."""
    return list(get_current_context()["params"]["algorithms"])


@task(task_id="compare_algorithms", outlets=[COMPARISON_ASSET])
def compare_algorithms(allocations, evaluations) -> dict:
    """One row per algorithm, best makespan first: comparison.csv in the task's stored folder,
    at the published URI and on the parent MLflow run."""
    from apportion.core.outputs import write_csv_table
    from apportion.operators.hooks import ApportionMlflowHook
    from apportion.operators.storage import published_store, put_file, task_folders

    context = get_current_context()
    allocations, evaluations = list(allocations), list(evaluations)
    rows = [
        {**{c: a.get(c) for c in COMPARISON_COLUMNS}, "verified": e["verified"]}
        for a, e in zip(allocations, evaluations, strict=True)
    ]
    rows.sort(key=lambda row: (row["makespan"], row["algorithm"]))
    folder, store = task_folders(context=context)
    path = write_csv_table(folder / "comparison.csv", COMPARISON_COLUMNS, rows)
    put_file(path, store / path.name)
    published = put_file(path, published_store(DAG_ID) / path.name)

    parent = allocations[0]
    with ApportionMlflowHook(tracking_uri=parent["tracking_uri"]).upload_from(str(store)) as tracker:
        tracker.client.log_artifact(parent["mlflow_parent_run_id"], str(path))
    context["outlet_events"][COMPARISON_ASSET].extra = {
        "uri": published, "best_algorithm": rows[0]["algorithm"], "best_makespan": rows[0]["makespan"],
        "mlflow_run_id": parent["mlflow_parent_run_id"],
    }
    return {"uri": published, "best_algorithm": rows[0]["algorithm"],
            "algorithms": [row["algorithm"] for row in rows]}


with DAG(
    dag_id=DAG_ID,
    description="Run every allocation algorithm on one scenario instance and compare them in MLflow.",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["apportion", "allocation", "benchmark"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        **chosen_scenario_params(default_size=50, purpose="the algorithms compete on"),
        "algorithms": algorithms_param(many=True),
        **optimiser_params(with_algorithm=False),
    },
) as dag:
    AllocationOperator, EvaluatePlanOperator = operator_classes()
    allocations = AllocationOperator.partial(
        task_id="allocate", nested=True, **scenario_inputs(),
        **optimiser_arguments(algorithm=None),
        # One algorithm at a time, so search/seconds compare fairly on a small machine.
        max_active_tis_per_dagrun=1,
        map_index_template="{{ task.algorithm }}",  # the Grid view names each mapped task by its algorithm
    ).expand(algorithm=algorithms_to_run())
    evaluations = EvaluatePlanOperator.partial(
        task_id="evaluate_plan", map_index_template="{{ task.allocation['algorithm'] }}",
    ).expand(allocation=allocations.output)
    comparison = compare_algorithms(allocations.output, evaluations.output)
    record(allocations.output, publication=comparison)

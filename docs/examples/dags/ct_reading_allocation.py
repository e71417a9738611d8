"""Allocate the hospital's CT-reading workload on its cluster every hour, and use the plan.

A user's own DAG (docs/your-workflow.md): the workload and cluster are spec files (here the
ones in docs/examples/hospital/, found relative to this file; any path the workers can read
will do), AllocationOperator finds the Pareto front and picks a plan, EvaluatePlanOperator
re-checks it, and a plain task reads plan.json. Only airflow.sdk and the standard library
load while the file is parsed: the operators import numpy, numba, pymoo and MLflow inside
execute().
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import DAG, Param, task

from apportion.operators import AllocationOperator, EvaluatePlanOperator

SPECS = Path(__file__).resolve().parent.parent / "hospital"

with DAG(
    dag_id="ct_reading_allocation",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["apportion", "hospital"],
    params={
        "workload": Param(str(SPECS / "workload.yaml"), type="string", title="Workload spec"),
        "cluster": Param(str(SPECS / "cluster.yaml"), type="string", title="Cluster spec"),
        "select": Param("compromise", type="string", title="Selection policy",
                        description="compromise, knee, weights:a,b,c (one per objective) or sla:SECONDS"),
    },
) as dag:
    allocation = AllocationOperator(
        task_id="allocate",
        workload="{{ params.workload }}",
        cluster="{{ params.cluster }}",
        objectives=["mean_response", "utilization", "imbalance"],
        select="{{ params.select }}",
        population=60,
        generations=80,
        seed=0,
        experiment_name="ct-reading",
    )
    evaluation = EvaluatePlanOperator(task_id="evaluate_plan", allocation=allocation.output)

    @task
    def dispatch(allocation: dict, evaluation: dict) -> dict:
        """Read the verified plan and say which node runs each step (hand it to your
        scheduler, set pools or queues, or notify the team)."""
        import json

        from airflow.sdk import ObjectStoragePath

        plan = json.loads(ObjectStoragePath(allocation["plan_uri"]).read_text())
        placement = {row["task"]: row["node"] for row in plan["tasks"]}
        metrics = plan["metrics"]
        print(f"plan {allocation['plan_id']}: mean response {metrics['mean_response']:.1f} s, "
              f"utilization {metrics['utilization']:.3f}; MLflow run {allocation['mlflow_run_id']}")
        return placement

    dispatch(allocation.output, evaluation.output)

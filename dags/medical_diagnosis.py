"""
### Medical diagnosis: where each step of every patient case runs

Every hour this DAG plans the hospital's diagnostic workload: per patient case, CT
preprocessing, 3D segmentation, a lesion classifier, clinical-notes NLP and a lab model (in the
hospital zone, where the data must stay), then fusion and an LLM report (anywhere). Urgent
cases carry deadlines.

**Steps** (Graph view): `build_workload` and `snapshot_cluster` write workload.json and
cluster.json; `allocate` searches plans with the chosen algorithm and picks one with the
selection policy, starting from the front the previous run published (`warm_start`);
`evaluate_plan` re-computes the chosen plan independently and fails on any mismatch;
`simulate_plan` enacts it `samples` times under noise (`noise_sigma`, node failures with
`mtbf`); `publish_plan` copies the verified plan (and its front, for the next run) to
`$AIRFLOW_HOME/apportion/published/medical_diagnosis/plan.json` and updates the Asset
`apportion://plans/medical_diagnosis` (schedule other DAGs on it); `record` closes the MLflow run.

**Results**: MLflow experiment `medical_diagnosis`, one run per DAG run (named after the DAG
run id; the `allocate` task's *MLflow run* link opens it when the tracking server has a web UI).
Metrics: `makespan` (s until the last case finishes: lower is better), `utilization` (busy
share of the nodes used: higher is better), `imbalance` (spread of busy time over nodes: lower
is better), `mean_response`/`p95_response` (case turnaround, s), `deadline_misses`,
`hypervolume` (quality of the whole Pareto front, comparable between algorithms on one
instance), `pareto_size`, `optimiser_seconds`; `convergence/*` per generation. Artifacts:
plan.json (node and start/end per task), schedule.csv, pareto.csv (the front; `chosen` = 1
marks the picked plan), pareto.html/png and gantt.png, evaluation.json.

**From run to run**: the param `warm_start` (and `warm_start_source`, the MLflow run started
from), `moved_tasks`/`moved_share` (tasks placed on another node than last time) and
`delta/makespan`, `delta/utilization`... (this plan minus the previous one). **Predicted versus
realised**: the metrics above are the plan's predictions; `realised/<metric>_mean`, `_p50`,
`_p95`... come from the simulation, with simulation.png (histograms, predicted value marked).
**Robust planning**: `robust_scenarios` K > 0 plans against the `noise_sigma` noise (plans
scored over K sampled scenarios, the pick no worse under noise than a nominal run's);
`robust/makespan` (p95 under noise) sits beside `robust/nominal_choice_makespan`, what the
nominal pick would give.
"""

from __future__ import annotations

from airflow.sdk import DAG

from allocation_workflow import (
    DEFAULT_ARGS, START_DATE, optimiser_params, replanning_params, scenario_params, simulation_params, workflow_steps,
)

SCENARIO = "medical_diagnosis"

with DAG(
    dag_id=SCENARIO,
    description="Allocate the hospital's diagnostic pipeline (per patient case) to its nodes, hourly.",
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["apportion", "allocation", "medical"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    params={
        **scenario_params(unit="cases", what="patient cases", default_size=100, max_size=2000, default_nodes=16),
        **optimiser_params(),
        **replanning_params(),
        **simulation_params(),
    },
) as dag:
    workflow_steps(SCENARIO, size_param="cases")

"""The medical_diagnosis DAG (where each step of every patient case runs).

Its form, schedule and docs; the steps and the shared doc paragraphs are in allocation_workflow.py.
"""

from __future__ import annotations

import allocation_workflow as workflow
import enactment_workflow as enactment
from airflow.sdk import DAG

SCENARIO = "medical_diagnosis"

INTRO = """
### Medical diagnosis: where each step of every patient case runs

Every hour this DAG plans the hospital's diagnostic workload: per patient case, CT
preprocessing, 3D segmentation, a lesion classifier, clinical-notes NLP and a lab model (in the
hospital zone, where the data must stay), then fusion and an LLM report (anywhere). Urgent
cases carry deadlines.
"""

RESULTS = """
**Results**: MLflow experiment `medical_diagnosis`, one run per DAG run (named after the DAG
run id; the `allocate` task's *MLflow run* link opens it when the tracking server has a web UI).
Metrics: `plan/makespan` (s until the last case finishes: lower is better), `plan/utilization` (busy
share of the nodes used: higher is better), `plan/imbalance` (spread of busy time over nodes: lower
is better), `plan/mean_response`/`plan/p95_response` (case turnaround, s), `plan/deadline_misses`,
`search/hypervolume` (quality of the whole Pareto front, comparable between algorithms on one
instance), `search/pareto_size`, `search/seconds`; `convergence/*` per generation. Artifacts:
plan.json (node and start/end per task), schedule.csv, pareto.csv (the front; `chosen` = 1
marks the picked plan), pareto.html/png and gantt.png, evaluation.json.
"""

with DAG(
    dag_id=SCENARIO,
    description="Allocate the hospital's diagnostic pipeline (per patient case) to its nodes, hourly.",
    schedule="@hourly",
    start_date=workflow.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=workflow.DEFAULT_ARGS,
    tags=["apportion", "allocation", "medical"],
    doc_md=workflow.workflow_doc(SCENARIO, INTRO, RESULTS),
    render_template_as_native_obj=True,
    params={
        **workflow.scenario_params(unit="cases", what="patient cases", default_size=100, max_size=2000, default_nodes=16),
        **workflow.optimiser_params(),
        **workflow.replanning_params(),
        **workflow.simulation_params(),
        **enactment.enactment_params(unit="cases", scenario=SCENARIO),
    },
) as dag:
    workflow.workflow_steps(SCENARIO, size_param="cases", enactment=True)

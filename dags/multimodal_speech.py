"""The multimodal_speech DAG (placing a day's audio-video understanding pipeline).

Its form, schedule and docs; the steps and the shared doc paragraphs are in allocation_workflow.py.
"""

from __future__ import annotations

import allocation_workflow as workflow
import enactment_workflow as enactment
from airflow.sdk import DAG

SCENARIO = "multimodal_speech"

INTRO = """
### Multimodal speech: placing a day's audio-video understanding pipeline

Every day this DAG plans the speech workload: per audio-video stream, capture (decode, face
tracking, mouth crops) on an edge box of the stream's site, then audio and video front ends,
Whisper-class speech recognition, AV-HuBERT-class lip reading, audio-visual fusion and
BERT-class language understanding, anywhere on the site boxes or the cloud's GPU and CPU
servers. Streams arrive over five minutes and each must be understood within its own duration.
"""

RESULTS = """
**Results**: MLflow experiment `multimodal_speech`, one run per DAG run (named after the DAG
run id). Metrics: `plan/makespan` (s until the last stream is understood: lower is better),
`plan/deadline_misses` (streams and tasks that fall behind real time),
`plan/utilization` (busy share of the nodes used: higher is better), `plan/imbalance` (spread of busy
time over nodes: lower is better), `plan/mean_response`/`plan/p95_response` (per-stream turnaround, s),
`plan/energy` (J) and `plan/cost`, `search/hypervolume` (quality of the whole Pareto front), `search/pareto_size`,
`search/seconds`; `convergence/*` per generation. Artifacts: plan.json, schedule.csv,
pareto.csv (`chosen` = 1 marks the picked plan), pareto.html/png, gantt.png, evaluation.json.
"""

with DAG(
    dag_id=SCENARIO,
    description="Allocate the audio-video speech understanding pipeline (per stream) to its nodes, daily.",
    schedule="@daily",
    start_date=workflow.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=workflow.DEFAULT_ARGS,
    tags=["apportion", "allocation", "speech"],
    doc_md=workflow.workflow_doc(SCENARIO, INTRO, RESULTS),
    render_template_as_native_obj=True,
    params={
        **workflow.scenario_params(unit="streams", what="audio-video streams", default_size=50, max_size=2000,
                          default_nodes=16),
        **workflow.optimiser_params(),
        **workflow.replanning_params(),
        **workflow.simulation_params(),
        **enactment.enactment_params(unit="streams", scenario=SCENARIO),
    },
) as dag:
    workflow.workflow_steps(SCENARIO, size_param="streams", enactment=True)

"""The traffic_prediction DAG (placing a city's 5-minute forecasting cycle, every 15 minutes).

Its form, schedule and docs; the steps and the shared doc paragraphs are in allocation_workflow.py.
"""

from __future__ import annotations

import allocation_workflow as workflow
import enactment_workflow as enactment
from airflow.sdk import DAG, Param

SCENARIO = "traffic_prediction"

INTRO = """
### Traffic prediction: placing a city's 5-minute forecasting cycle, every 15 minutes

Every 15 minutes this DAG plans one traffic-management cycle for a grid of city regions: per
region, sensor ingest and camera incident detection (on the district's edge box only), a
graph-network traffic forecast that also reads the neighbouring regions, route planning and
signal control. The load follows the time of day: the run's logical date, converted to the
`city_timezone` Param, sets how busy the roads are (morning and evening rush hours on weekdays
carry up to 2x the work of an ordinary hour, nights a quarter).
"""

RESULTS = """
**Results**: MLflow experiment `traffic_prediction`, one run per DAG run (named after the DAG
run id). Compare runs over a day to see the rush hours: the `scenario/logical_date` param
records the local time used. Metrics: `plan/makespan` (s until the cycle's last region finishes;
it must stay under the 300 s cycle: `plan/deadline_misses` counts regions and tasks that do not),
`plan/utilization` (busy share of the nodes used: higher is better), `plan/imbalance` (spread of busy
time over nodes: lower is better), `search/hypervolume` (quality of the whole Pareto front),
`search/pareto_size`, `search/seconds`; `convergence/*` per generation. Artifacts: plan.json,
schedule.csv, pareto.csv (`chosen` = 1 marks the picked plan), pareto.html/png, gantt.png,
evaluation.json.
"""

with DAG(
    dag_id=SCENARIO,
    description="Allocate a city's traffic forecasting cycle to edge and cloud nodes, every 15 minutes.",
    schedule="*/15 * * * *",
    start_date=workflow.START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=workflow.DEFAULT_ARGS,
    tags=["apportion", "allocation", "traffic"],
    doc_md=workflow.workflow_doc(SCENARIO, INTRO, RESULTS),
    render_template_as_native_obj=True,
    params={
        **workflow.scenario_params(unit="regions", what="city regions (5 tasks each)", default_size=36, max_size=2000,
                          default_nodes=16),
        "city_timezone": Param(
            "UTC", type="string", pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$", title="City time zone",
            section="Scenario",
            description="IANA time zone of the city (e.g. Europe/Berlin): the logical date is read in it "
                        "to find the rush hours.",
        ),
        **workflow.optimiser_params(),
        **workflow.replanning_params(),
        **workflow.simulation_params(),
        **enactment.enactment_params(unit="regions", scenario=SCENARIO),
    },
) as dag:
    workflow.workflow_steps(SCENARIO, size_param="regions", enactment=True)

"""The dags/ folder as Airflow's DAG processor sees it: loads cleanly, fast, and light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

WORKFLOWS = ("medical_diagnosis", "traffic_prediction", "multimodal_speech")
DAG_IDS = (*WORKFLOWS, "allocation_benchmark", "failure_drill", "island_search")
SCHEDULES = {
    "medical_diagnosis": "@hourly",
    "traffic_prediction": "*/15 * * * *",
    "multimodal_speech": "@daily",
    "allocation_benchmark": None,
    "failure_drill": None,
    "island_search": None,
}
STEPS = ("build_workload", "snapshot_cluster", "allocate", "evaluate_plan", "simulate_plan", "publish_plan", "record")
DRILL_STEPS = ("build_workload", "snapshot_cluster", "allocate", "evaluate_plan", "inject_failure", "evaluate_replan",
               "record")
# Imported by the tasks when they run, never while a DAG file is parsed.
HEAVY_MODULES = ("numpy", "numba", "pymoo", "mlflow", "pandas", "matplotlib", "plotly", "scipy")
# What a DAG file may load of the core while parsed: the standard-library-only names and defaults.
# The standard-library-only core modules a DAG file may load while it parses (its form's
# choices and defaults, and the packages' lazy exports).
PARSE_TIME_CORE = {"apportion.core", "apportion.core.defaults", "apportion.core.lazy", "apportion.core.algorithms",
                   "apportion.core.algorithms.registry"}


def test_no_import_errors_and_the_expected_dags(apportion_dagbag):
    assert apportion_dagbag.import_errors == {}
    assert sorted(apportion_dagbag.dags) == sorted(DAG_IDS)
    assert {stat.file: stat.dag_num for stat in apportion_dagbag.dagbag_stats} == {
        **{f"{dag_id}.py": 1 for dag_id in DAG_IDS}, "allocation_workflow.py": 0, "enactment_workflow.py": 0,
    }


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_settings(apportion_dagbag, dag_id):
    dag = apportion_dagbag.dags[dag_id]
    assert {"apportion", "allocation"} <= set(dag.tags)
    assert dag.schedule == SCHEDULES[dag_id]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "MLflow" in dag.doc_md and "makespan" in dag.doc_md
    for task in dag.tasks:
        assert task.retries == 2, task.task_id
        assert timedelta(0) < task.retry_delay <= timedelta(minutes=5), task.task_id


# The workflows that can enact their plan (docs/enactment.md) and the tasks that adds.
ENACTED = WORKFLOWS


def enactment_tasks(dag_id):
    from apportion.operators.steps import WORKFLOW_STEPS

    if dag_id not in ENACTED:
        return ()
    return ("prepare_enactment", *(f"enact.{step}" for step in WORKFLOW_STEPS[dag_id]), "watch_enactment",
            "observe_enactment", "calibrate")


@pytest.mark.parametrize("dag_id", WORKFLOWS)
def test_workflow_graph_shows_the_steps(apportion_dagbag, dag_id):
    dag = apportion_dagbag.dags[dag_id]
    assert sorted(dag.task_ids) == sorted((*STEPS, *enactment_tasks(dag_id)))
    upstream = {task.task_id: task.upstream_task_ids for task in dag.tasks}
    assert upstream["allocate"] == {"build_workload", "snapshot_cluster"}
    assert upstream["evaluate_plan"] == {"allocate"}
    assert upstream["simulate_plan"] == {"allocate", "evaluate_plan"}
    assert {"allocate", "evaluate_plan", "simulate_plan"} <= upstream["publish_plan"]
    assert "publish_plan" in upstream["record"]
    outlets = {task.task_id: [asset.uri for asset in task.outlets] for task in dag.tasks if task.outlets}
    assert outlets == {"publish_plan": [f"apportion://plans/{dag_id}"]}


@pytest.mark.parametrize("dag_id", ENACTED)
def test_enactment_maps_the_workflow_steps_over_the_units(apportion_dagbag, dag_id):
    """Each step of the workflow is a task of the mapped group ``enact``, after the steps it takes
    inputs from; the plan is enacted only once verified, and observed before the run is recorded."""
    from apportion.operators.steps import WORKFLOW_STEPS

    dag = apportion_dagbag.dags[dag_id]
    tasks = {task.task_id: task for task in dag.tasks}
    assert tasks["prepare_enactment"].upstream_task_ids == {"allocate", "evaluate_plan"}
    for step, needs in WORKFLOW_STEPS[dag_id].items():
        task = tasks[f"enact.{step}"]
        assert type(task.task_group).__name__ == "MappedTaskGroup", step
        assert task.upstream_task_ids == {"prepare_enactment", *(f"enact.{need}" for need in needs)}, step
    assert tasks["watch_enactment"].upstream_task_ids == {"allocate", "prepare_enactment"}  # beside the steps
    assert {f"enact.{step}" for step in WORKFLOW_STEPS[dag_id]} | {"watch_enactment"} <= tasks[
        "observe_enactment"].upstream_task_ids
    assert all(tasks[f"enact.{step}"].retries >= 1 for step in WORKFLOW_STEPS[dag_id])  # a lost step runs again
    assert tasks["calibrate"].upstream_task_ids == {"allocate", "observe_enactment"}
    assert "calibrate" in tasks["record"].upstream_task_ids
    assert tasks["record"].trigger_rule == "none_failed"  # a plan-only run skips the enactment, not the record


def test_benchmark_maps_allocate_over_the_algorithms(apportion_dagbag):
    dag = apportion_dagbag.dags["allocation_benchmark"]
    tasks = {task.task_id: task for task in dag.tasks}
    assert tasks["allocate"].is_mapped and tasks["evaluate_plan"].is_mapped
    assert tasks["allocate"].upstream_task_ids == {"build_workload", "snapshot_cluster", "algorithms_to_run"}
    assert tasks["evaluate_plan"].upstream_task_ids == {"allocate"}
    assert [a.uri for a in tasks["compare_algorithms"].outlets] == ["apportion://benchmarks/allocation_benchmark"]
    assert "compare_algorithms" in tasks["record"].upstream_task_ids


def test_failure_drill_replans_after_the_first_plan_is_verified(apportion_dagbag):
    dag = apportion_dagbag.dags["failure_drill"]
    assert sorted(dag.task_ids) == sorted(DRILL_STEPS)
    upstream = {task.task_id: task.upstream_task_ids for task in dag.tasks}
    assert upstream["inject_failure"] == {"allocate", "evaluate_plan"}
    assert upstream["evaluate_replan"] == {"inject_failure"}
    assert "evaluate_replan" in upstream["record"]
    assert not any(task.outlets for task in dag.tasks)  # a drill publishes nothing


def test_workflow_dags_are_scheduled_on_by_plan_assets(apportion_dagbag):
    """Another DAG can wait for a published plan: the Assets are distinct per workflow."""
    uris = [t.outlets[0].uri for dag_id in WORKFLOWS for t in apportion_dagbag.dags[dag_id].tasks if t.outlets]
    assert sorted(uris) == sorted(f"apportion://plans/{dag_id}" for dag_id in WORKFLOWS)


PARSE_PROBE = """
import importlib.util, json, os, sys, time
from datetime import datetime

from airflow.sdk import DAG, Asset, BaseOperator, Param, task

# Airflow's own one-time imports (task decorator, cron timetable, assets) are already loaded in
# a DAG processor that has parsed any file; load them here so the children time our files.
with DAG("warm_up", schedule="*/15 * * * *", start_date=datetime(2025, 1, 1), params={"n": Param(1)}):
    task(task_id="step", outlets=[Asset("warm://up")])(lambda: None)() >> BaseOperator(task_id="op")
dags_folder, heavy_names, paths = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3:]
sys.path.append(dags_folder)
results = {}
for path in paths:
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        started = time.perf_counter()
        spec = importlib.util.spec_from_file_location("dag_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        seconds = time.perf_counter() - started
        heavy = sorted({name.split(".")[0] for name in sys.modules} & heavy_names)
        core = sorted(name for name in sys.modules if name.startswith("apportion.core"))
        os.write(write_end, json.dumps({"seconds": seconds, "heavy": heavy, "core": core}).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        results[os.path.basename(path)] = json.loads(pipe.read())
    os.wait()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def parse_probe(airflow_dags_folder):
    """Parse each DAG file in a process forked from a fresh interpreter that has Airflow's DAG
    authoring loaded but none of our code, as the DAG processor forks a parser per file;
    report the time and the heavy modules it imported."""
    paths = [str(airflow_dags_folder / f"{dag_id}.py") for dag_id in DAG_IDS]
    done = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(airflow_dags_folder), ",".join(HEAVY_MODULES), *paths],
        capture_output=True, text=True, timeout=180, env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_parses_fast_without_heavy_imports(parse_probe, dag_id, record_property):
    probe = parse_probe[f"{dag_id}.py"]
    record_property("parse_seconds", probe["seconds"])
    print(f"{dag_id}.py parsed in {probe['seconds'] * 1000:.0f} ms (target 200 ms)")
    assert probe["heavy"] == []
    assert set(probe["core"]) <= PARSE_TIME_CORE
    assert "apportion.core.defaults" in probe["core"]  # the form's defaults are the core's

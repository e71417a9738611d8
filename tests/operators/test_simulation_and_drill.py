"""The simulate step (realised metrics beside the predicted ones) and the failure drill's
re-plan (a node fails part-way: finished and running work stays, the rest is planned again)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from apportion.core.errors import SpecError
from apportion.operators.allocating import allocate
from apportion.operators.chosen_plan import evaluate_plan
from apportion.operators.drill import replan_after_failure
from apportion.operators.simulation import simulate_plan
from apportion.operators.tracking import AirflowRef
from tests.operators.conftest import SMALL

# Eight nodes: two of each kind in the hospital, so a hospital node can fail and its work move.
DRILL = {**SMALL, "scenario_params": {"size": 4, "nodes": 8, "seed": 1}}


def ref(dag_id, task_id):
    return AirflowRef(dag_id, "manual__1", task_id, logical_date="2026-01-01T00:00:00+00:00")


@pytest.fixture
def allocation(tracking_uri, dag_id, output_root):
    return allocate(**DRILL, output_root=output_root, ref=ref(dag_id, "allocate"))


def simulate(allocation, dag_id, output_root, **kwargs):
    return simulate_plan(allocation, output_root=output_root, ref=ref(dag_id, "simulate_plan"), **kwargs)


def test_without_noise_the_realised_metrics_are_the_predicted_ones(allocation, dag_id, output_root):
    outcome = simulate(allocation, dag_id, output_root, noise_sigma=0, samples=20)
    report = json.loads(open(f"{outcome['artifact_dir']}/simulation.json").read())
    for name in ("makespan", "mean_response", "p95_response", "utilization"):
        assert report["realised"][name]["mean"] == pytest.approx(report["predicted"][name], rel=1e-12), name
        assert report["realised"][name]["std"] == pytest.approx(0.0, abs=1e-9)


def test_noise_and_failures_spread_the_realised_metrics_and_go_to_the_same_run(allocation, dag_id, output_root,
                                                                               tracking_uri):
    outcome = simulate(allocation, dag_id, output_root, noise_sigma=0.3, mtbf=2000.0, samples=300, seed=4)
    run = MlflowClient(tracking_uri).get_run(allocation["mlflow_run_id"])
    metrics, params = run.data.metrics, run.data.params
    assert metrics["makespan"] == allocation["makespan"]  # the prediction, beside ...
    for stat in ("mean", "std", "p5", "p50", "p95"):
        assert f"realised/makespan_{stat}" in metrics and f"realised/p95_response_{stat}" in metrics
    assert metrics["realised/makespan_std"] > 0
    assert metrics["realised/makespan_p5"] <= metrics["realised/makespan_p50"] <= metrics["realised/makespan_p95"]
    assert metrics["realised/failed_tasks_mean"] > 0  # nodes fail every ~2000 s in a ~3600 s plan
    assert (params["simulation_noise_sigma"], params["simulation_mtbf"], params["simulation_samples"]) == (
        "0.3", "2000.0", "300")
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(allocation["mlflow_run_id"])}
    assert {"simulation.png", "simulation.json"} <= artifacts
    with open(outcome["chart"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    again = simulate(allocation, dag_id, output_root, noise_sigma=0.3, mtbf=2000, samples=300, seed=4)
    assert again["realised_makespan_mean"] == outcome["realised_makespan_mean"]  # same seed, same samples


@pytest.mark.parametrize(("field", "kwargs"), [
    ("noise_sigma", {"noise_sigma": -1}),
    ("mtbf", {"mtbf": "often"}),
    ("mtbf", {"mtbf": 0}),
    ("samples", {"samples": 2.5}),
    ("seed", {"seed": -1}),
])
def test_bad_simulation_settings_are_named(allocation, dag_id, output_root, field, kwargs):
    with pytest.raises(SpecError) as refused:
        simulate(allocation, dag_id, output_root, **kwargs)
    assert refused.value.field == field


def tasks_of(path):
    return {t["task"]: t for t in json.loads(open(path).read())["tasks"]}


def test_the_replan_keeps_finished_and_running_work_and_leaves_the_failed_node(allocation, dag_id, output_root,
                                                                               tracking_uri):
    drill = replan_after_failure(allocation, fail_node="busiest", fail_at=0.5, output_root=output_root,
                                 ref=ref(dag_id, "inject_failure"))
    before, after = tasks_of(allocation["plan_path"]), tasks_of(drill["plan_path"])
    node, now = drill["fail_node"], drill["failure_time"]
    assert now == pytest.approx(0.5 * allocation["makespan"])
    assert sorted(after) == sorted(before)
    for task, old in before.items():
        new = after[task]
        if old["end"] <= now or (old["start"] < now and old["node"] != node):
            # Finished, or running elsewhere: same node, same times.
            assert (new["node"], new["start"], new["end"]) == (old["node"], old["start"], old["end"]), task
        else:
            assert new["node"] != node and new["start"] >= now, task  # never back on the failed node
    lost = [t for t, old in before.items() if old["node"] == node and old["start"] < now < old["end"]]
    displaced = [t for t, old in before.items() if old["node"] == node and old["end"] > now]
    assert (drill["lost_tasks"], drill["displaced_tasks"]) == (len(lost), len(displaced))
    assert displaced, "the busiest node should have work left at half the makespan"
    assert drill["finished_tasks"] == sum(old["end"] <= now for old in before.values())

    check = evaluate_plan(drill, metric_prefix="replan_evaluation/")
    assert check["verified"]
    run = MlflowClient(tracking_uri).get_run(allocation["mlflow_run_id"])
    metrics = run.data.metrics
    assert metrics["before/makespan"] == allocation["makespan"]
    assert metrics["after/makespan"] == drill["makespan"] == max(t["end"] for t in after.values())
    assert metrics["replan_evaluation/verified"] == 1.0 and metrics["replan_seconds"] > 0
    assert metrics["lost_tasks"] == len(lost) and "after/deadline_misses" in metrics
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(allocation["mlflow_run_id"], "replan")}
    assert {"replan/gantt_before.png", "replan/gantt_after.png", "replan/plan.json", "replan/drill.json"} <= artifacts


def test_a_repaired_node_takes_work_again_only_after_the_repair(allocation, dag_id, output_root):
    busiest = replan_after_failure(allocation, fail_at=0.3, repair=600, output_root=output_root,
                                   ref=ref(dag_id, "inject_failure"))
    node, back = busiest["fail_node"], busiest["failure_time"] + 600
    (spec,) = [n for n in json.loads(open(busiest["cluster"]).read())["nodes"] if n["id"] == node]
    assert spec["available_from"] == pytest.approx(back) and not spec.get("failed", False)
    before = tasks_of(allocation["plan_path"])
    for task, new in tasks_of(busiest["plan_path"]).items():
        if new["node"] == node and before[task]["end"] > busiest["failure_time"]:
            assert new["start"] >= back - 1e-9, task


def test_busiest_skips_a_node_the_remaining_work_cannot_do_without(tracking_uri, dag_id, output_root):
    """Five nodes: one hospital GPU, which the segmentation tasks need; it is never failed."""
    small = allocate(**SMALL, output_root=output_root, ref=ref(dag_id, "allocate"))
    drill = replan_after_failure(small, fail_at=0.0, output_root=output_root, ref=ref(dag_id, "inject_failure"))
    assert drill["fail_node"] != "hospital/a6000-0"
    with pytest.raises(SpecError) as refused:
        replan_after_failure(small, fail_node="hospital/a6000-0", fail_at=0.0, output_root=output_root,
                             ref=ref(dag_id, "inject_failure_2"))
    assert refused.value.field == "fail_node" and "fits no node" in str(refused.value)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"fail_node": "nowhere"}, "fail_node"),
    ({"fail_at": 1.5}, "fail_at"),
    ({"repair": -3}, "repair"),
    ({"fail_at": "half"}, "fail_at"),
    ({"migration_objective": "yes"}, "migration_objective"),
])
def test_bad_drill_settings_are_named(allocation, dag_id, output_root, kwargs, field):
    with pytest.raises(SpecError) as refused:
        replan_after_failure(allocation, output_root=output_root, ref=ref(dag_id, "inject_failure"), **kwargs)
    assert refused.value.field == field


def test_the_gantt_marks_the_failure(allocation, tmp_path):
    """The chart is drawn from schedule.csv alone, the failed node's row kept even if empty."""
    from apportion.operators.charts import gantt_chart

    schedule = f"{allocation['artifact_dir']}/schedule.csv"
    plain = gantt_chart(schedule, tmp_path / "plain.png")
    marked = gantt_chart(schedule, tmp_path / "marked.png", failed_node="spare/node-9", failure_time=100.0)
    import matplotlib.image as mpimg

    plain_px, marked_px = mpimg.imread(plain), mpimg.imread(marked)
    assert marked_px.shape[0] > plain_px.shape[0]  # one more node row
    red = (marked_px[..., 0] > 0.8) & (marked_px[..., 1] < 0.3) & (marked_px[..., 2] < 0.3)
    assert np.count_nonzero(red) > 50  # the dashed failure line

"""The failure drill's re-plan: a node fails part-way, finished and running work stays, the
rest is planned again."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from apportion.core.errors import SpecError
from apportion.operators.allocating import allocate
from apportion.operators.chosen_plan import evaluate_plan
from apportion.operators.drill import replan_after_failure
from tests.operators.conftest import SMALL, local, task_ref


def tasks_of(path):
    return {t["task"]: t for t in json.loads(open(path).read())["tasks"]}


def test_the_replan_keeps_finished_and_running_work_and_leaves_the_failed_node(allocation, dag_id, output_root,
                                                                               tracking_uri):
    drill = replan_after_failure(allocation, fail_node="busiest", fail_at=0.5, output_root=output_root,
                                 ref=task_ref(dag_id, "inject_failure"))
    before, after = tasks_of(local(allocation["plan_uri"])), tasks_of(local(drill["plan_uri"]))
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

    check = evaluate_plan(drill, metric_prefix="drill/evaluation/")
    assert check["verified"]
    run = MlflowClient(tracking_uri).get_run(allocation["mlflow_run_id"])
    metrics = run.data.metrics
    assert metrics["drill/before/makespan"] == allocation["makespan"]
    assert metrics["drill/after/makespan"] == drill["makespan"] == max(t["end"] for t in after.values())
    assert metrics["drill/evaluation/verified"] == 1.0 and metrics["drill/seconds"] > 0
    assert metrics["drill/lost_tasks"] == len(lost) and "drill/after/deadline_misses" in metrics
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(allocation["mlflow_run_id"], "replan")}
    assert {"replan/gantt_before.png", "replan/gantt_after.png", "replan/plan.json", "replan/drill.json"} <= artifacts


def test_a_repaired_node_takes_work_again_only_after_the_repair(allocation, dag_id, output_root):
    busiest = replan_after_failure(allocation, fail_at=0.3, repair=600, output_root=output_root,
                                   ref=task_ref(dag_id, "inject_failure"))
    node, back = busiest["fail_node"], busiest["failure_time"] + 600
    (spec,) = [n for n in json.loads(local(busiest["cluster"]).read_text())["nodes"] if n["id"] == node]
    assert spec["available_from"] == pytest.approx(back) and not spec.get("failed", False)
    before = tasks_of(local(allocation["plan_uri"]))
    for task, new in tasks_of(local(busiest["plan_uri"])).items():
        if new["node"] == node and before[task]["end"] > busiest["failure_time"]:
            assert new["start"] >= back - 1e-9, task


def test_busiest_skips_a_node_the_remaining_work_cannot_do_without(tracking_uri, dag_id, output_root):
    """Five nodes: one hospital GPU, which the segmentation tasks need; it is never failed."""
    small = allocate(**SMALL, output_root=output_root, ref=task_ref(dag_id, "allocate"))
    drill = replan_after_failure(small, fail_at=0.0, output_root=output_root, ref=task_ref(dag_id, "inject_failure"))
    assert drill["fail_node"] != "hospital/a6000-0"
    with pytest.raises(SpecError) as refused:
        replan_after_failure(small, fail_node="hospital/a6000-0", fail_at=0.0, output_root=output_root,
                             ref=task_ref(dag_id, "inject_failure_2"))
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
        replan_after_failure(allocation, output_root=output_root, ref=task_ref(dag_id, "inject_failure"), **kwargs)
    assert refused.value.field == field

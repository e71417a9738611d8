"""operators/calibrating.py: the enactment's observations in the (scenario, cluster) calibration
file, once per DAG run, and the cluster a calibrated plan is made on."""

from __future__ import annotations

import json

import pytest

from tests.operators.conftest import SMALL, task_ref

# Two enacted steps of one case: items, realised duration (task instance start to the stand-in's
# end) and overhead (task instance start to the stand-in's start), as enactment.observations gives.
ROWS = [
    {"kind": "cnn", "items": 100, "realised_duration": 1.5, "overhead": 0.5, "predicted_duration": 30.0},
    {"kind": "nlp", "items": 1, "realised_duration": 0.6, "overhead": 0.5, "predicted_duration": 0.01},
]


def test_each_step_gives_its_items_and_its_overhead_as_two_observations():
    from apportion.core.calibrate import Calibration
    from apportion.operators.calibrating import LOCAL_NODE, MIN_POINTS, enactment_observations

    observations = enactment_observations(ROWS, "dag/run")
    assert [(o.node, o.kind, o.work, o.duration) for o in observations] == [
        (LOCAL_NODE, "cnn", 100.0, 1.5), (LOCAL_NODE, "cnn", 0.0, 0.5),
        (LOCAL_NODE, "nlp", 1.0, 0.6), (LOCAL_NODE, "nlp", 0.0, 0.5)]
    calibration = Calibration(min_points=MIN_POINTS).merge(observations, run_id="dag/run", fitted_at="t")
    assert calibration.overhead(LOCAL_NODE).overhead == pytest.approx(0.5)
    assert calibration.speed(LOCAL_NODE, "cnn").speed == pytest.approx(100.0)  # items per second
    assert calibration.speed(LOCAL_NODE, "nlp").speed == pytest.approx(10.0)


def test_a_calibrated_plan_takes_every_node_as_this_machine_at_the_enactment_scale():
    from apportion.core.calibrate import Calibration
    from apportion.core.model import Instance
    from apportion.core.scenarios import build
    from apportion.operators.calibrating import MIN_POINTS, enactment_observations, planning_cluster

    workload, cluster = build("medical_diagnosis", size=1, nodes=6, seed=3)
    assert planning_cluster(cluster, Calibration(min_points=MIN_POINTS), 0.001) == cluster  # nothing learned yet
    calibration = Calibration(min_points=MIN_POINTS).merge(enactment_observations(ROWS, "r"), run_id="r",
                                                           fitted_at="t")
    planned = planning_cluster(cluster, calibration, 0.001)
    assert [node.overhead for node in planned.nodes] == pytest.approx([0.5] * len(cluster.nodes))
    instance = Instance.build(workload, planned)
    row = instance.task_ids.index("c0.ct_seg")
    work = workload.tasks[row].work
    eligible = instance.duration[row][instance.duration[row] < float("inf")]
    assert eligible == pytest.approx(0.5 + work * 0.001 / 100.0)  # overhead + items / (items per second)


def test_bad_scale_is_one_line_naming_it():
    from apportion.core.calibrate import Calibration
    from apportion.core.errors import SpecError
    from apportion.core.scenarios import build
    from apportion.operators.calibrating import planning_cluster

    _, cluster = build("medical_diagnosis", size=1, nodes=6, seed=3)
    with pytest.raises(SpecError, match="calibration_scale"):
        planning_cluster(cluster, Calibration(), 0)


def test_a_retried_calibrate_task_merges_and_logs_nothing_twice(tracking_uri, dag_id, output_root, tmp_path):
    from mlflow.tracking import MlflowClient

    from apportion.operators.allocating import allocate
    from apportion.operators.calibrating import calibrate_enactment, calibration_uri, read_calibration

    allocation = allocate(**SMALL, output_root=output_root, ref=task_ref(dag_id, "allocate"))
    observed = tmp_path / "observed"
    observed.mkdir()
    (observed / "enactment.json").write_text(json.dumps({"steps": ROWS}))
    observation = {"artifact_uri": str(observed)}
    results = [calibrate_enactment(allocation, observation, scenario="medical_diagnosis", output_root=output_root,
                                   ref=task_ref(dag_id, "calibrate")) for _ in range(2)]
    assert [(r["revision"], r["merged"], r["logged"]) for r in results] == [(1, True, True), (1, False, False)]
    assert results[0]["uri"] == str(calibration_uri("medical_diagnosis", "hospital-5", output_root))
    assert read_calibration(results[0]["uri"]).runs == (f"{dag_id}/manual__1",)
    client = MlflowClient(tracking_uri)
    run = client.get_run(allocation["mlflow_run_id"])
    assert run.data.params["calibration/revision"] == "1"
    assert len(client.get_metric_history(run.info.run_id, "calibration/error_after")) == 1
    assert results[0]["error_before"] == pytest.approx((28.5 / 1.5 + 0.59 / 0.6) / 2) and results[0]["error_after"] < 0.01

    other = calibrate_enactment(allocation, observation, scenario="medical_diagnosis", output_root=output_root,
                                ref=task_ref(dag_id, "calibrate", run_id="manual__2"))
    assert (other["revision"], other["merged"]) == (2, True)  # another DAG run's observations do count


def test_allocate_records_the_revision_it_planned_with(tracking_uri, dag_id, output_root):
    from apportion.core.calibrate import Calibration
    from apportion.operators.allocating import allocate
    from apportion.operators.calibrating import MIN_POINTS, calibration_uri, enactment_observations
    from apportion.operators.storage import read_json, write_json

    target = calibration_uri("medical_diagnosis", "hospital-5", output_root)
    plain = allocate(**SMALL, output_root=output_root, calibration=True, calibration_scale=0.001,
                     ref=task_ref(dag_id, "allocate"))
    assert plain["calibration_revision"] == 0  # no file yet: the declared cluster
    calibration = Calibration(min_points=MIN_POINTS).merge(enactment_observations(ROWS, "r"), run_id="r",
                                                           fitted_at="t")
    write_json(target, calibration.to_dict())
    calibrated = allocate(**SMALL, output_root=output_root, calibration=True, calibration_scale=0.001,
                          ref=task_ref(dag_id, "allocate", run_id="manual__2"))
    assert calibrated["calibration_revision"] == 1
    planned_on = read_json(calibrated["cluster"])  # the cluster the plan was made (and is checked) on
    assert {node.get("overhead") for node in planned_on["nodes"]} == {0.5}
    assert allocate(**SMALL, output_root=output_root, ref=task_ref(dag_id, "allocate", run_id="manual__3"))[
        "calibration_revision"] is None

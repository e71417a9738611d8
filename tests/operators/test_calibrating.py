"""operators/calibrating.py: the enactment's observations in the (scenario, cluster) calibration
file, once per DAG run, and the cluster a calibrated plan is made on."""

from __future__ import annotations

import json

import pytest

from tests.operators.conftest import SMALL, task_ref

# Two enacted steps of one case: the node that ran it, items, realised duration (task instance start
# to the stand-in's end) and overhead (task instance start to the stand-in's start), as
# enactment.observations gives.
ROWS = [
    {"node": "gpu-0", "kind": "cnn", "items": 100, "realised_duration": 1.5, "overhead": 0.5, "predicted_duration": 30.0},
    {"node": "cpu-0", "kind": "nlp", "items": 1, "realised_duration": 0.6, "overhead": 0.5, "predicted_duration": 0.01},
]


def test_each_step_gives_its_items_and_its_overhead_as_two_observations_of_the_node_that_ran_it():
    from apportion.core.calibrate import Calibration
    from apportion.operators.calibrating import MIN_POINTS, enactment_observations

    observations = enactment_observations(ROWS, "dag/run")
    assert [(o.node, o.kind, o.work, o.duration) for o in observations] == [
        ("gpu-0", "cnn", 100.0, 1.5), ("gpu-0", "cnn", 0.0, 0.5),
        ("cpu-0", "nlp", 1.0, 0.6), ("cpu-0", "nlp", 0.0, 0.5)]
    calibration = Calibration(min_points=MIN_POINTS).merge(observations, run_id="dag/run", fitted_at="t")
    assert calibration.overhead("gpu-0").overhead == pytest.approx(0.5)
    assert calibration.speed("gpu-0", "cnn").speed == pytest.approx(100.0)  # items per second
    assert calibration.speed("cpu-0", "nlp").speed == pytest.approx(10.0)


def test_a_calibrated_plan_gives_each_node_its_own_speeds_and_unenacted_nodes_the_pooled_ones():
    from apportion.core.calibrate import Calibration
    from apportion.core.model import Instance
    from apportion.core.scenarios import build
    from apportion.operators.calibrating import MIN_POINTS, enactment_observations, planning_cluster

    workload, cluster = build("medical_diagnosis", size=1, nodes=6, seed=3)
    assert planning_cluster(cluster, Calibration(min_points=MIN_POINTS), 0.001) == cluster  # nothing learned yet
    fast, slow = "hospital/a6000-0", "hospital/a6000-1"  # the two nodes that may run c0.ct_seg (on-site GPUs)
    steps = [{**ROWS[0], "node": fast}, {**ROWS[0], "node": slow, "realised_duration": 4.5},  # 3x slower there
             {**ROWS[1], "node": "cloud/xeon16-0"}]
    calibration = Calibration(min_points=MIN_POINTS).merge(enactment_observations(steps, "r"), run_id="r",
                                                           fitted_at="t")
    planned = planning_cluster(cluster, calibration, 0.001)
    assert [node.overhead for node in planned.nodes] == pytest.approx([0.5] * len(cluster.nodes))
    speed = {node.id: {kind: f * node.speed for kind, f in planned.node_speed_factors[node.id].items()}
             for node in planned.nodes}  # GFLOP/s per kind: items per second / 0.001 items per GFLOP
    assert speed[fast]["cnn"] == pytest.approx(100.0 / 0.001) and speed[slow]["cnn"] == pytest.approx(25.0 / 0.001)
    pooled = (100.0 / 1.0 + 100.0 / 4.0) / 2  # the median items per second of both nodes' cnn steps
    assert all(speed[n.id]["cnn"] == pytest.approx(pooled / 0.001) for n in cluster.nodes[2:])  # never ran cnn
    assert all(speed[n.id]["nlp"] == pytest.approx(10.0 / 0.001) for n in cluster.nodes)  # one node ran nlp

    instance = Instance.build(workload, planned)  # and the plan's duration table reads them
    row = instance.task_ids.index("c0.ct_seg")
    work = workload.tasks[row].work
    assert instance.duration[row, :2] == pytest.approx([0.5 + work * 0.001 / 100.0, 0.5 + work * 0.001 / 25.0])


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

"""Publishing a verified plan at its stable path, and recording the DAG run's MLflow run."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from apportion.operators.allocating import allocate
from apportion.operators.chosen_plan import evaluate_plan
from apportion.operators.inputs import build_workload, snapshot_cluster
from apportion.operators.publishing import publish_plan, record_run
from apportion.operators.tracking import AirflowRef


def ref(dag_id):
    return AirflowRef(dag_id, "manual__2026-01-01", "allocate")


def test_steps_chain_from_scenario_to_published_plan(tracking_uri, dag_id, output_root, tmp_path):
    built = build_workload("traffic_prediction", size=3, nodes=5, seed=2, out_dir=tmp_path / "build")
    snap = snapshot_cluster(scenario="traffic_prediction", size=3, nodes=5, seed=2, out_dir=tmp_path / "snap")
    assert snap["nodes"] == 5 and built["tasks"] > 0
    summary = allocate(built, snap, algorithm="heft", output_root=output_root, ref=ref(dag_id))
    assert summary["algorithm"] == "heft"
    evaluation = evaluate_plan(summary)
    published = publish_plan(summary, evaluation, dag_id=dag_id, output_root=output_root)
    target = output_root / "published" / dag_id / "plan.json"
    assert published["uri"] == target.resolve().as_uri()
    assert target.read_text() == (output_root / dag_id / "manual__2026-01-01" / "allocate" / "plan.json").read_text()
    record_run(summary, evaluation=evaluation, publication=published)
    tags = MlflowClient(tracking_uri).get_run(summary["mlflow_run_id"]).data.tags
    assert tags["apportion.published_uri"] == published["uri"] and tags["apportion.verified"] == "true"

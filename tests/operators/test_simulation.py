"""The simulate step: realised metrics beside the predicted ones, in the allocation's MLflow run."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from apportion.core.errors import SpecError
from apportion.operators.simulation import simulate_plan
from tests.operators.conftest import local, task_ref


def simulate(allocation, dag_id, output_root, **kwargs):
    return simulate_plan(allocation, output_root=output_root, ref=task_ref(dag_id, "simulate_plan"), **kwargs)


def test_without_noise_the_realised_metrics_are_the_predicted_ones(allocation, dag_id, output_root):
    outcome = simulate(allocation, dag_id, output_root, noise_sigma=0, samples=20)
    report = json.loads(open(local(outcome["artifact_uri"]) / "simulation.json").read())
    for name in ("makespan", "mean_response", "p95_response", "utilization"):
        assert report["realised"][name]["mean"] == pytest.approx(report["predicted"][name], rel=1e-12), name
        assert report["realised"][name]["std"] == pytest.approx(0.0, abs=1e-9)


def test_noise_and_failures_spread_the_realised_metrics_and_go_to_the_same_run(allocation, dag_id, output_root,
                                                                               tracking_uri):
    outcome = simulate(allocation, dag_id, output_root, noise_sigma=0.3, mtbf=2000.0, samples=300, seed=4)
    run = MlflowClient(tracking_uri).get_run(allocation["mlflow_run_id"])
    metrics, params = run.data.metrics, run.data.params
    assert metrics["plan/makespan"] == allocation["makespan"]  # the prediction, beside ...
    for stat in ("mean", "std", "p5", "p50", "p95"):
        assert f"sim/makespan_{stat}" in metrics and f"sim/p95_response_{stat}" in metrics
    assert metrics["sim/makespan_std"] > 0
    assert metrics["sim/makespan_p5"] <= metrics["sim/makespan_p50"] <= metrics["sim/makespan_p95"]
    assert metrics["sim/failed_tasks_mean"] > 0  # nodes fail every ~2000 s in a ~3600 s plan
    assert (params["sim/noise_sigma"], params["sim/mtbf"], params["sim/samples"]) == (
        "0.3", "2000.0", "300")
    artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(allocation["mlflow_run_id"])}
    assert {"simulation.png", "simulation.json"} <= artifacts
    with open(local(outcome["chart"]), "rb") as fh:
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

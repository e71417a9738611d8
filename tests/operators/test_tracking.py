"""Tracking configuration, batched metric logging, run lookup and the run comparison."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from apportion.core import calibrate
from apportion.core.calibrate import Observation, fit
from apportion.operators.allocating import allocate
from apportion.operators.tracking import (
    AirflowRef,
    Tracker,
    TrackingUnavailable,
    check_reachable,
    compare_runs,
    history_steps,
    log_calibration,
)
from tests.operators.conftest import SMALL


def test_unreachable_server_is_named_in_the_error(closed_port_uri):
    with pytest.raises(TrackingUnavailable, match=closed_port_uri.replace(".", r"\.")):
        check_reachable(closed_port_uri, attempts=2, backoff=0.05)
    check_reachable("sqlite:///nowhere.db")  # local stores need no server


def test_history_becomes_step_metrics_with_nested_values_flattened():
    history = [{"generation": g, "hypervolume": 0.1 * g, "best": {"makespan": 10.0 - g, "note": "x"}}
               for g in range(1, 4)]
    steps = history_steps(history)
    assert ("convergence/hypervolume", pytest.approx(0.2), 2) in [(k, v, s) for k, v, s in steps]
    assert {(k, s) for k, _, s in steps if k == "convergence/best_makespan"} == {
        ("convergence/best_makespan", 1), ("convergence/best_makespan", 2), ("convergence/best_makespan", 3)}
    assert not any("note" in k for k, _, _ in steps)


def test_more_step_metrics_than_one_batch_are_all_logged(tracking_uri, dag_id):
    tracker = Tracker(tracking_uri)
    experiment = tracker.experiment_id(dag_id)
    run_id, resumed = tracker.dag_run(experiment, AirflowRef(dag_id, "r1", "t"))
    assert not resumed
    steps = [("convergence/x", float(i), i) for i in range(2500)]
    assert tracker.log_metrics(run_id, {"scalar": 1.0}, steps) == 2501
    history = MlflowClient(tracking_uri).get_metric_history(run_id, "convergence/x")
    assert sorted(m.step for m in history) == list(range(2500))
    assert tracker.dag_run(experiment, AirflowRef(dag_id, "r1", "other_task")) == (run_id, True)


def test_parallel_creation_keeps_the_earliest_run(tracking_uri, dag_id):
    tracker = Tracker(tracking_uri)
    experiment = tracker.experiment_id(dag_id)
    ref = AirflowRef(dag_id, "r1", "t")
    # A second task created its run between our search and create: two runs carry the key.
    early = tracker.client.create_run(experiment, run_name="r1", tags={
        "airflow.dag_id": dag_id, "airflow.dag_run_id": "r1", "apportion.role": "dag_run"})
    run_id, resumed = tracker.dag_run(experiment, ref)
    assert (run_id, resumed) == (early.info.run_id, True)
    assert len(tracker.client.search_runs([experiment])) == 1


def test_compare_runs_prints_the_evolution_and_plots_it(tracking_uri, dag_id, output_root, tmp_path, capsys):
    for run, algorithm in [("r1", "greedy"), ("r2", "nsga2")]:
        allocate(**{**SMALL, "algorithm": algorithm}, output_root=output_root,
                 ref=AirflowRef(dag_id, run, "allocate"))
    out = tmp_path / "evolution.png"
    table = compare_runs(dag_id, out=out)
    assert list(table["run"]) == ["r1", "r2"] and list(table["search/algorithm"]) == ["greedy", "nsga2"]
    assert table["when"].is_monotonic_increasing
    assert table["warm_start/moved_tasks"].isna().all()  # neither run started from a previous plan
    assert (table["plan/makespan"] > 0).all() and table["search/hypervolume"].notna().all()
    # One instance, one reference box: the two algorithms' hypervolumes compare.
    assert table["search/reference_box/id"].nunique() == 1 and table["search/reference_box/id"][0]
    printed = capsys.readouterr().out
    assert "r1" in printed and "greedy" in printed and "search/seconds" in printed
    assert "reference boxes" not in printed
    allocate(**{**SMALL, "scenario_params": {**SMALL["scenario_params"], "size": 4}}, output_root=output_root,
             ref=AirflowRef(dag_id, "r3", "allocate"))
    table = compare_runs(dag_id, out=out)
    assert table["search/reference_box/id"].nunique() == 2
    assert "measured their hypervolume in 2 reference boxes" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no MLflow experiment"):
        compare_runs(dag_id + "_absent", out=out)


def test_log_calibration_records_the_file_params_and_errors_in_mlflow(tmp_path, mlflow_tracking_uri):
    uri = mlflow_tracking_uri  # the session's store: its migrations (~10 s) are paid once
    client = MlflowClient(uri)
    experiment = client.create_experiment(f"calibration-{tmp_path.name}", artifact_location=str(tmp_path / "art"))
    run = client.create_run(experiment)
    observed = [Observation("a", "x", w, 0.5 + w / 2.0) for w in (1, 2, 4)]  # speed 2, overhead 0.5
    cal = fit(observed, runs=("r1",), fitted_at="t")
    log_calibration(cal, run.info.run_id, tracking_uri=uri, error_before=0.6, error_after=0.05)
    data = client.get_run(run.info.run_id).data
    assert data.params["calibration/format_version"] == "1" and data.params["calibration/revision"] == "1"
    assert data.metrics["calibration/error_before"] == 0.6 and data.metrics["calibration/error_after"] == 0.05
    assert data.metrics["calibration/overhead/a"] == pytest.approx(0.5)
    local = client.download_artifacts(run.info.run_id, "calibration/calibration.json", str(tmp_path / "dl"))
    assert calibrate.load(local) == cal

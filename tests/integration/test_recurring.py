"""The demo with the schedules on, end to end (``run_demo`` with real Airflow standalone and MLflow
in a throwaway state dir): unpausing traffic_prediction brings its scheduled run, the demo's
backfill adds runs at past logical dates, every run lands in MLflow with its logical date, only
the first one starts cold, and the report compares the runs. Then Airflow's and MLflow's own
stores are read back after the shutdown. About three to four minutes here.
"""

from __future__ import annotations

import io
import sqlite3
import sys
from datetime import datetime, timezone

import pytest

from apportion.stack.demo import run_demo

pytestmark = pytest.mark.integration

DAG_ID = "traffic_prediction"
SMALL_CONF = {"regions": 4, "nodes": 6, "population": 20, "generations": 10, "seed": 3}
BACKFILL_RUNS = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's output and state dir after an ``--exit-when-done`` run."""
    state_dir = tmp_path_factory.mktemp("demo-recurring")
    capture = pytest.MonkeyPatch()
    out = io.StringIO()
    capture.setattr(sys, "stdout", out)
    try:
        status = run_demo(state_dir, exit_when_done=True, conf=SMALL_CONF, dag_ids=[DAG_ID],
                          backfill_runs=BACKFILL_RUNS, run_timeout=600)
    finally:
        capture.undo()
    print(out.getvalue())
    return status, out.getvalue(), state_dir


def _airflow_runs(state_dir) -> list[tuple[str, str, str | None, str]]:
    with sqlite3.connect(state_dir / "airflow" / "airflow.db") as db:
        return db.execute("select run_id, run_type, logical_date, state from dag_run where dag_id = ? order by id",
                          (DAG_ID,)).fetchall()


def _utc(text: str) -> datetime:
    """A date from Airflow's SQLite DB (naive UTC) or an MLflow tag (with its offset)."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def test_scheduled_and_backfilled_runs_all_succeed(demo):
    status, output, state_dir = demo
    assert status == 0, output
    runs = _airflow_runs(state_dir)
    types = [run_type for _, run_type, _, _ in runs]
    assert types.count("scheduled") >= 1 and types.count("manual") == 1, runs
    assert types.count("backfill") == BACKFILL_RUNS, runs
    assert {state for *_, state in runs} == {"success"}, runs
    backfilled = sorted(_utc(logical) for _, run_type, logical, _ in runs if run_type == "backfill")
    scheduled = max(_utc(logical) for _, run_type, logical, _ in runs if run_type == "scheduled")
    assert backfilled[-1] < scheduled  # the past day, before the scheduler's own interval
    assert "all processes stopped" in output


def test_each_run_is_in_mlflow_with_its_logical_date_and_warm_starts_from_the_second(demo):
    from mlflow.tracking import MlflowClient

    _, _, state_dir = demo
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name(DAG_ID)
    tracked = sorted(mlflow.search_runs([experiment.experiment_id]), key=lambda run: run.info.start_time)
    by_dag_run = {run.data.tags["airflow.dag_run_id"]: run for run in tracked}
    runs = _airflow_runs(state_dir)
    assert set(by_dag_run) == {run_id for run_id, *_ in runs}
    for run_id, run_type, logical, _ in runs:
        if run_type in ("scheduled", "backfill"):
            tag = by_dag_run[run_id].data.tags["airflow.logical_date"]
            assert _utc(tag) == _utc(logical), run_id
        local = by_dag_run[run_id].data.params["scenario/logical_date"]  # what the scenario planned for
        assert local[:16] == by_dag_run[run_id].data.tags.get("airflow.logical_date", local)[:16]
    warm = [run.data.params.get("warm_start/enabled") for run in tracked]
    assert warm == ["false"] + ["true"] * (len(tracked) - 1), [(r.info.run_name, w) for r, w in zip(tracked, warm, strict=True)]
    sources = [run.data.params["warm_start/source"] for run in tracked[1:]]
    assert all(source in {run.info.run_id for run in tracked} for source in sources)


def test_report_compares_the_runs_and_writes_the_chart(demo):
    _, output, state_dir = demo
    chart = state_dir / "compare" / f"{DAG_ID}-runs.png"
    assert chart.stat().st_size > 0
    assert f"apportion compare {DAG_ID}  (chart: {chart})" in output
    compared = output.split(f"apportion compare {DAG_ID}", 1)[1]
    for run_id, *_ in _airflow_runs(state_dir):
        assert run_id in compared, run_id
    assert "MLflow compare view of traffic_prediction's runs: http://127.0.0.1:" in output

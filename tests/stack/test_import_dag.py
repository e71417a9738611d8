"""``apportion import-dag``: a DAG in a temporary dags folder gets a history from real
``dag.test()`` runs in the session's Airflow metadata database, then is imported as a workload
and cluster that ``apportion validate`` and ``apportion optimize`` accept."""

from __future__ import annotations

import json
import textwrap

import pytest

from apportion.core.cli import main
from apportion.core.errors import SpecError

PIPELINE = textwrap.dedent('''
    import pendulum
    from airflow.sdk import dag, task


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
    def byo_pipeline():
        @task
        def extract():
            return 1

        @task
        def transform(x):
            import time

            time.sleep(0.6)
            return x

        @task(queue="reports")
        def report(x):
            return x

        @task
        def archive(x):
            return x

        done = transform(extract())
        report(done)
        archive(done)


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
    def byo_never_run():
        @task
        def only():
            return 1

        only()


    byo_pipeline()
    byo_never_run()
''')


@pytest.fixture(scope="module")
def dag_history(airflow_metadata_db, tmp_path_factory):
    """Both DAGs stored as the DAG processor would; ``byo_pipeline`` run twice."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    folder = tmp_path_factory.mktemp("byo_dags")
    (folder / "byo_pipeline.py").write_text(PIPELINE)
    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    runs = [bag.dags["byo_pipeline"].test() for _ in range(2)]
    assert [run.state for run in runs] == ["success", "success"]
    return runs


@pytest.mark.slow  # two real dag.test() runs (the first pays for Airflow's in-process API)
def test_a_dag_with_history_becomes_a_workload_and_cluster(dag_history):
    from apportion.stack.import_dag import import_dag

    imported = import_dag("byo_pipeline")
    tasks = {t.id: t for t in imported.workload.tasks}
    assert sorted(tasks) == ["archive", "extract", "report", "transform"]
    assert sorted((e.source, e.target) for e in imported.workload.edges) == [
        ("extract", "transform"), ("transform", "archive"), ("transform", "report")]
    assert imported.instances == 8 and len(imported.runs) == 2 and imported.estimated == ()
    # work: the median of the successful durations, in seconds at 1 GFLOP/s
    assert tasks["transform"].work >= 0.6 and tasks["transform"].work > tasks["report"].work
    assert {t.kind for t in tasks.values()} == {"PythonDecoratedOperator"}
    # LocalExecutor: the default pool is one node, its slots the pool's, no more than the DAG has tasks
    assert imported.executor == "Local"
    assert [(n.id, n.slots) for n in imported.cluster.nodes] == [("default_pool", 4)]
    doubled = import_dag("byo_pipeline", reference_speed=2.0)
    assert {t.id: t.work for t in doubled.workload.tasks}["transform"] == pytest.approx(2 * tasks["transform"].work)


@pytest.mark.slow
def test_under_celery_each_queue_is_a_node_kind_with_a_node_per_host_of_the_worker_slots(dag_history, monkeypatch):
    from apportion.stack.import_dag import import_dag

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__CELERY__WORKER_CONCURRENCY", "2")
    imported = import_dag("byo_pipeline")
    host = dag_history[0].get_task_instances()[0].hostname
    assert imported.executor == "Celery"
    assert [(n.id, n.kind, n.zone, n.slots) for n in imported.cluster.nodes] == [
        (f"default-{host}", "default", host, 2), (f"reports-{host}", "reports", host, 1)]
    kinds = {t.id: t.allowed_kinds for t in imported.workload.tasks}
    assert kinds == {"extract": ("default",), "transform": ("default",), "archive": ("default",),
                     "report": ("reports",)}


@pytest.mark.slow
def test_import_dag_writes_specs_that_validate_and_optimise(dag_history, tmp_path, capsys):
    out = tmp_path / "byo"
    assert main(["import-dag", "byo_pipeline", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ("byo_pipeline: 4 tasks, 3 edges from 8 successful task instances in 2 runs; 1 node, 4 slots "
            "(LocalExecutor)") in printed
    assert "work: median seconds x 1 GFLOP/s" in printed
    for name in ("workload.yaml", "cluster.yaml"):
        assert main(["validate", str(out / name)]) == 0
    assert main(["optimize", str(out / "workload.yaml"), str(out / "cluster.yaml"), "--algorithm", "heft",
                 "--out", str(tmp_path / "plan"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["makespan"] > 0.6


@pytest.mark.slow
def test_a_dag_with_no_history_or_none_at_all_is_one_line(dag_history, tmp_path, capsys):
    from apportion.stack.import_dag import import_dag

    with pytest.raises(SpecError, match=r"^dag 'byo_never_run': no history: no successful task instance"):
        import_dag("byo_never_run")
    assert main(["import-dag", "no_such_dag", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("apportion: error: dag 'no_such_dag': not found in Airflow's metadata database")
    assert not (tmp_path / "x").exists()
    assert main(["import-dag", "byo_never_run", "--out", str(tmp_path / "y")]) == 2
    assert "dag 'byo_never_run': no history" in capsys.readouterr().err


def test_bad_settings_name_the_setting():
    from apportion.stack.import_dag import import_dag

    with pytest.raises(SpecError, match="reference_speed: must be a finite number > 0"):
        import_dag("any", reference_speed=0)
    with pytest.raises(SpecError, match="last_runs: must be an integer >= 1"):
        import_dag("any", last_runs=0)


def test_a_database_without_airflow_tables_is_one_line():
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from apportion.stack.import_dag import import_dag

    with Session(create_engine("sqlite://")) as empty, \
            pytest.raises(SpecError, match=r"^airflow: cannot read Airflow's metadata database \(no such table"):
        import_dag("any", session=empty)

"""Conf that passes the trigger form's schema but is still wrong fails its task at once (no
retry) with one line naming the field, in a real ``dag.test()`` run."""

from __future__ import annotations

import pytest

from tests.dags.test_dag_runs import SMALL


@pytest.fixture(scope="module")
def own_dagbag(airflow_dags_folder):
    """DAGs of these tests only: ``dag.test(run_conf=...)`` leaves the conf in the DAG's params,
    which must not reach the other tests' runs of the same DAG."""
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=airflow_dags_folder, bundle_path=airflow_dags_folder)


@pytest.mark.parametrize(("dag_id", "conf", "task_id", "message"), [
    ("traffic_prediction", {"city_timezone": "Mars/Olympus_Mons"}, "build_workload",
     "bad build_workload input: city_timezone: unknown time zone 'Mars/Olympus_Mons'"),
    ("medical_diagnosis", {"nodes_down": ["nowhere/node-0"]}, "snapshot_cluster",
     "bad snapshot_cluster input: nodes_down: unknown nodes ['nowhere/node-0']"),
])
def test_schema_valid_bad_conf_fails_the_task_once_naming_the_field(own_dagbag, airflow_metadata_db, capfd,
                                                                    dag_id, conf, task_id, message):
    dag_run = own_dagbag.dags[dag_id].test(run_conf={**SMALL, **conf})
    failed = {ti.task_id: ti for ti in dag_run.get_task_instances() if ti.state == "failed"}
    assert dag_run.state == "failed" and list(failed) == [task_id]
    assert failed[task_id].try_number == 1  # AirflowFailException: no retry of input that stays bad
    log = "".join(capfd.readouterr())  # the task log, as dag.test() prints it
    assert f"AirflowFailException: {message}" in log

"""The operators: bad input fails the task at once (no retry), with the field and the reason."""

from __future__ import annotations

import pytest

from tests.operators.conftest import local


def test_operator_fails_without_retry_on_bad_input(dag_id, output_root):
    """A SpecError will not go away on a retry: the operator fails the task at once."""
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from apportion.operators.allocation import AllocationOperator

    op = AllocationOperator(task_id="allocate", scenario="medical_diagnosis", scenario_params={"size": 2, "nodes": 4},
                            population=8, generations=2, select="sla:0.001", output_root=str(output_root))
    ti = SimpleNamespace(dag_id=dag_id, run_id="manual__bad", task_id="allocate", map_index=-1, try_number=1,
                         log_url=None)
    with pytest.raises(AirflowFailException, match=r"bad allocation input: select: .*makespan"):
        op.execute({"ti": ti, "logical_date": None})


def test_evaluation_of_bad_input_fails_at_once_naming_it(allocation, tmp_path, monkeypatch):
    """A plan.json of another instance, an unreadable one, no allocation result, no tracking
    configuration: one AirflowFailException line each, no traceback from deep inside."""
    import shutil

    from airflow.sdk.exceptions import AirflowFailException

    from apportion.operators.allocation import EvaluatePlanOperator
    from apportion.operators.inputs import build_workload

    other = build_workload("traffic_prediction", size=2, nodes=4, out_dir=tmp_path / "other")
    truncated = tmp_path / "truncated"
    shutil.copytree(local(allocation["artifact_uri"]), truncated)
    mismatched = tmp_path / "mismatched"
    shutil.copytree(local(allocation["artifact_uri"]), mismatched)
    for name in ("workload", "cluster"):
        shutil.copyfile(local(other[name]), mismatched / f"{name}.json")
    (truncated / "plan.json").write_text('{"tasks": [')
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    cases = {
        "bad evaluation input: plan.tasks": {**allocation, "artifact_uri": mismatched.as_uri()},
        "bad evaluation input: plan.json: cannot read": {**allocation, "artifact_uri": truncated.as_uri()},
        "bad evaluation input: allocation: give an allocation result": "not a result",
        "evaluation: no MLflow tracking URI": {**allocation, "tracking_uri": None},
    }
    for message, given in cases.items():
        operator = EvaluatePlanOperator(task_id="evaluate_plan", allocation=given, mlflow_conn_id="no_such_conn")
        with pytest.raises(AirflowFailException) as failed:
            operator.execute({})
        assert str(failed.value).startswith(message) and "\n" not in str(failed.value), (message, failed.value)
    assert "no_such_conn" in str(failed.value)

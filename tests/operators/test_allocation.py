"""The operators: bad input fails the task at once (no retry), with the field and the reason."""

from __future__ import annotations

import pytest


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

"""plan.json read back and checked: the independent re-evaluation, the plan schema, and a
logged plan loaded back from its MLflow run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from apportion.core.errors import SpecError
from apportion.operators.allocating import allocate
from apportion.operators.chosen_plan import PLAN_SCHEMA, PlanMismatch, evaluate_plan, load_chosen_plan, load_logged_plan
from apportion.operators.publishing import publish_plan
from apportion.operators.tracking import AirflowRef
from tests.operators.conftest import SMALL


def ref(dag_id):
    return AirflowRef(dag_id, "manual__2026-01-01", "allocate")


def test_the_plan_is_checked_independently_and_tampering_is_caught(tracking_uri, dag_id, output_root):
    summary = allocate(**SMALL, output_root=output_root, ref=ref(dag_id))
    outcome = evaluate_plan(summary)
    assert outcome["verified"] and outcome["plan_id"] == summary["plan_id"]
    client = MlflowClient(tracking_uri)
    assert client.get_run(summary["mlflow_run_id"]).data.tags["apportion.evaluation"] == "verified"

    plan_path = output_root / dag_id / "manual__2026-01-01" / "allocate" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan["metrics"]["makespan"] *= 0.9
    plan_path.write_text(json.dumps(plan))
    with pytest.raises(PlanMismatch, match="metrics.makespan"):
        evaluate_plan(summary)
    with pytest.raises(PlanMismatch):
        publish_plan(summary, {"verified": False, "plan_id": summary["plan_id"]}, dag_id=dag_id,
                     output_root=output_root)


def test_a_logged_plan_loads_back_from_its_mlflow_run(tracking_uri, dag_id, output_root, tmp_path):
    summary = allocate(**SMALL, output_root=output_root, ref=ref(dag_id))
    run = MlflowClient(tracking_uri).get_run(summary["mlflow_run_id"])
    assert run.data.tags["apportion.plan_schema"] == PLAN_SCHEMA
    instance, plan, record = load_logged_plan(summary["mlflow_run_id"], dst=tmp_path / "loaded")
    local_instance, local_plan, local_record = load_chosen_plan(summary)
    assert record == local_record and instance.task_ids == local_instance.task_ids
    assert np.array_equal(plan.assignment, local_plan.assignment) and np.array_equal(plan.order, local_plan.order)


@pytest.mark.parametrize(("change", "field"), [
    (lambda p: p["tasks"][0].pop("node"), "plan.json.tasks[0]"),
    (lambda p: p["tasks"][1].update(start=-1.0), "plan.json.tasks[1].start"),
    (lambda p: p.pop("order"), "plan.json"),
    (lambda p: p["settings"].update(seed="0"), "plan.json.settings.seed"),
])
def test_a_plan_file_off_the_schema_is_refused_naming_the_field(tracking_uri, dag_id, output_root, change, field):
    summary = allocate(**SMALL, output_root=output_root, ref=ref(dag_id))
    path = output_root / dag_id / "manual__2026-01-01" / "allocate" / "plan.json"
    plan = json.loads(path.read_text())
    change(plan)
    path.write_text(json.dumps(plan))
    with pytest.raises(SpecError) as refused:
        load_chosen_plan(summary)
    assert refused.value.field == field and "\n" not in str(refused.value)


def test_a_plan_naming_an_unknown_node_is_refused_by_the_plan_reader(tracking_uri, dag_id, output_root):
    """Schema-valid, but wrong for its cluster: apportion.core.plan_file.read_plan names the entry."""
    summary = allocate(**SMALL, output_root=output_root, ref=ref(dag_id))
    path = output_root / dag_id / "manual__2026-01-01" / "allocate" / "plan.json"
    plan = json.loads(path.read_text())
    task = plan["tasks"][0]["task"]
    plan["tasks"][0]["node"] = "nowhere/node-0"
    path.write_text(json.dumps(plan))
    with pytest.raises(SpecError) as refused:
        load_chosen_plan(summary)
    assert refused.value.field.startswith("plan.tasks") and task in refused.value.field

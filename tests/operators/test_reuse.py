"""A retried allocation reuses a complete result with the same fingerprint, nothing else."""

from __future__ import annotations

import json

from apportion.core.api import Settings
from apportion.operators.reuse import RESULT_FILE, RESULT_FILES, complete_result, fingerprint, plan_id

PLAN = {"order": ["a", "b"], "tasks": [{"task": "a", "node": "n1"}, {"task": "b", "node": "n2"}]}


def test_a_plan_id_names_placement_and_order():
    assert plan_id(PLAN) == plan_id(json.loads(json.dumps(PLAN))) and len(plan_id(PLAN)) == 12
    assert plan_id({**PLAN, "order": ["b", "a"]}) != plan_id(PLAN)
    moved = {**PLAN, "tasks": [{"task": "a", "node": "n2"}, {"task": "b", "node": "n2"}]}
    assert plan_id(moved) != plan_id(PLAN)


def test_the_fingerprint_changes_with_settings_specs_and_the_front_started_from():
    base = fingerprint(Settings(), {"tasks": []}, {"nodes": []})
    assert base == fingerprint(Settings(), {"tasks": []}, {"nodes": []})
    assert base != fingerprint(Settings(seed=1), {"tasks": []}, {"nodes": []})
    assert base != fingerprint(Settings(), {"tasks": [1]}, {"nodes": []})
    assert base != fingerprint(Settings(), {"tasks": []}, {"nodes": []}, warm_start_from="plan-1")


def test_only_a_complete_folder_with_the_same_fingerprint_is_reused(tmp_path):
    for name in RESULT_FILES:
        (tmp_path / name).write_text("{}")
    (tmp_path / RESULT_FILE).write_text(json.dumps({"fingerprint": "f1", "plan_id": "p"}))
    assert complete_result(tmp_path, "f1") == {"fingerprint": "f1", "plan_id": "p"}
    assert complete_result(tmp_path, "f2") is None
    (tmp_path / "front.json").unlink()
    assert complete_result(tmp_path, "f1") is None

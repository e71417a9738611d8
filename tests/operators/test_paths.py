"""Where the steps' files go: run folders per task instance, published plan and front."""

from __future__ import annotations

from pathlib import Path

from apportion.operators.paths import (
    default_output_root,
    plan_asset_uri,
    published_front_path,
    published_plan_path,
    run_folder,
)
from apportion.operators.tracking import AirflowRef


def test_the_output_root_is_the_env_variable_else_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("APPORTION_OUTPUT_ROOT", str(tmp_path / "out"))
    assert default_output_root() == tmp_path / "out"
    monkeypatch.delenv("APPORTION_OUTPUT_ROOT")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    assert default_output_root() == tmp_path / "home" / "apportion"


def test_each_task_instance_has_its_own_path_safe_folder(tmp_path):
    plain = run_folder(AirflowRef("dag", "manual__2026-01-01T00:00:00+00:00", "allocate"), output_root=tmp_path)
    mapped = run_folder(AirflowRef("dag", "manual__2026-01-01T00:00:00+00:00", "allocate", map_index=2),
                        output_root=tmp_path)
    assert plain.is_dir() and mapped.is_dir() and plain != mapped
    assert plain.relative_to(tmp_path).parts == ("dag", "manual__2026-01-01T00_00_00_00_00", "allocate")
    assert mapped.name == "allocate.2"


def test_the_published_plan_and_its_front_sit_side_by_side(tmp_path):
    plan = published_plan_path("medical_diagnosis", tmp_path)
    assert plan == tmp_path.resolve() / "published" / "medical_diagnosis" / "plan.json"
    assert published_front_path("medical_diagnosis", tmp_path) == plan.with_name("front.json")
    assert Path(plan_asset_uri("medical_diagnosis", tmp_path)[len("file://"):]) == plan

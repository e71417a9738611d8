"""Where the steps' files go: run folders per task instance, published plan and front."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from airflow.utils.types import DagRunType
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.operators.paths import (
    MAX_NAME_BYTES,
    default_output_root,
    path_component,
    plan_asset_uri,
    published_front_uri,
    published_plan_uri,
    run_folder,
    run_folder_path,
    task_component,
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


def test_the_published_plan_and_its_front_sit_side_by_side(tmp_path, monkeypatch):
    monkeypatch.delenv("APPORTION_STORAGE_URL", raising=False)
    plan = published_plan_uri("medical_diagnosis", tmp_path)
    assert plan == (tmp_path.resolve() / "published" / "medical_diagnosis" / "plan.json").as_uri()
    assert published_front_uri("medical_diagnosis", tmp_path) == plan.removesuffix("plan.json") + "front.json"
    assert plan_asset_uri("medical_diagnosis", tmp_path) == plan
    monkeypatch.setenv("APPORTION_STORAGE_URL", "s3://bucket/apportion/")
    assert published_plan_uri("medical_diagnosis", tmp_path) == "s3://bucket/apportion/published/medical_diagnosis/plan.json"


# --- Ids Airflow may be configured to allow -----------------------------------------------------

def _legacy_name(name: str) -> str:
    """How run folders were named before ids were hashed: what normal ids must keep."""
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in name) or "_"


# Ids close to each other and to the plain names of others: ``:``/``+``/``_`` swaps, dots, slashes.
_close_ids = st.text(alphabet="ab_.:+/-=0T\x00é", max_size=12) | st.sampled_from(
    ["..", ".", "", "/", "/etc", "../../x", "a" * 300, "é" * 150, "manual__2026-01-01T00:00:00+00:00",
     "manual__2026-01-01T00_00_00_00_00", "g.1", "g", "g.-1"])
_any_ids = st.text(max_size=300) | _close_ids
# Short ids over a few characters that plain names confuse: many pairs share a plain name.
_tiny_ids = st.text(alphabet="a1_.:+/\x00", max_size=4) | st.sampled_from(
    ["manual__2026-01-01T00:00:00+00:00", "manual__2026-01-01T00_00_00_00_00", "manual__2026-01-01T00:00:00_00:00"])
_map_indexes = st.integers(min_value=-1, max_value=2**31)


@settings(max_examples=150, deadline=None)
@given(dag_id=_any_ids, run_id=_any_ids, task_id=_any_ids, map_index=_map_indexes)
def test_every_run_folder_is_created_inside_its_root(dag_id, run_id, task_id, map_index):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        folder = run_folder(AirflowRef(dag_id, run_id, task_id, map_index=map_index), output_root=root)
        assert folder.is_dir()
        assert folder.resolve().relative_to(root.resolve()).parts == folder.relative_to(root).parts
        assert len(folder.relative_to(root).parts) == 3
        published = Path(published_plan_uri(dag_id, root).removeprefix("file://"))
        assert published.resolve().relative_to((root / "published").resolve()).parts == (published.parent.name,
                                                                                         "plan.json")


@settings(max_examples=100, deadline=None)
@given(instances=st.lists(st.tuples(_tiny_ids, _tiny_ids, _tiny_ids, st.integers(-1, 2)), unique=True,
                          max_size=60))
def test_distinct_task_instances_get_distinct_folders(instances):
    folders = {run_folder_path(AirflowRef(dag_id, run_id, task_id, map_index=map_index), "/root")
               for dag_id, run_id, task_id, map_index in instances}
    assert len(folders) == len(instances)


@settings(max_examples=300, deadline=None)
@given(name=st.text(alphabet=string.ascii_letters + string.digits + "._-=", min_size=1, max_size=MAX_NAME_BYTES)
       .filter(lambda n: n not in (".", "..")))
def test_plain_ids_keep_their_name(name):
    assert path_component(name) == name


@settings(max_examples=150, deadline=None)
@given(run_type=st.sampled_from(list(DagRunType)), when=st.datetimes(timezones=st.timezones()),
       with_logical_date=st.booleans())
def test_airflow_run_ids_keep_the_folder_they_always_had(run_type, when, with_logical_date):
    from airflow.models.dagrun import DagRun

    run_id = DagRun.generate_run_id(run_type=run_type, logical_date=when if with_logical_date else None,
                                    run_after=when)
    assert path_component(run_id) == _legacy_name(run_id)


def test_ids_that_would_leave_the_root_or_collide_are_hashed():
    assert path_component("medical_diagnosis") == "medical_diagnosis"
    assert path_component("..").startswith("~") and path_component(".") != path_component("..")
    assert "/" not in path_component("../../etc") and path_component("../../etc").endswith(
        path_component("../../etc")[-16:])
    # Today's name of a scheduled run id is taken by that run id, not by a user id spelt like it.
    assert path_component("scheduled__2026-01-01T00:00:00+00:00") == "scheduled__2026-01-01T00_00_00_00_00"
    assert path_component("scheduled__2026-01-01T00_00_00_00_00") != "scheduled__2026-01-01T00_00_00_00_00"
    assert task_component("allocate", 2) == "allocate.2" and task_component("allocate.2") != "allocate.2"
    assert len(path_component("x" * 1000).encode()) <= MAX_NAME_BYTES

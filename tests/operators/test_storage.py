"""The storage root: where it is, how files get there whole, and steps on two workers that
share nothing but it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apportion.operators import storage
from apportion.operators.storage import (
    STORAGE_URL_ENV,
    as_path,
    fetch,
    file_uri,
    local_files,
    put_file,
    read_json,
    save_folder,
    storage_root,
    task_store,
    write_json,
)
from apportion.operators.tracking import AirflowRef

ROOT = Path(__file__).resolve().parents[2]


def test_the_root_is_the_setting_else_the_output_root(monkeypatch, tmp_path):
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)
    assert str(storage_root(tmp_path)) == tmp_path.resolve().as_uri()
    monkeypatch.setenv(STORAGE_URL_ENV, "s3://bucket/apportion/")
    ref = AirflowRef("../dag", "manual__2026-01-01T00:00:00+00:00", "allocate", map_index=3)
    stored = str(task_store(ref, tmp_path))
    assert stored.startswith("s3://bucket/apportion/") and stored.endswith("/manual__2026-01-01T00_00_00_00_00/allocate.3")
    assert "/../" not in stored  # ids go through path_component


def test_local_writes_are_atomic_and_in_place(tmp_path):
    target = tmp_path / "store with a space" / "a.json"
    uri = write_json(file_uri(target), {"x": 1})
    assert uri == f"file://{target.resolve()}" and read_json(uri) == {"x": 1} and target.is_file()
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary file left
    source = tmp_path / "source.txt"
    source.write_text("whole")
    assert put_file(source, file_uri(source)) == file_uri(source)  # storing a file onto itself: nothing to do
    assert fetch(uri, tmp_path / "unused") == target  # a local file is read where it is


def test_an_object_store_holds_whole_files_and_the_marker_last(tmp_path):
    """fsspec's in-memory file system stands in for an object store (no local path behind it)."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("plan.json", "result.json"):
        (folder / name).write_text(json.dumps({"name": name}))
    store = as_path("memory://apportion-test/dag/run/allocate")
    order = []
    real_put = storage.put_file

    def recording_put(source, target):
        order.append(Path(source).name)
        return real_put(source, target)

    storage.put_file = recording_put
    try:
        uri = save_folder(folder, store, ["result.json", "plan.json", "missing.csv"], last="result.json")
    finally:
        storage.put_file = real_put
    assert order == ["plan.json", "result.json"] and uri == "memory://apportion-test/dag/run/allocate"
    assert read_json(f"{uri}/plan.json") == {"name": "plan.json"}
    with local_files(uri, ["plan.json", "result.json", "missing.csv"]) as local:
        assert sorted(p.name for p in local.iterdir()) == ["plan.json", "result.json"]
        assert json.loads((local / "plan.json").read_text()) == {"name": "plan.json"}
    assert not local.exists()  # the temporary copy is removed


STEP = textwrap.dedent("""
    import json, sys
    from apportion.operators.tracking import AirflowRef
    step = sys.argv[1]
    ref = AirflowRef("storage_two_workers", "manual__1", step)
    if step == "allocate":
        from apportion.operators.allocating import allocate
        out = allocate(scenario="medical_diagnosis", scenario_params={"size": 3, "nodes": 5, "seed": 1},
                       population=12, generations=4, ref=ref)
    else:
        allocation = json.loads(sys.argv[2])
        from apportion.operators.chosen_plan import evaluate_plan
        from apportion.operators.publishing import publish_plan
        from apportion.operators.simulation import simulate_plan
        evaluation = evaluate_plan(allocation)
        simulation = simulate_plan(allocation, samples=20, ref=ref)
        out = {"evaluation": evaluation["verified"], "simulation": simulation,
               "publication": publish_plan(allocation, evaluation, dag_id=ref.dag_id)}
    print(json.dumps(out))
""")


def _worker(step: str, output_root: Path, shared: Path, *args: str) -> dict:
    """One step in a process of its own whose local output root is ``output_root``."""
    env = {**os.environ, "APPORTION_OUTPUT_ROOT": str(output_root), STORAGE_URL_ENV: shared.as_uri()}
    done = subprocess.run([sys.executable, "-c", STEP, step, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_steps_on_two_workers_share_only_the_storage_root(tmp_path, mlflow_tracking_uri):
    """allocate on worker A; A's folder is then lost; evaluate, simulate and publish on worker B
    read everything through the storage root; a retry of allocate on worker C finds the stored
    result and resumes the same MLflow run."""
    import shutil

    from mlflow.tracking import MlflowClient

    shared, worker_a, worker_b, worker_c = (tmp_path / name for name in ("shared", "a", "b", "c"))
    allocation = _worker("allocate", worker_a, shared)
    shutil.rmtree(worker_a)
    for key in ("artifact_uri", "plan_uri", "workload", "cluster"):
        assert allocation[key].startswith(shared.as_uri() + "/storage_two_workers/manual__1/allocate"), key
    downstream = _worker("downstream", worker_b, shared, json.dumps(allocation))
    assert downstream["evaluation"] is True
    assert downstream["simulation"]["chart"].startswith(shared.as_uri())
    published = downstream["publication"]["uri"]
    assert published == f"{shared.as_uri()}/published/storage_two_workers/plan.json"
    assert json.loads(Path(published.removeprefix("file://")).read_text())["order"]
    assert not (worker_b / "storage_two_workers" / "manual__1" / "allocate").exists()  # read, never copied in place

    retried = _worker("allocate", worker_c, shared)
    assert retried["reused"] is True and retried["mlflow_run_id"] == allocation["mlflow_run_id"]
    run = MlflowClient(mlflow_tracking_uri).get_run(allocation["mlflow_run_id"])
    assert run.data.tags["apportion.artifact_uri"] == allocation["artifact_uri"]
    assert "plan.json" in {a.path for a in MlflowClient(mlflow_tracking_uri).list_artifacts(run.info.run_id)}

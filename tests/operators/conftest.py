"""Fixtures for the operator tests: a fresh MLflow store per test and a small, quick budget."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from apportion.operators.tracking import AirflowRef

# A small scenario and a 20 x 10 budget keep one allocation under a second once compiled.
SMALL = dict(scenario="medical_diagnosis", scenario_params={"size": 3, "nodes": 5, "seed": 1},
             population=20, generations=10)


@pytest.fixture
def tracking_uri(mlflow_tracking_uri, tmp_path, monkeypatch) -> str:
    """The session's sqlite MLflow store (creating one costs ~10 s of migrations); tests keep
    apart by using their own experiment, named after ``dag_id``."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking_uri)
    monkeypatch.chdir(tmp_path)
    return mlflow_tracking_uri


@pytest.fixture
def dag_id(request) -> str:
    """A DAG id (and so an MLflow experiment) of this test only."""
    return "dag_" + "".join(c if c.isalnum() else "_" for c in request.node.name)


@pytest.fixture
def output_root(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def closed_port_uri() -> str:
    """An http URI on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# Eight nodes: two of each kind in the hospital, so a hospital node can fail and its work move.
DRILL = {**SMALL, "scenario_params": {"size": 4, "nodes": 8, "seed": 1}}


def local(uri: str) -> Path:
    """The local file or folder a ``file://`` URI (what steps return by default) names."""
    assert uri.startswith("file:///"), uri
    return Path(uri.removeprefix("file://"))


def task_ref(dag_id, task_id, run_id="manual__1"):
    """The task instance a step runs as, without Airflow."""
    return AirflowRef(dag_id, run_id, task_id, logical_date="2026-01-01T00:00:00+00:00")


@pytest.fixture
def allocation(tracking_uri, dag_id, output_root):
    """An allocation of the DRILL instance, logged to MLflow: what simulation and drill start from."""
    from apportion.operators.allocating import allocate

    return allocate(**DRILL, output_root=output_root, ref=task_ref(dag_id, "allocate"))

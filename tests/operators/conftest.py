"""Fixtures for the operator tests: a fresh MLflow store per test and a small, quick budget."""

from __future__ import annotations

import socket

import pytest

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

"""``apportion compare`` and ``apportion demo`` are plug-ins from apportion.stack; a user's
mistake with ``compare`` is one line and exit status 2, against a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apportion.core.cli import build_parser
from apportion.stack.processes import free_port

APPORTION = str(Path(sys.executable).with_name("apportion"))


def _run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([APPORTION, *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def _one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("apportion: error: "), done.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> str:
    """A sqlite MLflow store with one experiment (creating the tables takes a few seconds)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("medical_diagnosis")
    return uri


def test_demo_and_compare_come_from_the_stack():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("demo", "compare"):
        assert sub.choices[name].get_default("run").__module__ == "apportion.stack.commands"


def test_compare_unknown_experiment(mlflow_store, tmp_path):
    _one_error_line(_run("compare", "medical_diagnosys", "--tracking-uri", mlflow_store, cwd=tmp_path),
                    "experiment", "'medical_diagnosys'")


def test_compare_known_experiment_without_runs_writes_the_plot(mlflow_store, tmp_path):
    done = _run("compare", "medical_diagnosis", "--tracking-uri", mlflow_store, "--out", str(tmp_path / "runs.png"))
    assert done.returncode == 0, done.stderr
    assert "has no runs with plan metrics" in done.stdout and (tmp_path / "runs.png").stat().st_size > 0


def test_compare_missing_sqlite_store_creates_none(tmp_path):
    missing = tmp_path / "typo.db"
    _one_error_line(_run("compare", "medical_diagnosis", "--tracking-uri", f"sqlite:///{missing}"),
                    "tracking_uri", str(missing))
    assert not missing.exists()


def test_compare_without_a_tracking_uri(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("AIRFLOW_CONN_")}
    _one_error_line(_run("compare", "medical_diagnosis", env=env, cwd=tmp_path), "tracking_uri", "MLFLOW_TRACKING_URI")


def test_compare_unreachable_server_fails_in_bounded_time(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    _one_error_line(_run("compare", "medical_diagnosis", "--tracking-uri", uri, cwd=tmp_path), "unreachable", uri)
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("argv,module", [(["compare", "medical_diagnosis"], "mlflow.exceptions"),
                                         (["demo", "--exit-when-done"], "psutil")])
def test_without_the_airflow_extra_a_command_says_what_to_install(monkeypatch, capsys, argv, module):
    from apportion.core.cli import main

    for name in [m for m in sys.modules if m.startswith("apportion.stack.") and m != "apportion.stack.commands"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # what an interpreter without the package sees: ImportError
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"apportion: error: {argv[0]}: needs the 'airflow' extra")

"""Session-wide test environment: a throwaway Airflow home and MLflow store, never the user's.

Airflow reads ``AIRFLOW_HOME`` and its ``AIRFLOW__*`` settings once, when ``airflow`` is first
imported, so the environment is set in ``pytest_configure`` (before any test module is
collected); the metadata database is only created by the ``airflow_metadata_db`` fixture, for
the tests that need it (about a second).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = PROJECT_ROOT / "dags"

_session_dir: Path | None = None


def _numba_cache_writable() -> bool:
    """Numba caches next to the source unless ``NUMBA_CACHE_DIR`` says otherwise."""
    pycache = PROJECT_ROOT / "core" / "__pycache__"
    target = pycache if pycache.exists() else pycache.parent
    return os.access(target, os.W_OK)


def pytest_configure(config):
    global _session_dir
    _session_dir = Path(tempfile.mkdtemp(prefix="apportion-tests-"))
    airflow_home = _session_dir / "airflow"
    airflow_home.mkdir()
    os.environ.update({
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{_session_dir / 'mlflow.db'}",
    })
    if not os.environ.get("NUMBA_CACHE_DIR") and not _numba_cache_writable():
        cache = Path(tempfile.gettempdir()) / "apportion-numba-cache"
        cache.mkdir(exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)


def pytest_unconfigure(config):
    if _session_dir is not None:
        shutil.rmtree(_session_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_dags_folder() -> Path:
    """The project's dags/ folder, which the test Airflow is configured to load."""
    return DAGS_FOLDER


@pytest.fixture(scope="session")
def airflow_metadata_db() -> Path:
    """Create the temporary Airflow metadata database once; return the Airflow home.

    ``dag.test()`` fails with "no such table: task_instance" without it.
    """
    from airflow.utils.db import initdb

    initdb()
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture(scope="session")
def mlflow_tracking_uri() -> str:
    """The session's temporary MLflow store (sqlite), as set in ``MLFLOW_TRACKING_URI``."""
    return os.environ["MLFLOW_TRACKING_URI"]



@pytest.fixture(scope="session")
def apportion_dagbag(airflow_dags_folder):
    """The project's DAGs, loaded the way the DAG processor loads a bundle (dags/ on sys.path)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=airflow_dags_folder, bundle_path=airflow_dags_folder)


@pytest.fixture(autouse=True)
def _trigger_conf_stays_in_its_run(request):
    """``dag.test()`` runs the tasks in this process, where Airflow's ``process_params`` sets a
    run's conf on the DAG's and its tasks' own ``Param`` objects (shared by reference, not copied): a run that
    enacts would make the next plain run of that DAG enact too. Each test that uses the session's
    DAGs gets their Params back as they were."""
    if "apportion_dagbag" not in request.fixturenames:
        yield
        return
    dags = request.getfixturevalue("apportion_dagbag").dags.values()
    holders = [holder.params for dag in dags for holder in (dag, *dag.tasks) if holder.params]
    saved = [(param, param.value) for params in holders for param in (params.get_param(k) for k in params)]
    yield
    for param, value in saved:
        param.value = value

#!/usr/bin/env python
"""Start the MLflow tracking server Apportion logs to, replacing this process (exec), so
signals (Ctrl-C, SIGTERM from a supervisor) reach MLflow itself.

    python mlflow/start_server.py [STATE_DIR] [--port 5000] [--host 127.0.0.1]
                                  [--backend-store-uri URI | --postgres SERVER_URL [--database NAME]]
                                  [--artifacts-destination URI]

By default the state lives in STATE_DIR (argument, else ``$APPORTION_MLFLOW_HOME``, else
``./.mlflow``): ``mlflow.db`` (SQLite) and ``mlartifacts/``. For a shared server give any
database URI with ``--backend-store-uri`` or ``$MLFLOW_BACKEND_STORE_URI`` (e.g.
``postgresql://user@db/mlflow``), or a PostgreSQL server with ``--postgres`` (e.g.
``postgresql://postgres@db:5432``): the database ``--database`` (default ``apportion_mlflow``)
is created there if absent (the ``cluster`` extra's psycopg2). A ``postgresql://`` URI is
opened with psycopg2 (SQLAlchemy 2.1 would pick psycopg 3, which is not installed). The job runner is switched off
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``), which saves about 1.4 GB and is not needed
for tracking. This is a plain script: nothing under mlflow/ may be a package, or it would
shadow the ``mlflow`` library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def command(argv: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment for ``argv``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state_dir", nargs="?", default=os.environ.get("APPORTION_MLFLOW_HOME", ".mlflow"),
                        help="where mlflow.db and mlartifacts/ live (default $APPORTION_MLFLOW_HOME or ./.mlflow)")
    parser.add_argument("--host", default=os.environ.get("MLFLOW_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLFLOW_PORT", "5000")))
    parser.add_argument("--backend-store-uri", default=os.environ.get("MLFLOW_BACKEND_STORE_URI"),
                        help="any database URI (default sqlite:///STATE_DIR/mlflow.db)")
    parser.add_argument("--postgres", metavar="SERVER_URL",
                        help="PostgreSQL server for the backend store (instead of --backend-store-uri)")
    parser.add_argument("--database", default="apportion_mlflow",
                        help="the backend database on the --postgres server, created if absent")
    parser.add_argument("--artifacts-destination", default=os.environ.get("MLFLOW_ARTIFACTS_DESTINATION"),
                        help="artifact store (default STATE_DIR/mlartifacts)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MLFLOW_WORKERS", "1")))
    args = parser.parse_args(argv)

    state = Path(args.state_dir).expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    if args.postgres:
        backend = postgres_backend(args.postgres, args.database)
    else:
        backend = args.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
    if backend.startswith("postgresql://"):
        backend = "postgresql+psycopg2://" + backend.removeprefix("postgresql://")
    artifacts = args.artifacts_destination or str(state / "mlartifacts")
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow, "server", "--backend-store-uri", backend, "--artifacts-destination", artifacts,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return cmd, env


def postgres_backend(server_url: str, database: str) -> str:
    """The backend store URI of ``database`` on the PostgreSQL server, created if absent; a
    server that does not answer or a bad name ends the script with one error line."""
    from apportion.stack.cluster import ClusterError, database_url, ensure_database

    try:
        ensure_database(server_url, database)
    except ClusterError as error:
        raise SystemExit(f"start_server.py: error: {error}") from None
    return database_url(server_url, database, "psycopg2")


def main(argv: list[str] | None = None) -> None:
    cmd, env = command(argv)
    print("exec:", " ".join(cmd), flush=True)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()

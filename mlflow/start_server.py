#!/usr/bin/env python
"""Start the MLflow tracking server Apportion logs to, replacing this process (exec), so
signals (Ctrl-C, SIGTERM from a supervisor) reach MLflow itself.

    python mlflow/start_server.py [STATE_DIR] [--port 5000] [--host 127.0.0.1]
                                  [--backend-store-uri URI] [--artifacts-destination URI]

By default the state lives in STATE_DIR (argument, else ``$APPORTION_MLFLOW_HOME``, else
``./.mlflow``): ``mlflow.db`` (SQLite) and ``mlartifacts/``. For a shared server give any
database URI with ``--backend-store-uri`` or ``$MLFLOW_BACKEND_STORE_URI`` (e.g.
``postgresql://user@db/mlflow``). The job runner is switched off
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
    parser.add_argument("--artifacts-destination", default=os.environ.get("MLFLOW_ARTIFACTS_DESTINATION"),
                        help="artifact store (default STATE_DIR/mlartifacts)")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("MLFLOW_WORKERS", "1")))
    args = parser.parse_args(argv)

    state = Path(args.state_dir).expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    backend = args.backend_store_uri or f"sqlite:///{state / 'mlflow.db'}"
    artifacts = args.artifacts_destination or str(state / "mlartifacts")
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    cmd = [mlflow, "server", "--backend-store-uri", backend, "--artifacts-destination", artifacts,
           "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return cmd, env


def main(argv: list[str] | None = None) -> None:
    cmd, env = command(argv)
    print("exec:", " ".join(cmd), flush=True)
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main()

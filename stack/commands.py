"""The ``apportion`` commands that drive Airflow and MLflow, plugged into the core's command line
through the entry-point group ``apportion.commands`` (see pyproject.toml): the core knows
nothing of Airflow or MLflow, and a command that cannot load is skipped with a warning.

Each ``register_*`` adds its subparser and sets ``run``, the handler ``main`` calls; heavy
modules load inside the handlers.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from apportion.stack.history import BACKFILL_RUNS


def register_demo(subparsers) -> None:
    """``apportion demo``: Airflow standalone and MLflow locally, the three workflow DAGs on their
    schedules with a short history of runs, compared."""
    demo = subparsers.add_parser("demo", help="start Airflow and MLflow locally, run the three workflow DAGs on "
                                              "their schedules with a day's history, compare the runs "
                                              "(docs/demo.md)")
    demo.add_argument("--state-dir", default=".demo", metavar="DIR",
                      help="Airflow home, MLflow store, Numba cache and logs go here")
    demo.add_argument("--exit-when-done", action="store_true",
                      help="stop the servers once the runs are reported (off: keep them up, scheduled runs "
                           "coming, until Ctrl-C)")
    demo.add_argument("--backfill-runs", type=_non_negative_int, default=BACKFILL_RUNS, metavar="N",
                      help="backfill traffic_prediction at N times spread over the past day (0: none)")
    demo.set_defaults(run=_demo)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _demo(args: argparse.Namespace) -> int:
    with _needs_airflow_extra("demo"):
        from apportion.stack.demo import run_demo

    return run_demo(state_dir=Path(args.state_dir), exit_when_done=args.exit_when_done,
                    backfill_runs=args.backfill_runs)


@contextmanager
def _needs_airflow_extra(command: str):
    """A command whose libraries are not installed is one error line saying what to install."""
    try:
        yield
    except ImportError as error:
        from apportion.core.errors import SpecError

        raise SpecError(command, f"needs the 'airflow' extra: pip install 'apportion[airflow]' ({error})") from None


def register_compare(subparsers) -> None:
    """``apportion compare``: how the runs of one workflow evolved in MLflow."""
    compare = subparsers.add_parser("compare", help="how runs of one workflow evolved in MLflow")
    compare.add_argument("experiment", help="MLflow experiment (one per workflow DAG, named after it)")
    compare.add_argument("--tracking-uri", metavar="URI",
                         help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the Airflow connection "
                              "mlflow_default)")
    compare.add_argument("--out", metavar="PNG", help="write the plot here (default: EXPERIMENT-runs.png)")
    compare.set_defaults(run=_compare)


def _compare(args: argparse.Namespace) -> int:
    """Run ``compare_runs``; a missing or unreachable tracking server and an unknown experiment
    become one ``SpecError`` line."""
    from apportion.core.errors import SpecError

    with _needs_airflow_extra("compare"):
        from mlflow.exceptions import MlflowException

        from apportion.operators.hooks import TrackingNotConfigured, resolve_tracking_uri
        from apportion.operators.tracking import TrackingUnavailable, compare_runs

    try:
        uri = resolve_tracking_uri(args.tracking_uri)
        _check_sqlite_store(uri)
        compare_runs(args.experiment, tracking_uri=uri, out=args.out)
    except SpecError:
        raise
    except (TrackingNotConfigured, TrackingUnavailable, MlflowException) as error:
        raise SpecError("tracking_uri", _first_line(error)) from None
    except ValueError as error:  # compare_runs: no experiment of that name
        raise SpecError("experiment", _first_line(error)) from None
    return 0


def _check_sqlite_store(uri: str) -> None:
    """A sqlite store must exist already: MLflow would create an empty one (a mistyped path
    then leaves a stray database behind) and find no experiment in it."""
    from apportion.core.errors import SpecError

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise SpecError("tracking_uri", f"no MLflow store at {path} (from {uri})")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]

#!/usr/bin/env python
"""Print and plot how the runs of one workflow evolved: ``python mlflow/compare.py EXPERIMENT
[--tracking-uri URI] [--out runs.png]`` (same as ``apportion compare``). A plain script:
nothing under mlflow/ may be a package, or it would shadow the ``mlflow`` library."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="How the runs of one workflow evolved over time.")
    parser.add_argument("experiment", help="MLflow experiment (the DAG id by default)")
    parser.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI or the mlflow_default connection")
    parser.add_argument("--out", help="PNG to write (default <experiment>-runs.png)")
    args = parser.parse_args(argv)
    from apportion.operators.tracking import compare_runs

    compare_runs(args.experiment, tracking_uri=args.tracking_uri, out=args.out)


if __name__ == "__main__":
    main()

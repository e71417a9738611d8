"""Fingerprint and reuse: a retried allocation finds its complete result and only uploads it.

``allocate`` stores result.json last, with a fingerprint of its settings, workload, cluster
and the front it started from; a retry with the same fingerprint, on any worker, reuses the
stored folder instead of searching again. ``plan_id`` names a plan by its placement and order.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from apportion.operators.paths import FRONT_FILE, PLAN_FILE

RESULT_FILE = "result.json"  # written last: its presence marks a complete allocation
RESULT_VERSION = 2
# Everything a complete allocation folder holds besides result.json.
RESULT_FILES = (PLAN_FILE, FRONT_FILE, "pareto.csv", "schedule.csv", "workload.json", "cluster.json")


def plan_id(plan: Mapping[str, Any]) -> str:
    """12 hex digits identifying a plan's placement and order (same plan, same id)."""
    key = json.dumps({"order": plan["order"], "nodes": [[t["task"], t["node"]] for t in plan["tasks"]]})
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def fingerprint(settings, workload_spec: dict, cluster_spec: dict, warm_start_from: str | None = None) -> str:
    """What the result depends on: settings, specs, the front it started from, the format."""
    from dataclasses import asdict

    blob = json.dumps({"settings": asdict(settings), "workload": workload_spec, "cluster": cluster_spec,
                       "warm_start_from": warm_start_from, "version": RESULT_VERSION}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def complete_result(folder: Any, fingerprint: str) -> dict | None:
    """The stored folder's result record (``folder``: a URI, local path or
    ``ObjectStoragePath``) when it is complete and has ``fingerprint``, else ``None``."""
    from apportion.operators.storage import as_path, read_json

    folder = as_path(folder)
    if not (folder / RESULT_FILE).exists() or not all((folder / n).exists() for n in RESULT_FILES):
        return None
    try:
        record = read_json(folder / RESULT_FILE)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("fingerprint") == fingerprint else None

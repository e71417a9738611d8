"""Workloads and clusters from pandas tables (DataFrames, or a directory of CSV files).

One row per entry, one column per spec field (the JSON Schema's names); an empty cell means
the field's default. List fields (``allowed_kinds``, ``allowed_zones``) are ``;``-separated
strings (``gpu;cpu``). A directory holds ``tasks.csv`` [``edges.csv``, ``requests.csv``] for a
workload and/or ``nodes.csv`` [``links.csv``, ``speed_factors.csv``] for a cluster;
``speed_factors.csv`` has the columns ``node_kind,task_kind,factor``. Errors name the row by id
(``tasks['t7'].work``) or by its 0-based position among the data rows (``tasks[7].work``).
pandas is imported inside the functions, so ``import core`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Workload
from apportion.core.spec import cluster_from_dict, schema, workload_from_dict

# table -> (schema, definition of one row)
_ROW_SCHEMA = {
    "tasks": ("workload", "task"), "edges": ("workload", "edge"), "requests": ("workload", "request"),
    "nodes": ("cluster", "node"), "links": ("cluster", "link"),
}
_LIST_COLUMNS = ("allowed_kinds", "allowed_zones")
# Read as text from CSV, so that ids such as 007 keep their zeros.
_TEXT_COLUMNS = ("id", "kind", "request", "source", "target", "zone", "a", "b", "node_kind", "task_kind",
                 *_LIST_COLUMNS)
_SPEED_FACTOR_COLUMNS = ("node_kind", "task_kind", "factor")
WORKLOAD_TABLES = ("tasks", "edges", "requests")
CLUSTER_TABLES = ("nodes", "links", "speed_factors")


def _blank(value: object) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value)) or _is_pandas_na(value)


def _is_pandas_na(value: object) -> bool:
    import pandas as pd

    return value is pd.NA or value is pd.NaT


def _check_columns(frame, table: str, known: tuple[str, ...], required: tuple[str, ...]) -> None:
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise SpecError(table, f"must be a pandas DataFrame, got {type(frame).__name__}")
    for column in frame.columns:
        if column not in known:
            raise SpecError(f"{table}.{column}", f"unknown column; expected some of {list(known)}")
    for column in required:
        if column not in frame.columns:
            raise SpecError(f"{table}.{column}", "missing required column")


def _records(frame, table: str) -> list[dict]:
    """The rows of ``frame`` as spec entries: blank optional cells left out, lists split."""
    what, definition = _ROW_SCHEMA[table]
    row_schema = schema(what)["$defs"][definition]
    required = tuple(row_schema["required"])
    _check_columns(frame, table, tuple(row_schema["properties"]), required)
    rows = []
    for row in frame.to_dict("records"):
        entry = {}
        for column, value in row.items():
            if column in _LIST_COLUMNS and isinstance(value, str):
                value = [part.strip() for part in value.split(";") if part.strip()] or None
            if column in required or not _blank(value):
                entry[column] = value
        rows.append(entry)
    return rows


def workload_from_frames(tasks, edges=None, requests=None, *, name: str = "workload") -> Workload:
    """A checked ``Workload`` from a tasks table and optional edges and requests tables."""
    doc: dict = {"name": name, "tasks": _records(tasks, "tasks")}
    if edges is not None:
        doc["edges"] = _records(edges, "edges")
    if requests is not None:
        doc["requests"] = _records(requests, "requests")
    return workload_from_dict(doc)


def cluster_from_frames(nodes, links=None, *, name: str = "cluster", default_bandwidth: float | None = None,
                        default_latency: float = 0.0,
                        speed_factors: Mapping[str, Mapping[str, float]] | None = None) -> Cluster:
    """A checked ``Cluster`` from a nodes table, an optional links table and the cluster-wide
    settings (``speed_factors[node_kind][task_kind]``, as in the spec)."""
    doc: dict = {"name": name, "nodes": _records(nodes, "nodes"),
                 "default_bandwidth": default_bandwidth, "default_latency": default_latency}
    if links is not None:
        doc["links"] = _records(links, "links")
    if speed_factors is not None:
        doc["speed_factors"] = speed_factors
    return cluster_from_dict(doc)


def speed_factors_from_frame(frame) -> dict[str, dict[str, float]]:
    """``speed_factors`` from a ``node_kind,task_kind,factor`` table."""
    _check_columns(frame, "speed_factors", _SPEED_FACTOR_COLUMNS, _SPEED_FACTOR_COLUMNS)
    out: dict = {}
    for i, row in enumerate(frame.to_dict("records")):
        for column in ("node_kind", "task_kind"):
            if not isinstance(row[column], str) or not row[column].strip():
                raise SpecError(f"speed_factors[{i}].{column}", f"must be a non-empty string, got {row[column]!r}")
        by_task = out.setdefault(row["node_kind"], {})
        if row["task_kind"] in by_task:
            raise SpecError(f"speed_factors[{i}]",
                            f"second factor for node kind {row['node_kind']!r} and task kind {row['task_kind']!r}")
        by_task[row["task_kind"]] = row["factor"]
    return out


def read_csv(path: Path, table: str):
    """One CSV table as a DataFrame; unreadable files become a ``SpecError`` on ``<table>.csv``."""
    import pandas as pd

    try:
        header = pd.read_csv(path, nrows=0).columns
        # Only an empty cell is blank: a task may well be called "NA" or "null".
        return pd.read_csv(path, dtype={c: str for c in header if c in _TEXT_COLUMNS}, skipinitialspace=True,
                           keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as e:
        raise SpecError(f"{table}.csv", f"cannot read as CSV: {str(e).strip() or type(e).__name__}") from None


def directory_sections(directory: Path) -> dict[str, Callable[[], object]]:
    """What a directory of CSV tables holds: ``{"workload": build, "cluster": build}`` (either may
    be missing), each built only when asked for."""
    present = {p.stem: p for p in sorted(directory.glob("*.csv"))}
    for stem in present:
        if stem not in WORKLOAD_TABLES + CLUSTER_TABLES:
            raise SpecError(f"{stem}.csv", f"unknown table; expected {list(WORKLOAD_TABLES + CLUSTER_TABLES)}")
    for main, tables in (("tasks", WORKLOAD_TABLES), ("nodes", CLUSTER_TABLES)):
        extra = [t for t in tables if t in present and main not in present]
        if extra:
            raise SpecError(f"{extra[0]}.csv", f"given without {main}.csv")
    if "tasks" not in present and "nodes" not in present:
        raise SpecError(str(directory), "holds neither tasks.csv nor nodes.csv")

    def table(stem: str):
        return read_csv(present[stem], stem) if stem in present else None

    name = directory.resolve().name
    sections: dict[str, Callable[[], object]] = {}
    if "tasks" in present:
        sections["workload"] = lambda: workload_from_frames(
            table("tasks"), table("edges"), table("requests"), name=name)
    if "nodes" in present:
        def cluster() -> Cluster:
            factors = table("speed_factors")
            return cluster_from_frames(
                table("nodes"), table("links"), name=name,
                speed_factors=None if factors is None else speed_factors_from_frame(factors))
        sections["cluster"] = cluster
    return sections

"""Workloads and clusters from pandas tables (DataFrames, or a directory of CSV files).

One row per entry, one column per spec field (the JSON Schema's names); an empty cell means
the field's default. List fields (``allowed_kinds``, ``allowed_zones``) are ``;``-separated
strings (``gpu;cpu``). A directory holds ``tasks.csv`` [``edges.csv``, ``requests.csv``] for a
workload and/or ``nodes.csv`` [``links.csv``, ``speed_factors.csv``, ``node_speed_factors.csv``]
for a cluster; ``speed_factors.csv`` has the columns ``node_kind,task_kind,factor`` and
``node_speed_factors.csv`` (one node's own factors, as a calibration writes them)
``node,task_kind,factor``. Errors name the row by id
(``tasks['t7'].work``) or by its 0-based position among the data rows (``tasks[7].work``), and
for a CSV file add its 1-based data row and line (``data row 8, line 9 of tasks.csv``). A row
with more cells than the header is refused; missing trailing cells are empty.
pandas is imported inside the functions, so ``import core`` stays light.
"""

from __future__ import annotations

import csv
import math
import re
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
_TEXT_COLUMNS = ("id", "kind", "request", "source", "target", "zone", "a", "b", "node_kind", "node", "task_kind",
                 *_LIST_COLUMNS)
_SPEED_FACTOR_COLUMNS = ("node_kind", "task_kind", "factor")
_NODE_SPEED_FACTOR_COLUMNS = ("node", "task_kind", "factor")
WORKLOAD_TABLES = ("tasks", "edges", "requests")
CLUSTER_TABLES = ("nodes", "links", "speed_factors", "node_speed_factors")


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


def _numeric_columns(what: str, row_schema: dict) -> set[str]:
    """The columns the schema types as numbers."""
    defs = schema(what)["$defs"]
    numeric = set()
    for column, prop in row_schema["properties"].items():
        if "$ref" in prop:
            prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
        types = prop.get("type", ())
        if "number" in ([types] if isinstance(types, str) else types):
            numeric.add(column)
    return numeric


def _excerpt(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "...'"


def _row_name(table: str, row: dict, i: int) -> str:
    """How the spec names a row: by id (``tasks['a']``), by its ends (``edges['a'->'b']``), else
    by 0-based position (``tasks[3]``)."""
    def text(column):
        value = row.get(column)
        return value if isinstance(value, str) and value.strip() else None

    if table == "edges" and text("source") and text("target"):
        return f"edges[{_excerpt(row['source'])}->{_excerpt(row['target'])}]"
    if table == "links" and text("a") and text("b"):
        return f"links[{_excerpt(row['a'])},{_excerpt(row['b'])}]"
    if text("id"):
        return f"{table}[{_excerpt(row['id'])}]"
    return f"{table}[{i}]"


def _where(frame, i: int) -> str:
    """``data row 3, line 4 of tasks.csv`` for a table read from a file; ``row 3`` otherwise."""
    lines = frame.attrs.get("lines")
    if lines is not None and i < len(lines):
        return f"data row {i + 1}, line {lines[i]} of {frame.attrs['source']}"
    return f"row {i + 1}"


def _number(value: object) -> object:
    """A numeric cell as a float: text (its column held something that is not a number) is
    parsed, text that is no number stays text for the schema to refuse naming its row, and an
    integer beyond float range is inf (refused as not finite, where printing it would fail)."""
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    return value


def _records(frame, table: str) -> list[dict]:
    """The rows of ``frame`` as spec entries: blank optional cells left out, lists split,
    numeric cells as numbers."""
    what, definition = _ROW_SCHEMA[table]
    row_schema = schema(what)["$defs"][definition]
    required = tuple(row_schema["required"])
    _check_columns(frame, table, tuple(row_schema["properties"]), required)
    numeric = _numeric_columns(what, row_schema)
    rows = []
    for row in frame.to_dict("records"):
        entry = {}
        for column, value in row.items():
            if column in _LIST_COLUMNS and isinstance(value, str):
                value = [part.strip() for part in value.split(";") if part.strip()] or None
            if column in required or not _blank(value):
                if column in numeric:
                    # An empty required number stays an empty string: NaN would pass the schema.
                    value = "" if _blank(value) else _number(value)
                entry[column] = value
        rows.append(entry)
    return rows


_ROW_FIELD = re.compile(r"^(tasks|edges|requests|nodes|links)\[(.*?)\](?:\.|$)")


def _located(error: SpecError, frames: dict) -> SpecError:
    """``error`` with the data row and file line it points at, when it names a row of a table
    read from a CSV file."""
    match = _ROW_FIELD.match(error.field)
    frame = frames.get(match.group(1)) if match else None
    if frame is None or "lines" not in frame.attrs or "(data row" in error.reason:
        return error
    table, key = match.groups()
    for i, row in enumerate(frame.to_dict("records")):
        if _row_name(table, row, i) == f"{table}[{key}]":
            return SpecError(error.field, f"{error.reason} ({_where(frame, i)})")
    return error


# A smallest valid main table, so that another table's rows can be checked on their own.
_PLACEHOLDER = {"workload": {"tasks": [{"id": "t", "work": 0.0}]},
                "cluster": {"nodes": [{"id": "n", "kind": "k", "speed": 1.0, "memory": 0.0}]}}


def _first_bad_row(doc: dict, what: str, tables: tuple[str, ...]) -> SpecError | None:
    """The schema error of the first bad row, tables in order (``check_document`` reports the
    most relevant error, which need not be the first row: a user fixes rows top down). Found
    by bisecting on prefixes of the table: O(n log n) validation, on the error path only."""
    from apportion.core.spec import check_document

    base = {k: v for k, v in doc.items() if k not in tables} | _PLACEHOLDER[what]

    def error_of(table: str, k: int) -> SpecError | None:
        try:
            check_document({**base, table: doc[table][:k]}, what)
        except SpecError as error:
            return error
        return None

    for table in (t for t in tables if doc.get(t)):
        if error_of(table, len(doc[table])) is None:
            continue
        lo, hi = 1, len(doc[table])
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if error_of(table, mid) is not None else (mid + 1, hi)
        return error_of(table, lo)
    return None


def workload_from_frames(tasks, edges=None, requests=None, *, name: str = "workload") -> Workload:
    """A checked ``Workload`` from a tasks table and optional edges and requests tables."""
    doc: dict = {"name": name, "tasks": _records(tasks, "tasks")}
    if edges is not None:
        doc["edges"] = _records(edges, "edges")
    if requests is not None:
        doc["requests"] = _records(requests, "requests")
    try:
        return workload_from_dict(doc)
    except SpecError as error:
        error = _first_bad_row(doc, "workload", WORKLOAD_TABLES) or error
        raise _located(error, {"tasks": tasks, "edges": edges, "requests": requests}) from None


def cluster_from_frames(nodes, links=None, *, name: str = "cluster", default_bandwidth: float | None = None,
                        default_latency: float = 0.0,
                        speed_factors: Mapping[str, Mapping[str, float]] | None = None,
                        node_speed_factors: Mapping[str, Mapping[str, float]] | None = None) -> Cluster:
    """A checked ``Cluster`` from a nodes table, an optional links table and the cluster-wide
    settings (``speed_factors[node_kind][task_kind]``, ``node_speed_factors[node][task_kind]``,
    as in the spec)."""
    doc: dict = {"name": name, "nodes": _records(nodes, "nodes"),
                 "default_bandwidth": default_bandwidth, "default_latency": default_latency}
    if links is not None:
        doc["links"] = _records(links, "links")
    if speed_factors is not None:
        doc["speed_factors"] = speed_factors
    if node_speed_factors is not None:
        doc["node_speed_factors"] = node_speed_factors
    try:
        return cluster_from_dict(doc)
    except SpecError as error:
        error = _first_bad_row(doc, "cluster", ("nodes", "links")) or error
        raise _located(error, {"nodes": nodes, "links": links}) from None


def speed_factors_from_frame(frame, table: str = "speed_factors") -> dict[str, dict[str, float]]:
    """``speed_factors`` from a ``node_kind,task_kind,factor`` table, or (``table``
    ``node_speed_factors``) ``node_speed_factors`` from a ``node,task_kind,factor`` one."""
    columns = _NODE_SPEED_FACTOR_COLUMNS if table == "node_speed_factors" else _SPEED_FACTOR_COLUMNS
    key = columns[0]
    _check_columns(frame, table, columns, columns)
    out: dict = {}
    for i, row in enumerate(frame.to_dict("records")):
        for column in (key, "task_kind"):
            if not isinstance(row[column], str) or not row[column].strip():
                raise SpecError(f"{table}[{i}].{column}", f"must be a non-empty string, got {row[column]!r}")
        by_task = out.setdefault(row[key], {})
        if row["task_kind"] in by_task:
            raise SpecError(f"{table}[{i}]",
                            f"second factor for {key.replace('_', ' ')} {row[key]!r} and task kind {row['task_kind']!r}")
        by_task[row["task_kind"]] = _number(row["factor"])
    return out


def _data_row_lines(path: Path, table: str) -> list[int]:
    """The file line each data row starts on (blank lines skipped, as pandas does); a row with
    more cells than the header is refused (pandas would shift its cells into other columns).
    A row with fewer cells leaves the missing ones empty."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = next(reader, None)
        lines: list[int] = []
        first = reader.line_num + 1
        for cells in reader:
            if cells:
                if header is not None and len(cells) > len(header):
                    raise SpecError(f"{table}.csv", f"data row {len(lines) + 1} (line {first}) has {len(cells)} "
                                    f"cells, the header {len(header)}")
                lines.append(first)
            first = reader.line_num + 1
    return lines


def read_csv(path: Path, table: str):
    """One CSV table as a DataFrame, each row's file line in ``frame.attrs["lines"]``; unreadable
    files become a ``SpecError`` on ``<table>.csv``."""
    import pandas as pd

    try:
        lines = _data_row_lines(path, table)
        header = pd.read_csv(path, nrows=0).columns
        # Only an empty cell is blank: a task may well be called "NA" or "null".
        frame = pd.read_csv(path, dtype={c: str for c in header if c in _TEXT_COLUMNS}, skipinitialspace=True,
                            keep_default_na=False, na_values=[""])
    except SpecError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError,
            csv.Error) as e:
        raise SpecError(f"{table}.csv", f"cannot read as CSV: {str(e).strip()[:200] or type(e).__name__}") from None
    if len(lines) == len(frame):
        frame.attrs.update(lines=lines, source=f"{table}.csv")
    return frame


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
            factors, own = table("speed_factors"), table("node_speed_factors")
            return cluster_from_frames(
                table("nodes"), table("links"), name=name,
                speed_factors=None if factors is None else speed_factors_from_frame(factors),
                node_speed_factors=None if own is None else speed_factors_from_frame(own, "node_speed_factors"))
        sections["cluster"] = cluster
    return sections

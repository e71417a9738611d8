"""Load workloads and clusters from whatever the user has, and check them.

A source is a path to a ``.json``/``.yaml``/``.yml`` file, a directory of CSV tables
(``core.tables``), or an already-parsed dict. A file holds a workload, a cluster or both under
the top-level keys ``workload`` and ``cluster``; a bare workload (top-level ``tasks``), a bare
cluster (``nodes``) or a WfCommons WfFormat instance (``workflow``) is recognised too.
Everything wrong comes out as one ``SpecError`` naming the field and the reason.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from apportion.core.atomic import write_text
from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Instance, Workload
from apportion.core.spec import (
    SpecErrors, cluster_from_dict, cluster_to_dict, key_text, workload_from_dict, workload_to_dict,
)
from apportion.core.wfformat import DEFAULT_REFERENCE_SPEED, is_wfformat, workload_from_wfformat

__all__ = [
    "cluster_to_dict", "describe", "dump", "load_cluster", "load_instance", "load_workload",
    "read_document", "workload_to_dict",
]

Source = str | os.PathLike | Mapping
_SECTIONS = ("workload", "cluster")


def _parse_yaml(text: str, where: str) -> object:
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(where, f"invalid YAML: {e.problem or e.context}{at}") from None
    except yaml.YAMLError as e:
        raise SpecError(where, f"invalid YAML: {e}") from None


def read_document(path: str | os.PathLike) -> object:
    """Parse a JSON or YAML file (``.json`` is read as JSON, anything else as YAML)."""
    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecError(where, "no such file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise SpecError(where, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not raw.strip():
        raise SpecError(where, "empty file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError(where, "not a text file (not UTF-8); expected JSON or YAML") from None
    try:
        if Path(path).suffix.lower() == ".json":
            try:
                return json.loads(text)
            except json.JSONDecodeError as e:
                raise SpecError(where, f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        return _parse_yaml(text, where)
    except RecursionError:
        raise SpecError(where, "nested too deeply") from None


def _sections(source: Source, reference_speed: float) -> tuple[str, str, dict[str, Callable[[], object]]]:
    """(where, format, {"workload"/"cluster": build}) for a source; nothing is built yet."""
    if isinstance(source, Mapping):
        where, doc = "(top level)", source
    elif isinstance(source, (str, os.PathLike)):
        if Path(source).is_dir():
            from apportion.core.tables import directory_sections

            return str(source), "CSV tables", directory_sections(Path(source))
        where, doc = str(source), read_document(source)
    else:
        raise SpecError("source", f"must be a path or a mapping, got {type(source).__name__}")
    if not isinstance(doc, Mapping):
        kind = "a list" if isinstance(doc, list) else f"a {type(doc).__name__} value"
        raise SpecError(where, f"the top level must be a mapping, got {kind}")
    if any(key in doc for key in _SECTIONS):
        for key in doc:
            if key not in _SECTIONS:
                raise SpecError(key_text(key), "unknown top-level key; expected 'workload' and/or 'cluster'")
        builders = {"workload": workload_from_dict, "cluster": cluster_from_dict}
        return where, "spec", {key: (lambda key=key: builders[key](doc[key])) for key in _SECTIONS if key in doc}
    if is_wfformat(doc):
        version = doc.get("schemaVersion")
        return where, f"WfFormat {version}" if isinstance(version, str) else "WfFormat", {
            "workload": lambda: workload_from_wfformat(doc, reference_speed=reference_speed)}
    if "tasks" in doc:
        return where, "spec", {"workload": lambda: workload_from_dict(doc)}
    if "nodes" in doc:
        return where, "spec", {"cluster": lambda: cluster_from_dict(doc)}
    keys = sorted(map(str, doc))[:8]
    raise SpecError(where, "not a workload, cluster or WfFormat instance: expected the top-level key "
                           f"'workload', 'cluster', 'tasks', 'nodes' or 'workflow', got {keys}")


def _section(source: Source, what: str, reference_speed: float):
    where, _, sections = _sections(source, reference_speed)
    if what not in sections:
        raise SpecError(where, f"holds no {what} (it holds a {' and a '.join(sections)})")
    return sections[what]()


def load_workload(source: Source, *, reference_speed: float = DEFAULT_REFERENCE_SPEED) -> Workload:
    """A checked ``Workload`` from a spec file, CSV directory, WfFormat file or parsed dict.

    ``reference_speed`` (GFLOP/s) turns WfFormat runtimes into work; other formats ignore it.
    """
    return _section(source, "workload", reference_speed)


def load_cluster(source: Source) -> Cluster:
    """A checked ``Cluster`` from a spec file, CSV directory or parsed dict."""
    return _section(source, "cluster", DEFAULT_REFERENCE_SPEED)


def load_instance(workload_source: Source, cluster_source: Source | None = None, *,
                  reference_speed: float = DEFAULT_REFERENCE_SPEED) -> Instance:
    """The workload on the cluster, checked together; one source may hold both."""
    workload = load_workload(workload_source, reference_speed=reference_speed)
    return Instance.build(workload, load_cluster(workload_source if cluster_source is None else cluster_source))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _build_all(sections: Mapping[str, Callable[[], object]]) -> dict[str, object]:
    """Build every section; when any fails, raise every error found (``SpecErrors`` when more
    than one: each section's schema errors, or its first error past the schema)."""
    built, errors, failures = {}, [], []
    for what, build in sections.items():
        try:
            built[what] = build()
        except SpecError as error:
            failures.append(error)
            errors.extend(getattr(error, "errors", [error]))
    if len(errors) > 1:  # it reads as the error building the first section alone would raise
        raise SpecErrors(errors, failures[0])
    if errors:
        raise errors[0]
    return built


def describe(source: Source, *, reference_speed: float = DEFAULT_REFERENCE_SPEED) -> str:
    """What ``apportion validate FILE`` prints: what the source holds, with counts.

    Raises ``SpecError`` for anything wrong, including a workload that cannot run on the
    cluster in the same source; ``SpecErrors`` (all of them) when there is more than one.
    """
    _, fmt, sections = _sections(source, reference_speed)
    built = _build_all(sections)
    workload, cluster = built.get("workload"), built.get("cluster")
    lines = []
    if workload is not None:
        lines.append(f"workload {workload.name!r}" + ("" if fmt == "spec" else f" ({fmt})") + ": " + ", ".join(
            _count(len(items), noun) for items, noun in
            ((workload.tasks, "task"), (workload.edges, "edge"), (workload.requests, "request"))))
    if cluster is not None:
        kinds = len({n.kind for n in cluster.nodes})
        zones = len({n.zone for n in cluster.nodes})
        lines.append(f"cluster {cluster.name!r}" + ("" if fmt == "spec" else f" ({fmt})") + ": "
                     f"{_count(len(cluster.nodes), 'node')} ({_count(kinds, 'kind')}, {_count(zones, 'zone')}), "
                     f"{_count(len(cluster.links), 'link')}")
    if workload is not None and cluster is not None:
        instance = Instance.build(workload, cluster)
        lines.append(f"instance: every one of the {instance.n_tasks} tasks fits at least one of the "
                     f"{instance.n_nodes} nodes")
    return "\n".join(lines)


def _plain(value: object, where: str) -> object:
    """``value`` as YAML and JSON write it: mappings as dicts, sequences as lists, NumPy numbers
    as Python ones (a workload built in Python may hold them)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, Mapping):
        return {key: _plain(item, f"{where}.{key_text(key)}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise SpecError(where, f"cannot be written to a spec: {type(value).__name__} {value!r}")


def dump(obj_dict: Mapping, path: str | os.PathLike) -> None:
    """Write a spec dict (``workload_to_dict``/``cluster_to_dict``, or ``{"workload": ...,
    "cluster": ...}``) as JSON or YAML, chosen by the file's extension, atomically."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise SpecError(str(path), "unknown extension; use .json, .yaml or .yml")
    doc = _plain(obj_dict, "(top level)")
    if suffix == ".json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        import yaml

        text = yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    write_text(path, text)

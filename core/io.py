"""Load workloads and clusters from whatever the user has, and check them.

A source is a path to a ``.json``/``.yaml``/``.yml`` file, a directory of CSV tables
(``core.tables``), or an already-parsed dict. A file holds a workload, a cluster or both under
the top-level keys ``workload`` and ``cluster``; a bare workload (top-level ``tasks``), a bare
cluster (``nodes``) or a WfCommons WfFormat instance (``workflow``) is recognised too.
Everything wrong comes out as one ``SpecError`` naming the field and the reason.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from apportion.core.atomic import write_text
from apportion.core.errors import SpecError, excerpt
from apportion.core.model import Cluster, Instance, Workload
from apportion.core.spec import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_NODES,
    SpecErrors,
    check_cluster_size,
    check_workload_size,
    cluster_from_dict,
    cluster_to_dict,
    key_text,
    workload_from_dict,
    workload_to_dict,
)
from apportion.core.wfformat import DEFAULT_REFERENCE_SPEED, is_wfformat, workload_from_wfformat

__all__ = [
    "cluster_to_dict", "describe", "dump", "load_cluster", "load_instance", "load_workload",
    "read_document", "workload_to_dict",
]

Source = str | os.PathLike | Mapping
_SECTIONS = ("workload", "cluster")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")  # JSON joins escaped pairs; PyYAML refuses them
# A JSON number that YAML 1.1 reads as a string: an exponent without a point (1e5) or without a
# sign (1.5e5). Every JSON number follows ':', '[' or ','; a match inside a string only sends the
# text to the YAML parser.
_YAML_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")  # line breaks to YAML, even inside quotes
_YAML_STRING_FLOAT = re.compile(r"[:\[,]\s*-?\d+(?:[eE]|\.\d*[eE]\d)")


def _huge_int(digits: str) -> float:
    """An integer too long for Python to convert (``sys.get_int_max_str_digits``) as the
    infinity of its sign: no field takes a number that large, so the field's own check refuses
    it by name ("must be a finite number") instead of the parser failing with no field."""
    return -math.inf if digits.lstrip().startswith("-") else math.inf


def _json_int(digits: str) -> int | float:
    limit = sys.get_int_max_str_digits()
    return _huge_int(digits) if limit and len(digits) > limit else int(digits)


def _yaml_loader():
    """The safe YAML loader (C when available) whose integers too long to convert read as
    infinities, like JSON's (``_huge_int``)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class SpecLoader(base):
        def construct_yaml_int(self, node):
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # past the int string-conversion limit
                return _huge_int(str(node.value))

    SpecLoader.add_constructor("tag:yaml.org,2002:int", SpecLoader.construct_yaml_int)
    return SpecLoader


def _expanded_size(node, sizes: dict, where: str) -> int:
    """How many nodes ``node`` stands for with every alias expanded (each anchored node is
    counted once per reference, computed once): "a billion laughs" is refused before it is
    built or checked, and so is an alias inside the node it names."""
    from yaml import MappingNode, SequenceNode

    key = id(node)
    if key in sizes:
        if sizes[key] is None:
            raise SpecError(where, "an alias refers to the node it is inside (a recursive document)")
        return sizes[key]
    sizes[key] = None
    size = 1
    if isinstance(node, MappingNode):
        size += sum(_expanded_size(k, sizes, where) + _expanded_size(v, sizes, where) for k, v in node.value)
    elif isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, sizes, where) for child in node.value)
    if size > MAX_DOCUMENT_NODES:
        raise SpecError(where, f"its aliases expand to more than {MAX_DOCUMENT_NODES:,} values "
                               "(the limit of a spec document)")
    sizes[key] = size
    return size


class _NotReadAlike(Exception):
    """A JSON value that YAML reads differently (NaN, Infinity: strings to YAML), or one JSON cannot write."""


def _refuse_constant(name: str):
    raise _NotReadAlike(name)  # NaN, Infinity: strings to YAML


def _as_json(text: str) -> tuple[bool, object]:
    """(True, document) when ``text`` is JSON that YAML reads as the same document, which the
    JSON parser reads 50 times faster than libyaml (``dump`` writes YAML so); (False, None)
    for anything else, which then goes to the YAML parser and its errors (with line numbers).
    Left to YAML: text with a tab, a surrogate escape, a character YAML refuses or takes for a
    line break, a float or a constant YAML 1.1 reads as a string."""
    if text.lstrip()[:1] not in ("{", "[") or "\t" in text or _SURROGATE_ESCAPE.search(text):
        return False, None
    from yaml.reader import Reader

    if Reader.NON_PRINTABLE.search(text) or _YAML_LINE_BREAKS.search(text) or _YAML_STRING_FLOAT.search(text):
        return False, None
    try:
        return True, json.loads(text, parse_int=_json_int, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, _NotReadAlike, RecursionError):
        return False, None


def parse_yaml(text: str, where: str) -> object:
    """A YAML (or JSON) document from ``text``, safely: no tags beyond YAML's own, alias
    expansion bounded (``MAX_DOCUMENT_NODES``), integers of any length; ``SpecError`` naming
    ``where`` otherwise. JSON-compatible text (no aliases) takes the JSON parser (``_as_json``)."""
    is_json, doc = _as_json(text)
    if is_json:
        return doc
    import yaml

    loader = _yaml_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, where)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(where, f"invalid YAML: {e.problem or e.context}{at}") from None
    except yaml.YAMLError as e:
        raise SpecError(where, f"invalid YAML: {e}") from None
    finally:
        loader.dispose()


def _check_regular(path: str | os.PathLike, where: str, limit_words: str) -> None:
    """Refuse, before it is opened, anything but a regular file of at most ``MAX_DOCUMENT_BYTES``:
    reading a device such as /dev/zero or a named pipe could block forever or never end."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError(where, "no such file") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise SpecError(where, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(where, "not a regular file (a device, pipe or folder)")
    if info.st_size > MAX_DOCUMENT_BYTES:
        raise SpecError(where, f"{info.st_size:,} bytes; {limit_words} may hold at most {MAX_DOCUMENT_BYTES:,}")


def _read_bounded(path: str | os.PathLike, where: str) -> bytes:
    """The bytes of a regular file of at most ``MAX_DOCUMENT_BYTES`` (``_check_regular``)."""
    _check_regular(path, where, "a document")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise SpecError(where, f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:  # it grew since it was checked
        raise SpecError(where, f"more than {MAX_DOCUMENT_BYTES:,} bytes; a document may hold at most that")
    return raw


def read_document(path: str | os.PathLike) -> object:
    """Parse a JSON or YAML file (``.json`` is read as JSON, anything else as YAML)."""
    where = str(path)
    raw = _read_bounded(path, where)
    if not raw.strip():
        raise SpecError(where, "empty file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError(where, "not a text file (not UTF-8); expected JSON or YAML") from None
    try:
        if Path(path).suffix.lower() == ".json":
            try:
                return json.loads(text, parse_int=_json_int)
            except json.JSONDecodeError as e:
                raise SpecError(where, f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        return parse_yaml(text, where)
    except RecursionError:
        raise SpecError(where, "nested too deeply") from None


def is_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a folder; False for a name no file system takes (too long, a NUL)."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def check_table_files(directory: Path) -> None:
    """Every CSV table of a folder is a regular file of bounded size (``_check_regular``)."""
    for path in sorted(directory.glob("*.csv")):
        _check_regular(path, path.name, "a table")


def _sections(source: Source, reference_speed: float) -> tuple[str, str, dict[str, Callable[[], object]]]:
    """(where, format, {"workload"/"cluster": build}) for a source; nothing is built yet."""
    if isinstance(source, Mapping):
        where, doc = "(top level)", source
    elif isinstance(source, (str, os.PathLike)):
        if is_folder(source):
            from apportion.core.tables import directory_sections

            check_table_files(Path(source))
            return str(source), "CSV tables", _sized(directory_sections(Path(source)))
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
        return where, f"WfFormat {version}" if isinstance(version, str) else "WfFormat", _sized({
            "workload": lambda: workload_from_wfformat(doc, reference_speed=reference_speed)})
    if "tasks" in doc:
        return where, "spec", {"workload": lambda: workload_from_dict(doc)}
    if "nodes" in doc:
        return where, "spec", {"cluster": lambda: cluster_from_dict(doc)}
    keys = sorted(map(str, doc))[:8]
    raise SpecError(where, "not a workload, cluster or WfFormat instance: expected the top-level key "
                           f"'workload', 'cluster', 'tasks', 'nodes' or 'workflow', got {keys}")


def _sized(sections: dict[str, Callable[[], object]]) -> dict[str, Callable[[], object]]:
    """The builders of a format that is not the spec, each followed by the spec's size limits
    (the spec checks them before building)."""
    checks = {"workload": check_workload_size, "cluster": check_cluster_size}

    def checked(what: str, build: Callable[[], object]) -> Callable[[], object]:
        def build_checked():
            built = build()
            checks[what](built)
            return built
        return build_checked

    return {what: checked(what, build) for what, build in sections.items()}


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


def count_noun(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1 (``1 node``, ``3 nodes``)."""
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
            count_noun(len(items), noun) for items, noun in
            ((workload.tasks, "task"), (workload.edges, "edge"), (workload.requests, "request"))))
    if cluster is not None:
        kinds = len({n.kind for n in cluster.nodes})
        zones = len({n.zone for n in cluster.nodes})
        slots = sum(n.slots for n in cluster.nodes)  # said only when some node runs several tasks at once
        lines.append(f"cluster {cluster.name!r}" + ("" if fmt == "spec" else f" ({fmt})") + ": "
                     f"{count_noun(len(cluster.nodes), 'node')} ({count_noun(kinds, 'kind')}, {count_noun(zones, 'zone')}"
                     + ("" if slots == len(cluster.nodes) else f", {count_noun(slots, 'slot')}") + "), "
                     f"{count_noun(len(cluster.links), 'link')}")
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
    raise SpecError(where, f"cannot be written to a spec: {type(value).__name__} {excerpt(value)}")


def dump(obj_dict: Mapping, path: str | os.PathLike) -> None:
    """Write a spec dict (``workload_to_dict``/``cluster_to_dict``, or ``{"workload": ...,
    "cluster": ...}``) as JSON or YAML, chosen by the file's extension, atomically. YAML is
    written in its JSON-compatible flow form, one entry a line, so that a large generated spec
    parses at JSON's speed (``_as_json``); a spec with a NaN or an infinity in block form."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise SpecError(str(path), "unknown extension; use .json, .yaml or .yml")
    doc = _plain(obj_dict, "(top level)")
    if suffix == ".json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        try:
            text = _layout(doc, "") + "\n"
        except _NotReadAlike:  # a NaN or an infinity: JSON has none, YAML writes .nan / .inf
            import yaml

            text = yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)
    write_text(path, text)


def _inline(value: object) -> str:
    """``value`` as JSON on one line whose floats YAML 1.1 reads as floats too (``1.0e+20``,
    not ``1e+20``); raises ``_NotReadAlike`` for a NaN or an infinity."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_json_string(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_inline, value)) + "]"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotReadAlike(repr(value))
        text = repr(value)
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    return _json_string(value) if isinstance(value, str) else json.dumps(value)


def _json_string(text: str) -> str:
    """A JSON string with the characters YAML refuses raw escaped; the others written as they
    are (an escaped pair of surrogates is not YAML)."""
    from yaml.reader import Reader

    escaped = json.dumps(text, ensure_ascii=False)
    for unsafe in (Reader.NON_PRINTABLE, _YAML_LINE_BREAKS):
        escaped = unsafe.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return escaped


def _layout(value: object, indent: str) -> str:
    """A spec as JSON text that YAML reads alike (``_as_json``), one list entry a line: a list
    of mappings one entry a line, a mapping that holds lists or mappings one key a line."""
    inner = indent + "  "
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + _inline(v) for v in value) + f"\n{indent}]"
    if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
        return "{\n" + ",\n".join(f"{inner}{_json_string(k)}: {_layout(v, inner)}" for k, v in value.items()) + \
            f"\n{indent}}}"
    return _inline(value)

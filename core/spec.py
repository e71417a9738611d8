"""The workload and cluster spec: plain dicts (parsed JSON/YAML) <-> the model's dataclasses.

A spec maps 1:1 onto ``core.model``: the keys of a task are the fields of ``Task`` and so on.
Dicts are checked against the JSON Schemas in ``core/schema`` (draft 2020-12) and then by the
model's own checks, so every problem comes out as one ``SpecError`` naming the field.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path

from apportion.core.errors import SpecError, excerpt
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Request, Task, Workload, ids_to_tuple

SCHEMA_DIR = Path(__file__).parent / "schema"

# Size limits of a spec document (docs/spec-formats.md, "Limits of a spec document"): past them
# a document is refused with one line before it is checked or built, so that no input can
# take unbounded time or memory. A document's bytes bound JSON; YAML's aliases can make a small
# file stand for a huge one, so the values it stands for are bounded too.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
MAX_DOCUMENT_NODES = 5_000_000
MAX_TASKS = 100_000
MAX_EDGES = 500_000
MAX_REQUESTS = MAX_TASKS
MAX_CLUSTER_NODES = 2_000  # the model keeps task x node and node x node tables
MAX_LINKS = 100_000
_LIMITS = {"tasks": MAX_TASKS, "edges": MAX_EDGES, "requests": MAX_REQUESTS, "nodes": MAX_CLUSTER_NODES,
           "links": MAX_LINKS}

# How a list entry is named in error paths, as the model names it (tasks['x'], edges['a'->'b']).
_LABEL_KEYS = {
    "tasks": ("id",), "requests": ("id",), "nodes": ("id",),
    "edges": ("source", "target"), "links": ("a", "b"),
}
_LABEL_FORMAT = {"edges": "{}->{}", "links": "{},{}"}
_TYPE_NAMES = {
    "number": "a number", "string": "a string", "array": "a list", "object": "a mapping",
    "null": "null", "integer": "an integer", "boolean": "true or false",
}
_short = excerpt


@functools.cache
def schema(what: str) -> dict:
    """The JSON Schema of a ``"workload"`` or a ``"cluster"``."""
    return json.loads((SCHEMA_DIR / f"{what}.schema.json").read_text())


def _inline_refs(node: object, defs: Mapping) -> object:
    """``node`` with every local ``$ref`` replaced by its definition (the schemas have no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline_refs(defs[node["$ref"].removeprefix("#/$defs/")], defs), **rest}
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@functools.cache
def _validator(what: str):
    """A validator of the schema with its references inlined: resolving ``$ref`` for every
    entry made validation about 2.5 times slower (5000 tasks and 15000 edges)."""
    import jsonschema

    return jsonschema.Draft202012Validator(_inline_refs(schema(what), schema(what)["$defs"]))


class SpecErrors(SpecError):
    """Several problems in one input, in document order. It reads as the most relevant one
    (``field``, ``reason``, ``str``), so callers that show one line stay as they are;
    ``apportion validate`` lists ``errors``."""

    def __init__(self, errors: list[SpecError], most_relevant: SpecError | None = None):
        first = most_relevant or errors[0]
        super().__init__(first.field, first.reason)
        self.errors = errors


@functools.cache
def _fast_check(what: str):
    """The same schema compiled to Python by fastjsonschema (draft 7 covers every keyword the
    schemas use): about 40 times faster than jsonschema on 21,000 tasks. It only says whether a
    document passes; jsonschema, the authority, names the errors of one that does not."""
    import fastjsonschema

    inlined = _inline_refs(schema(what), schema(what)["$defs"])
    return fastjsonschema.compile({k: v for k, v in inlined.items() if k != "$schema"})


def _passes_fast_check(doc: object, what: str) -> bool:
    from fastjsonschema import JsonSchemaException

    try:
        _fast_check(what)(doc)
    except (JsonSchemaException, TypeError, ValueError, RecursionError):
        return False
    return True


def check_document(doc: object, what: str) -> None:
    """Raise ``SpecErrors`` for every way ``doc`` breaks the ``what`` schema; it reads as the
    most relevant one."""
    from jsonschema.exceptions import best_match, by_relevance

    if _passes_fast_check(doc, what):
        return
    found = list(_validator(what).iter_errors(doc))
    if not found:
        return
    relevance = by_relevance()

    def key(error):  # among equally relevant errors, an unknown key (often a typo) explains more
        return relevance(error), error.validator == "additionalProperties"

    # Each error's most relevant cause (an anyOf error holds one per alternative), named; jsonschema
    # reports each missing key of an entry as one more error naming the same entry, hence the set.
    named = {(e.field, e.reason): e for error in found for e in _to_spec_errors(best_match([error], key=key), doc, what)}
    raise SpecErrors(list(named.values()), _to_spec_error(best_match(found, key=key), doc, what))


def _label(list_name: object, item: object) -> str | None:
    keys = _LABEL_KEYS.get(list_name)  # type: ignore[arg-type]
    if keys is None or not isinstance(item, Mapping):
        return None
    values = [item.get(k) for k in keys]
    if not all(isinstance(v, str) and v for v in values):
        return None
    return _LABEL_FORMAT.get(list_name, "{}").format(*map(excerpt, values))  # type: ignore[arg-type]


def _render_path(doc: object, path, root: str) -> str:
    """``tasks['ct_seg_1'].work`` for a jsonschema path; list entries by id when they have one."""
    out = ""
    node, parent_key, in_map = doc, None, False
    for key in path:
        if isinstance(key, int):
            label = _label(parent_key, node[key])
            out += f"[{label if label else key}]"
        elif in_map:
            out += f"[{excerpt(key)}]"
        else:
            out += f".{key}" if out else str(key)
        in_map = in_map or key == "speed_factors"
        node, parent_key = node[key], key
    return out or root


def key_text(key: object) -> str:
    """A mapping key as it appears in an error path: bare when it is a plain (short) name."""
    return key if isinstance(key, str) and key.isidentifier() and len(key) <= 40 else excerpt(key)


def _join(field: str, key: object, root: str) -> str:
    return key_text(key) if field == root else f"{field}.{key_text(key)}"


def _to_spec_errors(error, doc: object, root: str) -> list[SpecError]:
    """``error`` as ``SpecError``s: one per missing or unknown key of an entry, else one."""
    if error.validator in ("required", "additionalProperties") and isinstance(error.instance, Mapping):
        field = _render_path(doc, error.absolute_path, root)
        if error.validator == "required":
            named = [SpecError(_join(field, key, root), "missing (required)")
                     for key in error.validator_value if key not in error.instance]
        else:
            known = sorted(error.schema.get("properties", {}))
            named = [SpecError(_join(field, key, root), f"unknown field; expected one of {known}")
                     for key in error.instance if key not in known]
        if named:
            return named
    return [_to_spec_error(error, doc, root)]


def _to_spec_error(error, doc: object, root: str) -> SpecError:
    field = _render_path(doc, error.absolute_path, root)
    value, rule, validator = error.instance, error.validator_value, error.validator
    if "propertyNames" in error.relative_schema_path:
        return SpecError(field, f"key {_short(value)} must be a non-empty string")
    if validator == "required":
        missing = next(k for k in rule if k not in value)
        return SpecError(_join(field, missing, root), "missing (required)")
    if validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = next(k for k in value if k not in known)
        return SpecError(_join(field, extra, root), f"unknown field; expected one of {known}")
    rules = error.schema if isinstance(error.schema, Mapping) else {}
    if validator in ("type", "minimum", "maximum") and rules.get("type") == "integer":  # a count: a node's slots
        return SpecError(field, f"must be an integer from {rules['minimum']} to {rules['maximum']}, got {_short(value)}")
    if validator == "type":
        wanted = [rule] if isinstance(rule, str) else rule
        return SpecError(field, f"must be {' or '.join(_TYPE_NAMES[t] for t in wanted)}, got {_short(value)}")
    if validator == "minimum":
        return SpecError(field, f"must be >= {rule:g}, got {_short(value)}")
    if validator == "exclusiveMinimum":
        return SpecError(field, f"must be > {rule:g}, got {_short(value)}")
    if validator == "maximum":  # the schemas cap numbers at the largest float: anything above is not finite
        return SpecError(field, f"must be a finite number, got {_short(value)}")
    if validator == "minItems":
        return SpecError(field, "must not be empty")
    if validator == "minLength":
        return SpecError(field, "must be a non-empty string")
    if validator == "uniqueItems":
        return SpecError(field, f"names an entry twice: {_short(value)}")
    return SpecError(field, error.message)


# --- dict -> dataclasses -----------------------------------------------------------------------

_KEPT_AS_IS = frozenset({str, float, bool, type(None)})  # most values: nothing to convert
_INTEGER_FIELDS = frozenset({"slots"})  # counts stay integers


def _entry(cls, item: Mapping, list_fields: tuple[str, ...] = ()):
    """A dataclass from a schema-checked entry: keys are field names, numbers become floats."""
    return cls(**{key: value if type(value) in _KEPT_AS_IS else _field_value(key, value, list_fields)
                  for key, value in item.items()})


def _field_value(key: str, value: object, list_fields: tuple[str, ...]) -> object:
    if key in list_fields:
        return ids_to_tuple(value)
    if key in _INTEGER_FIELDS:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _check_counts(doc: object, keys: tuple[str, ...]) -> None:
    """Refuse a document with more entries in a list than its limit (``_LIMITS``), before the
    schema check walks them."""
    if not isinstance(doc, Mapping):
        return
    for key in keys:
        entries = doc.get(key)
        if isinstance(entries, list) and len(entries) > _LIMITS[key]:
            raise SpecError(key, f"{len(entries):,} entries; a spec may hold at most {_LIMITS[key]:,} "
                                 f"(docs/spec-formats.md, limits)")


def check_workload_size(workload: Workload) -> None:
    """The spec's size limits on a workload read from another format (CSV, WfFormat)."""
    _check_counts({"tasks": list(workload.tasks), "edges": list(workload.edges),
                   "requests": list(workload.requests)}, ("tasks", "edges", "requests"))


def check_cluster_size(cluster: Cluster) -> None:
    """The spec's size limits on a cluster read from another format (CSV)."""
    _check_counts({"nodes": list(cluster.nodes), "links": list(cluster.links)}, ("nodes", "links"))


def workload_from_dict(doc: object) -> Workload:
    """A checked ``Workload`` from its spec (the value under a file's ``workload`` key)."""
    _check_counts(doc, ("tasks", "edges", "requests"))
    check_document(doc, "workload")
    workload = Workload(
        tasks=tuple(_entry(Task, t, ("allowed_kinds", "allowed_zones")) for t in doc["tasks"]),
        edges=tuple(_entry(Edge, e) for e in doc.get("edges", ())),
        requests=tuple(_entry(Request, r) for r in doc.get("requests", ())),
        **({"name": doc["name"]} if "name" in doc else {}),
    )
    check_workload(workload)
    return workload


def cluster_from_dict(doc: object) -> Cluster:
    """A checked ``Cluster`` from its spec (the value under a file's ``cluster`` key)."""
    _check_counts(doc, ("nodes", "links"))
    check_document(doc, "cluster")
    scalars = {k: (None if doc[k] is None else float(doc[k]))
               for k in ("default_bandwidth", "default_latency") if k in doc}
    cluster = Cluster(
        nodes=tuple(_entry(Node, n if type(n.get("slots", 1)) is int else {**n, "slots": int(n["slots"])})
                    for n in doc["nodes"]),
        links=tuple(_entry(Link, ln) for ln in doc.get("links", ())),
        speed_factors={nk: {tk: float(f) for tk, f in factors.items()}
                       for nk, factors in doc.get("speed_factors", {}).items()},
        node_speed_factors={node_id: {tk: float(f) for tk, f in factors.items()}
                            for node_id, factors in doc.get("node_speed_factors", {}).items()},
        **scalars,
        **({"name": doc["name"]} if "name" in doc else {}),
    )
    check_cluster(cluster)
    return cluster


def check_workload(workload: Workload) -> None:
    """Run the model's own checks (``Instance.build``) on a workload alone.

    It is built on a probe cluster on which every task fits and every pair of nodes is linked,
    so the only errors left are the workload's, worded exactly as they are later.
    """
    memory = max((t.memory for t in workload.tasks
                  if isinstance(t.memory, (int, float)) and 0 <= t.memory < math.inf), default=0.0)
    places = dict.fromkeys(
        ((t.allowed_kinds or ("probe",))[0], (t.allowed_zones or ("probe",))[0]) for t in workload.tasks
    )
    probe = Cluster(
        nodes=tuple(Node(id=f"probe-{j}", kind=kind, speed=1.0, memory=memory, zone=zone)
                    for j, (kind, zone) in enumerate(places)),
        default_bandwidth=1.0,
    )
    # Pins and previous nodes name nodes of a cluster the workload does not know yet: they are
    # checked when the workload meets its cluster.
    unplaced = tuple(t if t.pinned_node is None and t.pinned_start is None and t.pinned_end is None
                     and t.previous_node is None
                     else replace(t, pinned_node=None, pinned_start=None, pinned_end=None, previous_node=None)
                     for t in workload.tasks)
    Instance.build(replace(workload, tasks=unplaced), probe)


def check_cluster(cluster: Cluster) -> None:
    """Run the model's own checks (``Instance.build``) on a cluster alone, with a one-task probe."""
    Instance.build(Workload(tasks=(Task(id="probe", work=0.0),)), cluster)


# --- dataclasses -> dict -----------------------------------------------------------------------

# Left out of written specs while at their defaults: only re-planning and calibration set them.
_OMITTED_AT_DEFAULT = frozenset({"available_from", "failed", "overhead", "slots"})


def _plain(entry) -> dict:
    """An entry as a spec dict: tuples become lists, unset (None) fields are left out."""
    out = {}
    for f in fields(entry):
        value = getattr(entry, f.name)
        if value is not None and not (f.name in _OMITTED_AT_DEFAULT and value == f.default):
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def workload_to_dict(workload: Workload) -> dict:
    """The spec of ``workload``; ``workload_from_dict`` gives it back unchanged."""
    out: dict = {"name": workload.name, "tasks": [_plain(t) for t in workload.tasks]}
    if workload.edges:
        out["edges"] = [_plain(e) for e in workload.edges]
    if workload.requests:
        out["requests"] = [_plain(r) for r in workload.requests]
    return out


def cluster_to_dict(cluster: Cluster) -> dict:
    """The spec of ``cluster``; ``cluster_from_dict`` gives it back unchanged."""
    out: dict = {"name": cluster.name, "nodes": [_plain(n) for n in cluster.nodes]}
    if cluster.links:
        out["links"] = [_plain(ln) for ln in cluster.links]
    if cluster.default_bandwidth is not None:
        out["default_bandwidth"] = cluster.default_bandwidth
    out["default_latency"] = cluster.default_latency
    if cluster.speed_factors:
        out["speed_factors"] = {nk: dict(f) for nk, f in cluster.speed_factors.items()}
    if cluster.node_speed_factors:
        out["node_speed_factors"] = {node_id: dict(f) for node_id, f in cluster.node_speed_factors.items()}
    return out

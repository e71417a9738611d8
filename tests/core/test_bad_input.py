"""Bad input of every kind gives exactly one SpecError naming the field and the reason."""

import copy
import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.io import describe, load_cluster, load_instance, load_workload, read_document
from apportion.core.spec import MAX_CLUSTER_NODES, MAX_DOCUMENT_BYTES, MAX_EDGES, MAX_TASKS

EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"
WORKLOAD = yaml.safe_load((EXAMPLES / "workload.yaml").read_text())["workload"]
CLUSTER = yaml.safe_load((EXAMPLES / "cluster.yaml").read_text())["cluster"]
WFFORMAT = json.loads((EXAMPLES / "wfformat-small.json").read_text())


def changed(doc, path, value=None, *, delete=False):
    """A deep copy of ``doc`` with the entry at ``path`` (keys and indices) replaced or deleted."""
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


WORKLOAD_CASES = [
    # (the spec, the field the error names, words of the reason)
    (changed(WORKLOAD, ["edges"], WORKLOAD["edges"] + [{"source": "ct_report_b", "target": "ct_load_b"}]), "edges",
     "cycle: 'ct_load_b' -> 'ct_seg_b' -> 'ct_report_b' -> 'ct_load_b'"),
    (changed(WORKLOAD, ["edges", 0, "target"], "ct_nowhere"), "edges['ct_load_a'->'ct_nowhere'].target",
     "unknown task 'ct_nowhere'"),
    (changed(WORKLOAD, ["tasks", 1, "id"], "ct_load_a"), "tasks['ct_load_a']", "duplicate id"),
    (changed(WORKLOAD, ["requests", 1, "id"], "case_a"), "requests['case_a']", "duplicate id"),
    (changed(WORKLOAD, ["tasks", 1, "work"], -5), "tasks['ct_seg_a'].work", "must be >= 0, got -5"),
    (changed(WORKLOAD, ["tasks", 1, "work"], math.nan), "tasks['ct_seg_a'].work", "finite"),
    (changed(WORKLOAD, ["tasks", 1, "work"], math.inf), "tasks['ct_seg_a'].work", "finite"),
    (changed(WORKLOAD, ["tasks", 1, "work"], 10 ** 400), "tasks['ct_seg_a'].work", "finite"),
    (changed(WORKLOAD, ["tasks", 1, "work"], -10 ** 400), "tasks['ct_seg_a'].work",
     "must be >= 0, got a negative integer of about 400 digits"),
    (changed(WORKLOAD, ["tasks", 1, "memory"], "12GB"), "tasks['ct_seg_a'].memory", "must be a number, got '12GB'"),
    (changed(WORKLOAD, ["tasks", 1, "work"], True), "tasks['ct_seg_a'].work", "must be a number"),
    (changed(WORKLOAD, ["edges", 1, "data"], -1), "edges['ct_seg_a'->'ct_report_a'].data", "must be >= 0"),
    (changed(WORKLOAD, ["edges", 1, "data"], math.nan), "edges['ct_seg_a'->'ct_report_a'].data", "finite"),
    (changed(WORKLOAD, ["tasks", 1, "work"], delete=True), "tasks['ct_seg_a'].work", "missing (required)"),
    (changed(WORKLOAD, ["tasks", 1, "id"], delete=True), "tasks[1].id", "missing (required)"),
    (changed(WORKLOAD, ["tasks", 1, "id"], 7), "tasks[1].id", "must be a string, got 7"),
    (changed(WORKLOAD, ["tasks", 1, "allowed_kinds"], "gpu"), "tasks['ct_seg_a'].allowed_kinds",
     "must be a list or null"),
    (changed(WORKLOAD, ["tasks", 1, "cores"], 4), "tasks['ct_seg_a'].cores", "unknown field"),
    (changed(WORKLOAD, ["tasks", 1, "request"], "case_z"), "tasks['ct_seg_a'].request", "unknown request 'case_z'"),
    (changed(WORKLOAD, ["tasks"], []), "tasks", "must not be empty"),
    (changed(WORKLOAD, ["tasks"], delete=True), "tasks", "missing (required)"),
    (changed(WORKLOAD, ["deadline"], 10), "deadline", "unknown field"),
    (changed(WORKLOAD, ["requests", 0, "deadline"], -1), "requests['case_a'].deadline", "must be >= 0"),
    ("tasks", "workload", "must be a mapping"),
]


@pytest.mark.parametrize("spec, field, reason", WORKLOAD_CASES)
def test_bad_workload_names_field_and_reason(spec, field, reason):
    with pytest.raises(SpecError) as err:
        load_workload({"workload": spec})
    assert err.value.field == field
    assert reason in err.value.reason


CLUSTER_CASES = [
    (changed(CLUSTER, ["nodes", 1, "id"], "edge1"), "nodes['edge1']", "duplicate id"),
    (changed(CLUSTER, ["nodes", 2, "speed"], 0), "nodes['gpu1'].speed", "must be > 0"),
    (changed(CLUSTER, ["nodes", 2, "memory"], math.inf), "nodes['gpu1'].memory", "finite"),
    (changed(CLUSTER, ["nodes", 2, "kind"], delete=True), "nodes['gpu1'].kind", "missing (required)"),
    (changed(CLUSTER, ["links", 1, "b"], "mars"), "links['hospital','mars']", "unknown node or zone 'mars'"),
    (changed(CLUSTER, ["links", 1, "b"], "gpu1"), "links['hospital','gpu1']", "connects a node to a zone"),
    (changed(CLUSTER, ["links", 0, "bandwidth"], -3), "links['hospital','hospital'].bandwidth", "must be >= 0"),
    (changed(CLUSTER, ["speed_factors", "gpu", "cnn"], 0), "speed_factors['gpu']['cnn']", "must be > 0"),
    (changed(CLUSTER, ["speed_factors", "gpu", "cnn"], math.nan), "speed_factors['gpu']['cnn']", "finite"),
    (changed(CLUSTER, ["speed_factors", "gpu"], 4.0), "speed_factors['gpu']", "must be a mapping"),
    (changed(CLUSTER, ["default_latency"], "fast"), "default_latency", "must be a number"),
    (changed(CLUSTER, ["nodes"], []), "nodes", "must not be empty"),
    (changed(CLUSTER, ["zones"], ["hospital"]), "zones", "unknown field"),
    (changed(CLUSTER, ["nodes", 2, "slots"], 0), "nodes['gpu1'].slots", "must be an integer from 1 to 1024, got 0"),
    (changed(CLUSTER, ["nodes", 2, "slots"], 1025), "nodes['gpu1'].slots", "must be an integer from 1 to 1024, got 1025"),
    (changed(CLUSTER, ["nodes", 2, "slots"], 1.5), "nodes['gpu1'].slots", "must be an integer from 1 to 1024, got 1.5"),
    (changed(CLUSTER, ["nodes", 2, "slots"], "4"), "nodes['gpu1'].slots", "must be an integer from 1 to 1024, got '4'"),
    (changed(CLUSTER, ["nodes", 2, "slots"], True), "nodes['gpu1'].slots", "must be an integer from 1 to 1024"),
    (changed(CLUSTER, ["nodes"], [dict(CLUSTER["nodes"][0], id=f"n{i}", slots=1024) for i in range(5)]), "nodes",
     "5,120 slots in all; a cluster may hold at most 4,096"),
]


@pytest.mark.parametrize("spec, field, reason", CLUSTER_CASES)
def test_bad_cluster_names_field_and_reason(spec, field, reason):
    with pytest.raises(SpecError) as err:
        load_cluster({"cluster": spec})
    assert err.value.field == field
    assert reason in err.value.reason


def test_unknown_top_level_key_is_named():
    with pytest.raises(SpecError) as err:
        load_workload({"workload": WORKLOAD, "clusters": CLUSTER})
    assert (err.value.field, err.value.reason) == ("clusters", "unknown top-level key; expected 'workload' and/or 'cluster'")


def test_mapping_that_is_no_known_spec_lists_what_it_expected():
    with pytest.raises(SpecError, match="expected the top-level key 'workload'.*got \\['jobs'\\]"):
        load_workload({"jobs": []})


@pytest.mark.parametrize("name, content, reason", [
    ("garbage.json", bytes(range(256)) * 4, "not a text file"),
    ("garbage.yaml", b"\x00\x01\x02 binary \xff", "not a text file"),
    ("nul.yaml", b"tasks: \x00\x07", "invalid YAML"),
    ("scalar.yaml", b"just a sentence\n", "must be a mapping, got a str value"),
    ("list.json", b"[1, 2, 3]", "must be a mapping, got a list"),
    ("empty.yaml", b"", "empty file"),
    ("blank.json", b"  \n\n ", "empty file"),
    ("broken.json", b'{"workload": {"tasks": [', "invalid JSON"),
    ("broken.yaml", b"workload:\n  tasks: [\n  - {id: a", "invalid YAML"),
    ("deep.json", b"[" * 100000 + b"]" * 100000, "nested too deeply"),
])
def test_files_that_are_not_specs(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    for load in (load_workload, load_cluster, describe):
        with pytest.raises(SpecError) as err:
            load(path)
        assert err.value.field == str(path)
        assert reason in err.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as err:
        describe(tmp_path / "nope.yaml")
    assert (err.value.field, err.value.reason) == (str(tmp_path / "nope.yaml"), "no such file")


def test_a_path_no_file_system_accepts():
    with pytest.raises(SpecError) as err:
        load_workload("spec\x00.yaml")
    assert "cannot read" in err.value.reason


def test_a_source_of_the_wrong_type():
    with pytest.raises(SpecError) as err:
        load_workload(42)
    assert err.value.field == "source"


# --- property tests: nothing but SpecError, whatever comes in ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
spec_keys = st.sampled_from(["workload", "cluster", "tasks", "nodes", "edges", "links", "requests", "workflow",
                             "id", "work", "speed", "memory", "source", "target", "a", "b", "speed_factors"])


def load_everything(doc):
    """Every loader on ``doc``: each either succeeds or raises SpecError (anything else fails)."""
    for load in (load_workload, load_cluster, describe, lambda d: load_instance(d, d)):
        try:
            load(doc)
        except SpecError as err:
            assert err.field and err.reason
            for each in getattr(err, "errors", ()):  # SpecErrors: every error found, each named
                assert isinstance(each, SpecError) and each.field and each.reason


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(spec_keys | st.text(max_size=4), json_values, max_size=4) | json_values)
def test_random_values_give_only_spec_errors(doc):
    load_everything(doc)


def paths_of(doc, prefix=()):
    """Every (path) to a value inside a JSON-like document."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths_of(value, prefix + (i,))


VALID = [{"workload": WORKLOAD, "cluster": CLUSTER}, WFFORMAT]


@settings(max_examples=60, deadline=None)
@given(base=st.sampled_from(VALID), data=st.data())
def test_mutated_valid_specs_give_only_spec_errors(base, data):
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add":
            container = doc
            for key in path[:-1]:
                container = container[key]
            if isinstance(container, dict):
                container[data.draw(spec_keys | st.text(max_size=4))] = data.draw(json_values)
            else:
                container.append(data.draw(json_values))
        else:
            doc = changed(doc, list(path), data.draw(json_values), delete=action == "delete")
    load_everything(doc)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".json", ".yaml", ".yml", ".txt"]))
def test_random_files_give_only_spec_errors(tmp_path, content, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(content)
    load_everything(path)


# --- inputs built to take unbounded time or memory ----------------------------------------------

def _laughs(levels: int, where: str) -> str:
    """A YAML "billion laughs": nine aliases of nine aliases ... ``levels`` deep, at ``where``."""
    nested = "&l0 [" + ", ".join(["lol"] * 9) + "]"
    for level in range(1, levels):
        nested = f"&l{level} [" + ", ".join([nested] + [f"*l{level - 1}"] * 8) + "]"
    places = {
        "request ids": "workload: {tasks: [{id: t, work: 1}], requests: [{id: %s}]}",
        "names": "workload: {name: %s, tasks: [{id: t, work: 1}]}",
        "allowed kinds": "workload: {tasks: [{id: t, work: 1, allowed_kinds: %s}]}",
    }
    return places[where] % nested + "\n"


@pytest.mark.parametrize("where", ["request ids", "names", "allowed kinds"])
@pytest.mark.parametrize("levels", [8, 9, 12])
def test_yaml_aliases_that_expand_past_the_limit_are_refused_at_once(tmp_path, where, levels):
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(levels, where))
    started = time.perf_counter()
    with pytest.raises(SpecError) as err:
        describe(path)
    assert time.perf_counter() - started < 2
    assert err.value.field == str(path) and "aliases expand to more than 5,000,000 values" in err.value.reason


def test_an_alias_inside_its_own_node_is_refused(tmp_path):
    path = tmp_path / "recursive.yaml"
    path.write_text("workload: &w {tasks: [{id: t, work: 1, allowed_kinds: *w}]}\n")
    with pytest.raises(SpecError, match="recursive document"):
        describe(path)


def test_aliases_within_the_limit_still_read(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("workload:\n  tasks:\n    - {id: a, work: 1, allowed_kinds: &gpu [gpu]}\n"
                    "    - {id: b, work: 2, allowed_kinds: *gpu}\n")
    assert [t.allowed_kinds for t in load_workload(path).tasks] == [("gpu",), ("gpu",)]


def test_every_value_in_an_error_is_a_short_excerpt():
    long_id = "x" * 200_000
    spec = changed(WORKLOAD, ["edges", 0, "target"], long_id)
    with pytest.raises(SpecError) as err:
        load_workload({"workload": spec})
    assert len(str(err.value)) < 500 and "unknown task 'xxx" in str(err.value)
    spec = changed(WORKLOAD, ["tasks", 0, "id"], [long_id] * 1000)
    with pytest.raises(SpecError) as err:
        load_workload({"workload": spec})
    assert len(str(err.value)) < 500


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null", "fifo", "folder"])
def test_devices_pipes_and_folders_are_refused_before_they_are_read(tmp_path, device):
    if device == "fifo":
        device = tmp_path / "spec.yaml"
        os.mkfifo(device)  # opening it would wait for a writer forever
    elif device == "folder":
        device = tmp_path / "spec.yaml"
        device.mkdir()
    with pytest.raises(SpecError) as err:
        read_document(device)
    assert (err.value.field, err.value.reason) == (str(device), "not a regular file (a device, pipe or folder)")


def test_a_csv_table_that_is_a_device_is_refused(tmp_path):
    (tmp_path / "tasks.csv").symlink_to("/dev/zero")
    with pytest.raises(SpecError) as err:
        describe(tmp_path)
    assert (err.value.field, err.value.reason) == ("tasks.csv", "not a regular file (a device, pipe or folder)")


def test_a_file_past_the_document_limit_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as fh:
        fh.truncate(MAX_DOCUMENT_BYTES + 1)  # sparse: no disk, no memory
    with pytest.raises(SpecError, match="67,108,865 bytes; a document may hold at most 67,108,864"):
        read_document(path)


@pytest.mark.parametrize("key, limit", [("tasks", MAX_TASKS), ("edges", MAX_EDGES), ("requests", MAX_TASKS)])
def test_workload_lists_past_their_limit_are_refused_before_the_schema_check(key, limit):
    spec = dict(WORKLOAD, **{key: [{}] * (limit + 1)})
    with pytest.raises(SpecError) as err:
        load_workload({"workload": spec})
    assert err.value.field == key and f"at most {limit:,}" in err.value.reason


def test_cluster_nodes_past_their_limit_are_refused_in_every_format(tmp_path):
    with pytest.raises(SpecError, match="at most 2,000"):
        load_cluster({"cluster": dict(CLUSTER, nodes=[{}] * (MAX_CLUSTER_NODES + 1))})
    rows = "\n".join(f"n{i},cpu,1,1" for i in range(MAX_CLUSTER_NODES + 1))
    (tmp_path / "nodes.csv").write_text("id,kind,speed,memory\n" + rows + "\n")
    with pytest.raises(SpecError) as err:
        load_cluster(tmp_path)
    assert err.value.field == "nodes" and "at most 2,000" in err.value.reason


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
@pytest.mark.parametrize("digits", [400, 5000, 200_000])
def test_integers_of_any_length_name_their_field(tmp_path, suffix, digits):
    path = tmp_path / f"huge{suffix}"
    path.write_text('{"workload": {"tasks": [{"id": "t", "work": -%s, "memory": %s}]}}' % ("9" * digits, "9" * digits))
    with pytest.raises(SpecError) as err:
        load_workload(path)
    assert {(e.field, e.reason.split(",")[0]) for e in err.value.errors} == {
        ("tasks['t'].work", "must be >= 0"), ("tasks['t'].memory", "must be a finite number")}
    assert all(len(str(e)) < 200 for e in err.value.errors)


def test_a_line_break_in_a_value_cannot_split_the_error_line(tmp_path):
    (tmp_path / "tasks.csv").write_text('id,work,"bad\ncolumn"\na,1,2\n')
    with pytest.raises(SpecError) as err:
        describe(tmp_path)
    assert len(str(err.value).splitlines()) == 1 and "\\n" in str(err.value)

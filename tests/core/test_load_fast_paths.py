"""The fast loading paths (issue 10, part 4) give what the one-by-one paths give: the JSON
reading of JSON-compatible YAML, the compiled schema check, the bulk task columns, the packed
eligibility patterns and the vectorised link tables; and a spec read either way plans the same."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.io import _as_json, dump, load_instance, read_document
from apportion.core.model import (
    Cluster,
    Instance,
    Link,
    Node,
    Request,
    Task,
    Workload,
    _bulk_task_columns,
    _kind_rates,
    _node_columns,
    _task_columns_one_by_one,
    eligibility_patterns,
)
from apportion.core.spec import (
    _passes_fast_check,
    _validator,
    cluster_to_dict,
    workload_from_dict,
    workload_to_dict,
)
from tests.reference.naive_links import naive_link_tables

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = st.text(alphabet="abcé/._-0", min_size=1, max_size=4)


def _yaml(text: str):
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# --- JSON-compatible YAML ------------------------------------------------------------------------

SCALARS = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**30, 10**30) | st.booleans()
           | st.none() | st.text(max_size=6))
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=4), max_leaves=25)


@SETTINGS
@given(doc=st.dictionaries(st.text(max_size=5), DOCS, max_size=4))
def test_dumped_yaml_is_read_by_json_exactly_as_yaml_reads_it(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("dump") / "doc.yaml"
    dump(doc, path)
    text = path.read_text()
    is_json, parsed = _as_json(text)
    assert is_json, text
    assert parsed == _yaml(text) == doc


@pytest.mark.parametrize("text", [
    '{"tasks": [{"id": "a", "work": 1e5}]}',  # YAML 1.1: the string '1e5'
    '{"tasks": [{"id": "a", "work": 1.5e5}]}',  # unsigned exponent: a string too
    '{"tasks": [{"id": "a", "work": NaN}]}',
    '{"tasks": [{"id": "a",\t"work": 1}]}',
    '{"tasks": [{"id": "\\ud83d\\ude00", "work": 1}]}',
    '{"tasks": [{"id": "a", "work": 1},]}',  # not JSON, but YAML
])
def test_json_that_yaml_reads_otherwise_is_left_to_yaml(text):
    assert _as_json(text) == (False, None)


def test_a_json_looking_yaml_number_that_yaml_reads_as_text_keeps_its_error(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text('{"tasks": [{"id": "a", "work": 1e5}]}\n')
    assert read_document(path) == {"tasks": [{"id": "a", "work": "1e5"}]}
    with pytest.raises(SpecError, match=r"tasks\['a'\]\.work: must be a number, got '1e5'"):
        workload_from_dict(read_document(path))


def test_block_yaml_errors_keep_their_line_numbers(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text("tasks:\n  - id: a\n    work: [1\n")
    with pytest.raises(SpecError, match=r"invalid YAML: .*\(line 4, column 1\)"):
        read_document(path)


# --- schema ---------------------------------------------------------------------------------------

TASK_VALUES = st.one_of(st.floats(), st.integers(-5, 5), st.booleans(), st.none(), st.text(max_size=3),
                        st.lists(st.text(max_size=2), max_size=3))
TASK_KEYS = st.sampled_from(["id", "work", "kind", "memory", "priority", "deadline", "request", "allowed_kinds",
                             "allowed_zones", "pinned_node", "pinned_start", "previous_node", "bogus"])


@SETTINGS
@given(tasks=st.lists(st.dictionaries(TASK_KEYS, TASK_VALUES, max_size=5), min_size=0, max_size=4),
       extra=st.dictionaries(st.sampled_from(["name", "edges", "requests", "other"]), TASK_VALUES, max_size=2))
def test_compiled_schema_check_agrees_with_jsonschema(tasks, extra):
    doc = {"tasks": tasks, **extra}
    assert _passes_fast_check(doc, "workload") == (not list(_validator("workload").iter_errors(doc)))


# --- Instance.build -------------------------------------------------------------------------------

@SETTINGS
@given(rows=st.lists(st.lists(st.booleans(), min_size=11, max_size=11), min_size=1, max_size=30))
def test_eligibility_patterns_are_numpys_unique_rows(rows):
    eligible = np.array(rows, dtype=bool)
    patterns, pattern_of = eligibility_patterns(eligible)
    expected, expected_of = np.unique(eligible, axis=0, return_inverse=True)
    assert np.array_equal(patterns, expected) and np.array_equal(pattern_of, expected_of.reshape(-1))


@st.composite
def clusters(draw):
    zones = ["z0", "z1", "z2"]
    nodes = tuple(Node(f"n{j}", draw(st.sampled_from(["gpu", "cpu"])), draw(st.floats(0.5, 50)),
                       draw(st.floats(0, 64)), zone=draw(st.sampled_from(zones)),
                       failed=draw(st.booleans()) and j > 0) for j in range(draw(st.integers(1, 7))))
    names = [nd.id for nd in nodes]
    ends = st.sampled_from(names) if draw(st.booleans()) else st.sampled_from(zones)
    links = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            links.append(Link(draw(st.sampled_from(names)), draw(st.sampled_from(names)),
                              draw(st.sampled_from([0.0, 1.0, 250.0])), draw(st.floats(0, 1))))
        else:
            links.append(Link(draw(ends), draw(ends), draw(st.sampled_from([0.0, 3.0, 1250.0])), draw(st.floats(0, 1))))
    links = [ln for ln in links if (ln.a in names) == (ln.b in names)]
    zone_names = {nd.zone for nd in nodes}
    links = [ln for ln in links if ln.a in names or (ln.a in zone_names and ln.b in zone_names)]
    return Cluster(nodes=nodes, links=tuple(links), default_bandwidth=draw(st.sampled_from([None, 0.0, 100.0])),
                   default_latency=draw(st.floats(0, 1)))


@SETTINGS
@given(cluster=clusters())
def test_link_tables_match_the_plain_python_reference(cluster):
    instance = Instance.build(Workload(tasks=(Task("t", 1.0),)), cluster)
    latency, inv_bw = naive_link_tables(cluster)
    assert np.array_equal(instance.latency, np.array(latency))
    assert np.array_equal(instance.inv_bandwidth, np.array(inv_bw))


@st.composite
def workloads(draw, cluster):
    n = draw(st.integers(1, 8))
    requests = tuple(Request(f"r{k}") for k in range(draw(st.integers(0, 2))))
    request_names = [None, *(r.id for r in requests), "nowhere"]
    node_names = [None, *(nd.id for nd in cluster.nodes), "nowhere"]
    amounts = st.floats(0, 100) | st.integers(0, 100) | st.sampled_from([-1.0, math.inf, math.nan, "7", True])
    tasks = []
    for i in range(n):
        pinned = draw(st.sampled_from(node_names)) if draw(st.integers(0, 4)) == 0 else None
        tasks.append(Task(
            f"t{i}", draw(amounts), kind=draw(st.sampled_from(["cnn", "etl"])), memory=draw(st.floats(0, 80)),
            priority=draw(amounts), deadline=draw(st.none() | amounts), request=draw(st.sampled_from(request_names)),
            allowed_kinds=draw(st.sampled_from([None, ("gpu",), ("cpu", "gpu")])),
            allowed_zones=draw(st.sampled_from([None, ("z0",), ("z1", "z2")])),
            pinned_node=pinned, pinned_start=None if pinned is None else 1.0,
            pinned_end=None if pinned is None else draw(st.sampled_from([0.5, 4.0])),
            previous_node=draw(st.sampled_from(node_names))))
    return Workload(tasks=tuple(tasks), requests=requests)


@SETTINGS
@given(data=st.data())
def test_bulk_task_columns_are_the_one_by_one_columns(data):
    cluster = data.draw(clusters())
    workload = data.draw(workloads(cluster))
    node = _node_columns(cluster)
    n_index = {nd.id: j for j, nd in enumerate(cluster.nodes)}
    r_index = {r.id: k for k, r in enumerate(workload.requests)}
    kinds, rate = _kind_rates(workload.tasks, cluster, node.speed)
    bulk = _bulk_task_columns(workload, cluster, node, n_index, r_index, kinds, rate)
    try:
        expected = _task_columns_one_by_one(workload, cluster, node, n_index, r_index, kinds, rate)
    except SpecError:
        assert bulk is None  # the bulk path never takes what the one-by-one check refuses
        return
    if bulk is None:  # values only the one-by-one path converts (a numeric string, a bool)
        return
    for name in expected._fields:
        if name != "duration":  # filled afterwards, for both the same way
            np.testing.assert_array_equal(getattr(bulk, name), getattr(expected, name), err_msg=name, strict=True)


# --- the same plan either way -----------------------------------------------------------------------

def test_a_spec_read_as_flow_yaml_block_yaml_or_json_builds_and_plans_the_same(tmp_path):
    from apportion.core.api import Settings, optimize
    from apportion.core.scenarios import build as build_scenario

    workload, cluster = build_scenario("medical_diagnosis", size=6, nodes=6, seed=3)
    docs = {"workload": workload_to_dict(workload), "cluster": cluster_to_dict(cluster)}
    for what, doc in docs.items():
        dump(doc, tmp_path / f"{what}.yaml")
        dump(doc, tmp_path / f"{what}.json")
        (tmp_path / f"{what}.block.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    direct = Instance.build(workload, cluster)
    plans = []
    for suffix in (".yaml", ".json", ".block.yaml"):
        instance = load_instance(tmp_path / f"workload{suffix}", tmp_path / f"cluster{suffix}")
        for name in ("duration", "eligible", "latency", "inv_bandwidth", "parent_idx", "topo_order", "release"):
            assert np.array_equal(getattr(instance, name), getattr(direct, name)), (suffix, name)
        result = optimize(instance, Settings(population=12, generations=4, seed=5))
        plans.append((result.chosen.plan.assignment.tobytes(), result.chosen.plan.order.tobytes(),
                      result.front_stats.tobytes()))
    assert plans[0] == plans[1] == plans[2]

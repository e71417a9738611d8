"""The project's JSON/YAML spec: maps 1:1 onto the model, validates, round-trips."""

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.io import describe, dump, load_cluster, load_instance, load_workload
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Request, Task, Workload
from apportion.core.spec import (
    SpecErrors,
    cluster_from_dict,
    cluster_to_dict,
    schema,
    workload_from_dict,
    workload_to_dict,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"


@pytest.mark.parametrize("what", ["workload", "cluster"])
def test_schemas_are_valid_draft_2020_12(what):
    jsonschema.Draft202012Validator.check_schema(schema(what))
    assert schema(what)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("what, definition, cls", [
    ("workload", None, Workload), ("workload", "task", Task), ("workload", "edge", Edge),
    ("workload", "request", Request), ("cluster", None, Cluster), ("cluster", "node", Node),
    ("cluster", "link", Link),
])
def test_schema_fields_are_the_dataclass_fields(what, definition, cls):
    part = schema(what) if definition is None else schema(what)["$defs"][definition]
    assert set(part["properties"]) == {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert set(part["required"]) == required


def test_example_workload_maps_field_for_field():
    raw = yaml.safe_load((EXAMPLES / "workload.yaml").read_text())["workload"]
    workload = load_workload(EXAMPLES / "workload.yaml")
    assert workload.name == raw["name"]
    assert [t.id for t in workload.tasks] == [t["id"] for t in raw["tasks"]]
    for task, spec in zip(workload.tasks, raw["tasks"], strict=True):
        for key, value in spec.items():
            got = getattr(task, key)
            assert (list(got) if isinstance(got, tuple) else got) == value
    seg_b = workload.tasks[4]
    assert (seg_b.priority, seg_b.deadline, seg_b.allowed_kinds) == (1.0, None, None)  # model defaults
    assert [(e.source, e.target, e.data) for e in workload.edges] == [
        (e["source"], e["target"], e["data"]) for e in raw["edges"]]
    assert workload.requests[1] == Request("case_b", release=5.0)


def test_example_cluster_maps_field_for_field():
    raw = yaml.safe_load((EXAMPLES / "cluster.yaml").read_text())["cluster"]
    cluster = load_cluster(EXAMPLES / "cluster.yaml")
    defaults = {"available_from": 0.0, "failed": False, "overhead": 0.0, "slots": 1}  # fields unset in the example
    assert [dataclasses.asdict(n) for n in cluster.nodes] == [{**node, **defaults} for node in raw["nodes"]]
    assert [(ln.a, ln.b, ln.bandwidth, ln.latency) for ln in cluster.links] == [
        (ln["a"], ln["b"], ln["bandwidth"], ln.get("latency", 0.0)) for ln in raw["links"]]
    assert cluster.speed_factors == {"gpu": {"cnn": 4.0, "etl": 0.25}, "edge": {"etl": 2.0}}
    assert (cluster.default_bandwidth, cluster.default_latency) == (0.0, 0.0)


def test_examples_build_into_an_instance_with_the_cost_model():
    instance = load_instance(EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml")
    seg = instance.task_ids.index("ct_seg_a")
    gpu = instance.node_ids.index("gpu1")
    assert instance.duration[seg, gpu] == pytest.approx(900 / (40 * 4.0))  # cnn speed factor on gpu
    assert instance.eligible[seg].tolist() == [n == "gpu1" for n in instance.node_ids]  # allowed_kinds
    edge1 = instance.node_ids.index("edge1")
    assert instance.inv_bandwidth[edge1, gpu] == float("inf")  # node-pair link (bandwidth 0) beats zones


def test_one_file_with_both_is_detected_and_described(tmp_path):
    both = tmp_path / "both.json"
    dump({"workload": workload_to_dict(load_workload(EXAMPLES / "workload.yaml")),
          "cluster": cluster_to_dict(load_cluster(EXAMPLES / "cluster.yaml"))}, both)
    text = describe(both)
    assert "workload 'ct-diagnosis': 6 tasks, 4 edges, 2 requests" in text
    assert "cluster 'hospital-and-cloud': 3 nodes (3 kinds, 2 zones), 3 links" in text
    assert load_instance(both).n_tasks == 6


def test_describe_runs_the_instance_checks_when_the_file_has_both(tmp_path):
    doc = {"workload": {"tasks": [{"id": "big", "work": 1, "memory": 100}]},
           "cluster": {"nodes": [{"id": "n1", "kind": "cpu", "speed": 1, "memory": 64}]}}
    path = tmp_path / "both.yaml"
    dump(doc, path)
    assert load_workload(path).tasks[0].memory == 100.0  # each half is fine alone
    assert load_cluster(path).nodes[0].memory == 64.0
    with pytest.raises(SpecError) as err:
        describe(path)
    assert err.value.field == "tasks['big']"
    assert "memory" in err.value.reason


def test_bare_workload_and_cluster_are_detected():
    workload = load_workload({"tasks": [{"id": "a", "work": 2}]})
    assert workload == Workload(tasks=(Task("a", 2.0),))
    cluster = load_cluster({"nodes": [{"id": "n", "kind": "cpu", "speed": 1, "memory": 2}]})
    assert cluster == Cluster(nodes=(Node("n", "cpu", 1.0, 2.0),))
    assert describe({"tasks": [{"id": "a", "work": 2}]}) == "workload 'workload': 1 task, 0 edges, 0 requests"


def test_asking_for_the_half_a_file_lacks_names_what_it_holds():
    with pytest.raises(SpecError, match="holds no cluster.*workload"):
        load_cluster(EXAMPLES / "workload.yaml")
    with pytest.raises(SpecError, match="holds no workload.*cluster"):
        load_workload(EXAMPLES / "cluster.yaml")


def test_dump_refuses_an_unknown_extension(tmp_path):
    with pytest.raises(SpecError) as err:
        dump({"tasks": []}, tmp_path / "w.txt")
    assert "extension" in err.value.reason


def test_dump_writes_numpy_numbers_as_plain_numbers(tmp_path):
    """A workload built in Python may hold NumPy numbers; its spec file holds plain ones."""
    import numpy as np

    workload = Workload(tasks=(Task("a", work=np.float32(2.5), memory=np.int64(3), priority=np.float64(0.1)),
                               Task("b", work=np.float64(1.0))),
                        edges=(Edge("a", "b", np.float64(12.75)),))
    cluster = Cluster(nodes=(Node("n", "gpu", speed=np.int32(40), memory=np.float64(16.0)),),
                      speed_factors={"gpu": {"task": np.float64(2.0)}})
    plain = Workload(tasks=(Task("a", work=2.5, memory=3.0, priority=0.1), Task("b", work=1.0)),
                     edges=(Edge("a", "b", 12.75),))
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"spec{suffix}"
        dump({"workload": workload_to_dict(workload), "cluster": cluster_to_dict(cluster)}, path)
        assert "numpy" not in path.read_text()
        assert load_workload(path) == plain
        assert load_cluster(path).nodes[0].speed == 40.0 and load_cluster(path).speed_factors == {"gpu": {"task": 2.0}}


def test_dump_names_what_a_spec_cannot_hold(tmp_path):
    with pytest.raises(SpecError) as err:
        dump({"tasks": [{"id": "a", "work": object()}]}, tmp_path / "w.yaml")
    assert err.value.field == "(top level).tasks[0].work" and "cannot be written" in err.value.reason
    assert not (tmp_path / "w.yaml").exists()


def test_every_schema_error_is_listed_in_document_order():
    doc = {"tasks": [{"id": "a", "work": -5, "colour": "red", "shade": 1}, {"id": "b", "work": "x"}, {}],
           "edges": [{"source": "a", "target": "b", "data": -1}]}
    with pytest.raises(SpecErrors) as err:
        workload_from_dict(doc)
    assert [str(e) for e in err.value.errors] == [
        "tasks['a'].colour: unknown field; expected one of " + str(sorted(schema("workload")["$defs"]["task"]
                                                                          ["properties"])),
        "tasks['a'].shade: unknown field; expected one of " + str(sorted(schema("workload")["$defs"]["task"]
                                                                         ["properties"])),
        "tasks['a'].work: must be >= 0, got -5",
        "tasks['b'].work: must be a number, got 'x'",
        "tasks[2].id: missing (required)",
        "tasks[2].work: missing (required)",
        "edges['a'->'b'].data: must be >= 0, got -1",
    ]
    # It reads as the most relevant one, as before: callers that show one line are unchanged.
    assert str(err.value) == "tasks[2].id: missing (required)"


# --- round trip ---------------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-. ", min_size=1, max_size=8)
amounts = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def workloads(draw, names=names):
    name_lists = st.none() | st.lists(names, min_size=1, max_size=3, unique=True).map(tuple)
    ids = draw(st.lists(names, min_size=1, max_size=8, unique=True))
    request_ids = draw(st.lists(names, max_size=3, unique=True))
    requests = tuple(Request(r, release=draw(amounts), deadline=draw(st.none() | amounts),
                             priority=draw(st.none() | amounts)) for r in request_ids)
    tasks = tuple(Task(
        id=i, work=draw(amounts), kind=draw(names), memory=draw(amounts), priority=draw(amounts),
        deadline=draw(st.none() | amounts), request=draw(st.none() | st.sampled_from(request_ids or [None])),
        allowed_kinds=draw(name_lists), allowed_zones=draw(name_lists),
    ) for i in ids)
    pairs = draw(st.sets(st.tuples(st.integers(0, len(ids) - 1), st.integers(0, len(ids) - 1)), max_size=12))
    edges = tuple(Edge(ids[a], ids[b], draw(amounts)) for a, b in sorted(pairs) if a < b)  # a DAG
    requests = tuple(r for r in requests if any(t.request == r.id for t in tasks))  # a request has tasks
    return Workload(tasks=tasks, edges=edges, requests=requests, name=draw(names))


@st.composite
def clusters(draw):
    ids = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    zones = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    kinds = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    nodes = tuple(Node(i, draw(st.sampled_from(kinds)), draw(positive), draw(amounts),
                       zone=draw(st.sampled_from(zones)), busy_power=draw(amounts), idle_power=draw(amounts),
                       cost_per_hour=draw(amounts)) for i in ids)
    zones = sorted({n.zone for n in nodes})
    ends = st.sampled_from(ids) | st.sampled_from(zones)
    links = tuple(Link(a, b, draw(amounts), draw(amounts))
                  for a, b in draw(st.lists(st.tuples(ends, ends), max_size=4))
                  if (a in ids) == (b in ids))  # two nodes or two zones
    factors = draw(st.dictionaries(st.sampled_from(kinds), st.dictionaries(names, positive, max_size=2),
                                   max_size=2))
    return Cluster(nodes=nodes, links=links, default_bandwidth=draw(st.none() | amounts),
                   default_latency=draw(amounts), speed_factors=factors, name=draw(names))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads(), cluster=clusters(), suffix=st.sampled_from([".json", ".yaml"]))
def test_specs_round_trip_through_files(tmp_path, workload, cluster, suffix):
    assert workload_from_dict(json.loads(json.dumps(workload_to_dict(workload)))) == workload
    assert cluster_from_dict(cluster_to_dict(cluster)) == cluster
    path = tmp_path / f"spec{suffix}"
    dump({"workload": workload_to_dict(workload), "cluster": cluster_to_dict(cluster)}, path)
    assert load_workload(path) == workload
    assert load_cluster(path) == cluster


def test_a_replanning_state_loads_and_meets_its_cluster():
    """Pins and previous nodes name a cluster's nodes: checked when workload meets cluster."""
    from apportion.core.errors import SpecError
    from apportion.core.spec import cluster_from_dict, workload_from_dict

    workload = workload_from_dict({"tasks": [
        {"id": "a", "work": 1, "pinned_node": "n0", "pinned_start": 0, "pinned_end": 1},
        {"id": "b", "work": 1, "previous_node": "n0"}], "edges": [{"source": "a", "target": "b"}]})
    cluster = cluster_from_dict({"nodes": [{"id": "n0", "kind": "cpu", "speed": 1, "memory": 1, "failed": True},
                                           {"id": "n1", "kind": "cpu", "speed": 1, "memory": 1,
                                            "available_from": 5}],
                                 "default_bandwidth": 1})
    inst = Instance.build(workload, cluster)
    assert inst.pinned_node.tolist() == [0, -1] and inst.previous_node.tolist() == [-1, 0]
    assert inst.eligible.tolist() == [[True, False], [False, True]]  # n0 failed: b must move
    with pytest.raises(SpecError, match=r"tasks\['a'\].pinned_node: unknown node 'n0'"):
        Instance.build(workload, cluster_from_dict({"nodes": [{"id": "x", "kind": "cpu", "speed": 1, "memory": 1}]}))


def test_overhead_and_node_speed_factors_round_trip_and_zero_overhead_is_left_out():
    from apportion.core.spec import cluster_from_dict, cluster_to_dict

    doc = {"nodes": [{"id": "a", "kind": "cpu", "speed": 2, "memory": 1, "overhead": 0.8},
                     {"id": "b", "kind": "cpu", "speed": 2, "memory": 1, "overhead": 0}],
           "node_speed_factors": {"a": {"etl": 1.5}}}
    cluster = cluster_from_dict(doc)
    assert [n.overhead for n in cluster.nodes] == [0.8, 0.0]
    out = cluster_to_dict(cluster)
    assert out["nodes"][0]["overhead"] == 0.8 and "overhead" not in out["nodes"][1]
    assert out["node_speed_factors"] == {"a": {"etl": 1.5}}
    assert cluster_from_dict(out) == cluster


def test_negative_overhead_in_a_spec_names_the_field():
    from apportion.core.errors import SpecError
    from apportion.core.spec import cluster_from_dict

    with pytest.raises(SpecError, match="overhead"):
        cluster_from_dict({"nodes": [{"id": "a", "kind": "cpu", "speed": 2, "memory": 1, "overhead": -1}]})


def test_slots_round_trip_as_integers_and_one_slot_is_left_out():
    from apportion.core.spec import cluster_from_dict, cluster_to_dict

    doc = {"nodes": [{"id": "a", "kind": "cpu", "speed": 2, "memory": 1, "slots": 4},
                     {"id": "b", "kind": "cpu", "speed": 2, "memory": 1, "slots": 2.0},
                     {"id": "c", "kind": "cpu", "speed": 2, "memory": 1}]}
    cluster = cluster_from_dict(doc)
    assert [n.slots for n in cluster.nodes] == [4, 2, 1]
    assert all(type(n.slots) is int for n in cluster.nodes)
    out = cluster_to_dict(cluster)
    assert [nd.get("slots") for nd in out["nodes"]] == [4, 2, None]
    assert cluster_from_dict(out) == cluster
    inst = Instance.build(Workload(tasks=(Task("t", 1.0),)), cluster)
    assert inst.slots.tolist() == [4, 2, 1] and inst.slot_ptr.tolist() == [0, 4, 6, 7]
    assert inst.slot_nodes.tolist() == [0, 0, 0, 0, 1, 1, 2]

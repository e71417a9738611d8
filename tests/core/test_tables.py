"""Workloads and clusters from pandas tables and CSV directories."""

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.io import describe, load_cluster, load_instance, load_workload
from apportion.core.spec import cluster_from_dict, workload_from_dict
from apportion.core.tables import cluster_from_frames, workload_from_frames
from tests.core.test_spec import workloads

TABLES = Path(__file__).resolve().parents[2] / "core" / "examples" / "tables"


@pytest.fixture
def tables(tmp_path):
    """A writable copy of the example CSV directory."""
    return Path(shutil.copytree(TABLES, tmp_path / "site"))


def test_example_directory_reads_cell_by_cell():
    raw = pd.read_csv(TABLES / "tasks.csv", dtype=str, keep_default_na=False)
    workload = load_workload(TABLES)
    assert [t.id for t in workload.tasks] == list(raw["id"])
    assert [t.work for t in workload.tasks] == [float(x) for x in raw["work"]]
    by_id = {t.id: t for t in workload.tasks}
    assert by_id["track"].allowed_kinds == ("gpu", "cpu")  # ;-separated list
    assert by_id["summarise"].allowed_zones == ("cloud",)
    assert by_id["ingest"].allowed_kinds is None and by_id["ingest"].deadline is None  # empty cells: defaults
    assert by_id["summarise"].deadline == 90.0
    assert len(workload.edges) == len(pd.read_csv(TABLES / "edges.csv"))
    cluster = load_cluster(TABLES)
    assert [n.id for n in cluster.nodes] == list(pd.read_csv(TABLES / "nodes.csv")["id"])
    assert load_instance(TABLES, TABLES).n_nodes == 3


def test_frames_give_the_same_workload_as_the_spec():
    tasks = pd.DataFrame({"id": ["a", "b"], "work": [3, 4.5], "kind": ["cnn", None],
                          "allowed_kinds": ["gpu;cpu", None], "deadline": [None, 7.0], "request": ["r", None]})
    edges = pd.DataFrame({"source": ["a"], "target": ["b"], "data": [12.0]})
    requests = pd.DataFrame({"id": ["r"], "release": [1.0]})
    spec = {"name": "w", "tasks": [{"id": "a", "work": 3, "kind": "cnn", "allowed_kinds": ["gpu", "cpu"], "request": "r"},
                                   {"id": "b", "work": 4.5, "deadline": 7}],
            "edges": [{"source": "a", "target": "b", "data": 12}], "requests": [{"id": "r", "release": 1}]}
    assert workload_from_frames(tasks, edges, requests, name="w") == workload_from_dict(spec)


def test_cluster_frames_take_the_cluster_wide_settings():
    nodes = pd.DataFrame({"id": ["n1", "n2"], "kind": ["gpu", "cpu"], "speed": [40, 10], "memory": [40, 64]})
    links = pd.DataFrame({"a": ["n1"], "b": ["n2"], "bandwidth": [100.0], "latency": [math.nan]})
    cluster = cluster_from_frames(nodes, links, name="c", default_bandwidth=5.0, default_latency=0.1,
                                  speed_factors={"gpu": {"cnn": 4.0}})
    assert cluster == cluster_from_dict({
        "name": "c", "nodes": [{"id": "n1", "kind": "gpu", "speed": 40, "memory": 40},
                               {"id": "n2", "kind": "cpu", "speed": 10, "memory": 64}],
        "links": [{"a": "n1", "b": "n2", "bandwidth": 100}], "default_bandwidth": 5, "default_latency": 0.1,
        "speed_factors": {"gpu": {"cnn": 4}}})


def test_ids_keep_their_leading_zeros_and_speed_factors_come_from_csv(tables):
    (tables / "nodes.csv").write_text("id,kind,speed,memory\n007,gpu,40,40\n008,cpu,10,64\n")
    (tables / "links.csv").write_text("a,b,bandwidth\n007,008,100\n")
    (tables / "speed_factors.csv").write_text("node_kind,task_kind,factor\ngpu,cnn,4\ngpu,etl,0.25\n")
    cluster = load_cluster(tables)
    assert [n.id for n in cluster.nodes] == ["007", "008"]
    assert cluster.speed_factors == {"gpu": {"cnn": 4.0, "etl": 0.25}}


def test_node_speed_factors_come_from_their_own_csv(tmp_path):
    (tmp_path / "nodes.csv").write_text("id,kind,speed,memory\n007,gpu,40,40\n008,gpu,40,40\n")
    (tmp_path / "node_speed_factors.csv").write_text("node,task_kind,factor\n007,cnn,0.5\n")
    assert load_cluster(tmp_path).node_speed_factors == {"007": {"cnn": 0.5}}
    (tmp_path / "node_speed_factors.csv").write_text("node,task_kind,factor\n009,cnn,0.5\n")
    with pytest.raises(SpecError, match="node_speed_factors\\['009'\\]: unknown node '009'"):
        load_cluster(tmp_path)
    (tmp_path / "node_speed_factors.csv").write_text("node,task_kind,factor\n007,cnn,1\n007,cnn,2\n")
    with pytest.raises(SpecError, match="second factor for node '007' and task kind 'cnn'"):
        load_cluster(tmp_path)


def test_overhead_column_of_nodes_csv_reaches_the_nodes_and_a_bad_cell_names_its_row(tmp_path):
    tables = tmp_path
    (tables / "nodes.csv").write_text("id,kind,speed,memory,overhead\na,cpu,10,64,1.25\nb,cpu,10,64,\n")
    assert [n.overhead for n in load_cluster(tables).nodes] == [1.25, 0.0]
    (tables / "nodes.csv").write_text("id,kind,speed,memory,overhead\na,cpu,10,64,-2\n")
    with pytest.raises(SpecError) as err:
        load_cluster(tables)
    assert err.value.field.startswith("nodes['a'].overhead")


def test_slots_column_of_nodes_csv_reaches_the_nodes_and_a_bad_cell_names_its_row(tmp_path):
    (tmp_path / "nodes.csv").write_text("id,kind,speed,memory,slots\na,cpu,10,64,3\nb,cpu,10,64,\n")
    assert [n.slots for n in load_cluster(tmp_path).nodes] == [3, 1]
    assert "2 nodes (1 kind, 1 zone, 4 slots)" in describe(tmp_path)
    (tmp_path / "nodes.csv").write_text("id,kind,speed,memory,slots\na,cpu,10,64,0\n")
    with pytest.raises(SpecError) as err:
        load_cluster(tmp_path)
    assert err.value.field.startswith("nodes['a'].slots") and "integer from 1 to 1024, got 0" in err.value.reason


@pytest.mark.parametrize("table, content, field, reason", [
    ("tasks", "id,work,colour\na,1,red\n", "tasks.colour", "unknown column"),
    ("tasks", "id,kind\na,cnn\n", "tasks.work", "missing required column"),
    ("tasks", "id,work\na,1\nb,\n", "tasks['b'].work", "must be a number, got ''"),
    ("tasks", "id,work\na,1\nb,lots\n", "tasks['b'].work", "must be a number, got 'lots'"),
    ("tasks", "id,work\na,1\n,2\n", "tasks[1].id", "must be a string"),
    ("tasks", "id,work\n", "tasks", "must not be empty"),
    ("tasks", "", "tasks.csv", "cannot read as CSV"),
    ("tasks", "id,work\na,1\na,2\n", "tasks['a']", "duplicate id"),
    ("edges", "source,target,data\ningest,nowhere,1\n", "edges['ingest'->'nowhere'].target", "unknown task"),
    ("edges", "source,target,data\ningest,detect,-1\n", "edges['ingest'->'detect'].data", "must be >= 0"),
    ("nodes", "id,kind,speed,memory\nn1,cpu,0,1\n", "nodes['n1'].speed", "must be > 0"),
    ("speed_factors", "node_kind,task_kind,factor\ngpu,cnn,4\ngpu,cnn,5\n", "speed_factors[1]", "second factor"),
    ("speed_factors", "node_kind,task_kind\ngpu,cnn\n", "speed_factors.factor", "missing required column"),
    ("jobs", "id\n", "jobs.csv", "unknown table"),
])
def test_bad_tables_name_the_field(tables, table, content, field, reason):
    (tables / f"{table}.csv").write_text(content)
    with pytest.raises(SpecError) as err:
        describe(tables)
    assert err.value.field == field
    assert reason in err.value.reason


def test_a_table_without_its_main_table(tables):
    (tables / "tasks.csv").unlink()
    with pytest.raises(SpecError) as err:
        describe(tables)
    assert (err.value.field, err.value.reason) == ("edges.csv", "given without tasks.csv")


def test_a_directory_without_tables(tmp_path):
    with pytest.raises(SpecError, match="neither tasks.csv nor nodes.csv"):
        load_workload(tmp_path)


def test_frames_must_be_frames():
    with pytest.raises(SpecError) as err:
        workload_from_frames([{"id": "a", "work": 1}])
    assert err.value.field == "tasks"


def frames_of(workload):
    """The workload as the three tables, written the way a user would (lists as a;b)."""
    def cell(value):
        return ";".join(value) if isinstance(value, tuple) else value
    tasks = pd.DataFrame([{k: cell(v) for k, v in vars(t).items()} for t in workload.tasks])
    edges = pd.DataFrame([vars(e) for e in workload.edges], columns=["source", "target", "data"])
    requests = pd.DataFrame([vars(r) for r in workload.requests], columns=["id", "release", "deadline", "priority"])
    return tasks, edges, requests


# Names a CSV cell holds as written: no separators, no surrounding blanks ("nan" and "NA" are fine).
csv_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzNA0123456789_-.", min_size=1, max_size=8)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads(names=csv_names))
def test_workloads_round_trip_through_csv(tmp_path, workload):
    directory = tmp_path / "w"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    for name, frame in zip(("tasks", "edges", "requests"), frames_of(workload), strict=True):
        frame.to_csv(directory / f"{name}.csv", index=False)
    loaded = load_workload(directory)
    assert (loaded.tasks, loaded.edges, loaded.requests) == (workload.tasks, workload.edges, workload.requests)

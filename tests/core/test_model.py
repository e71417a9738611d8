"""Instance validation: every bad input gives one SpecError naming the field and the reason."""

import math
from dataclasses import replace

import pytest

from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Edge, Instance, Link, Node, Request, Task, Workload

GPU = Node("g1", "gpu", 40.0, 40.0, zone="hospital")
CPU = Node("c1", "cpu", 10.0, 64.0, zone="cloud")
CLUSTER = Cluster(nodes=(GPU, CPU), default_bandwidth=100.0)


def build(tasks, edges=(), cluster=CLUSTER, requests=()):
    return Instance.build(Workload(tasks=tuple(tasks), edges=tuple(edges), requests=tuple(requests)), cluster)


def test_cycle_names_its_tasks():
    tasks = [Task(x, 1.0) for x in "abcd"]
    with pytest.raises(SpecError, match=r"cycle: 'b' -> 'c' -> 'd' -> 'b'") as err:
        build(tasks, [Edge("a", "b"), Edge("b", "c"), Edge("c", "d"), Edge("d", "b")])
    assert err.value.field == "edges"


def test_task_that_fits_no_node_says_why_for_each_kind():
    task = Task("ct", 1.0, memory=80.0, allowed_zones=("hospital", "cloud"))
    with pytest.raises(SpecError) as err:
        build([task])
    assert err.value.field == "tasks['ct']"
    assert "gpu: memory: needs 80 GB, largest gpu node has 40 GB" in err.value.reason
    assert "cpu: memory: needs 80 GB, largest cpu node has 64 GB" in err.value.reason
    with pytest.raises(SpecError, match=r"gpu: zone 'hospital' not in allowed_zones \['edge'\]; "
                                        r"cpu: kind not in allowed_kinds \['gpu'\]"):
        build([Task("x", 1.0, allowed_kinds=("gpu",), allowed_zones=("edge",))])


@pytest.mark.parametrize("field,task", [
    ("tasks['a'].work", Task("a", -1.0)),
    ("tasks['a'].work", Task("a", math.nan)),
    ("tasks['a'].memory", Task("a", 1.0, memory=math.inf)),
    ("tasks['a'].work", Task("a", "lots")),
    ("tasks['a'].request", Task("a", 1.0, request="nope")),
])
def test_bad_task_fields(field, task):
    with pytest.raises(SpecError) as err:
        build([task])
    assert err.value.field == field


def test_edges_and_ids():
    with pytest.raises(SpecError, match=r"edges\['a'->'zz'\].target: unknown task 'zz'"):
        build([Task("a", 1.0)], [Edge("a", "zz")])
    with pytest.raises(SpecError, match=r"tasks\['a'\]: duplicate id"):
        build([Task("a", 1.0), Task("a", 2.0)])
    with pytest.raises(SpecError, match=r"edges\['a'->'b'\].data: must be >= 0"):
        build([Task("a", 1.0), Task("b", 1.0)], [Edge("a", "b", -5.0)])
    with pytest.raises(SpecError, match=r"duplicate edge"):
        build([Task("a", 1.0), Task("b", 1.0)], [Edge("a", "b"), Edge("a", "b")])
    with pytest.raises(SpecError, match=r"depends on itself"):
        build([Task("a", 1.0)], [Edge("a", "a")])


def test_empty_inputs():
    with pytest.raises(SpecError, match="^tasks: the workload has no tasks"):
        build([])
    with pytest.raises(SpecError, match="^nodes: the cluster has no nodes"):
        build([Task("a", 1.0)], cluster=Cluster(nodes=()))
    with pytest.raises(SpecError, match=r"nodes\['g1'\].speed: must be > 0"):
        build([Task("a", 1.0)], cluster=Cluster(nodes=(Node("g1", "gpu", 0.0, 1.0),)))


def test_zero_bandwidth_between_nodes_that_must_talk():
    cluster = Cluster(nodes=(GPU, CPU), links=(Link("hospital", "cloud", 0.0),))
    tasks = [Task("scan", 1.0, allowed_zones=("hospital",)), Task("report", 1.0, allowed_kinds=("cpu",))]
    with pytest.raises(SpecError, match=r"edges\['scan'->'report'\]: zero bandwidth") as err:
        build(tasks, [Edge("scan", "report", 1.0)], cluster=cluster)
    assert "'scan' on ['g1']" in err.value.reason and "'report' on ['c1']" in err.value.reason
    # The same pair is fine when the tasks may share a node.
    build([Task("scan", 1.0), Task("report", 1.0)], [Edge("scan", "report", 1.0)], cluster=cluster)


def test_links_resolve_node_pair_over_zone_pair_over_default():
    nodes = (Node("a", "cpu", 1.0, 1.0, zone="z"), Node("b", "cpu", 1.0, 1.0, zone="z"),
             Node("c", "cpu", 1.0, 1.0, zone="y"))
    cluster = Cluster(nodes=nodes, links=(Link("z", "z", 200.0, 0.1), Link("a", "b", 400.0, 0.2)),
                      default_bandwidth=50.0, default_latency=0.3)
    inst = build([Task("t", 1.0)], cluster=cluster)
    assert inst.transfer_time(400.0, 0, 1) == pytest.approx(0.2 + 1.0)  # node pair
    assert inst.transfer_time(50.0, 2, 0) == pytest.approx(0.3 + 1.0)  # default
    assert inst.transfer_time(5.0, 1, 1) == 0.0
    with pytest.raises(SpecError, match=r"links\['a','nowhere'\]: unknown node or zone 'nowhere'"):
        build([Task("t", 1.0)], cluster=Cluster(nodes=nodes, links=(Link("a", "nowhere", 1.0),)))


def test_requests_and_speed_factors():
    cluster = Cluster(nodes=(GPU, CPU), default_bandwidth=100.0, speed_factors={"gpu": {"cnn": 4.0}})
    inst = build([Task("a", 80.0, kind="cnn", request="r1", priority=3.0), Task("b", 80.0, kind="etl")],
                 requests=[Request("r1", release=5.0, deadline=60.0)], cluster=cluster)
    assert inst.duration[0].tolist() == [80.0 / (40.0 * 4.0), 80.0 / 10.0]
    assert inst.duration[1].tolist() == [2.0, 8.0]
    assert inst.release.tolist() == [5.0, 0.0]
    assert inst.request_ids == ("r1", "(no request)")
    assert inst.request_priority.tolist() == [3.0, 1.0]
    with pytest.raises(SpecError, match=r"requests\['r1'\]: duplicate id"):
        build([Task("a", 1.0)], requests=[Request("r1"), Request("r1")])


def test_viable_nodes_keep_every_child_reachable():
    """A task whose child may only run where its node has no link is not viable there."""
    edge = Node("e1", "edge", 3.0, 8.0, zone="site")
    cluster = Cluster(nodes=(edge, CPU, GPU), links=(Link("site", "cloud", 100.0), Link("hospital", "cloud", 100.0)))
    tasks = [Task("ingest", 1.0), Task("detect", 1.0, allowed_kinds=("gpu",))]
    inst = build(tasks, [Edge("ingest", "detect", 1.0)], cluster=cluster)
    # The edge box cannot reach the GPU (no site-hospital link); the CPU and the GPU itself can.
    assert inst.eligible[0].tolist() == [True, True, True]
    assert inst.viable[0].tolist() == [False, True, True]
    assert inst.viable[1].tolist() == inst.eligible[1].tolist()


def test_a_request_without_tasks_is_refused():
    with pytest.raises(SpecError, match=r"requests\['empty'\]: no task belongs to this request"):
        build([Task("a", 1.0, request="r1")], requests=[Request("r1"), Request("empty")])


# --- per-node overhead and per-node speed factors -------------------------------------------------

def test_overhead_adds_to_every_runtime_on_its_node():
    cluster = Cluster(nodes=(GPU, Node("c1", "cpu", 10.0, 64.0, zone="cloud", overhead=1.5)), default_bandwidth=100.0)
    inst = build([Task("a", 20.0), Task("b", 0.0)], cluster=cluster)
    assert inst.overhead.tolist() == [0.0, 1.5]
    assert inst.duration.tolist() == [[20.0 / 40.0, 1.5 + 20.0 / 10.0], [0.0, 1.5]]


def test_zero_overhead_leaves_the_duration_table_the_bare_division():
    tasks = [Task(f"t{i}", work=0.1 * i + 1e-3, kind=("cnn", "etl")[i % 2]) for i in range(50)]
    cluster = Cluster(nodes=(GPU, CPU), default_bandwidth=100.0, speed_factors={"gpu": {"cnn": 3.3}})
    inst = build(tasks, cluster=cluster)
    expected = inst.work[:, None] / inst.rate.T[inst.kind_of]
    assert inst.duration.tobytes() == expected.tobytes()


def test_pinned_task_keeps_its_own_span_despite_overhead():
    cluster = Cluster(nodes=(replace(GPU, overhead=2.0), CPU), default_bandwidth=100.0)
    inst = build([Task("a", 40.0, pinned_node="g1", pinned_start=0.0, pinned_end=5.0)], cluster=cluster)
    assert inst.duration[0, 0] == 5.0


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "fast"])
def test_bad_overhead_names_the_field(value):
    cluster = Cluster(nodes=(replace(GPU, overhead=value), CPU), default_bandwidth=100.0)
    with pytest.raises(SpecError) as err:
        build([Task("a", 1.0)], cluster=cluster)
    assert err.value.field == "nodes['g1'].overhead"


def test_node_speed_factors_override_the_kind_factor_for_one_node():
    g2 = Node("g2", "gpu", 40.0, 40.0, zone="hospital")
    cluster = Cluster(nodes=(GPU, g2), default_bandwidth=100.0, speed_factors={"gpu": {"cnn": 2.0}},
                      node_speed_factors={"g2": {"cnn": 0.5}})
    inst = build([Task("a", 80.0, kind="cnn"), Task("b", 80.0, kind="etl")], cluster=cluster)
    assert inst.duration.tolist() == [[1.0, 4.0], [2.0, 2.0]]


@pytest.mark.parametrize("factors,field", [
    ({"nope": {"cnn": 2.0}}, "node_speed_factors['nope']"),
    ({"g1": {"cnn": 0.0}}, "node_speed_factors['g1']['cnn']"),
    ({"g1": {"cnn": math.nan}}, "node_speed_factors['g1']['cnn']"),
])
def test_bad_node_speed_factor_names_the_field(factors, field):
    with pytest.raises(SpecError) as err:
        build([Task("a", 1.0)], cluster=replace(CLUSTER, node_speed_factors=factors))
    assert err.value.field == field


def test_evaluator_schedules_with_the_overhead():
    from apportion.core.evaluate import Evaluator, Plan

    cluster = Cluster(nodes=(replace(CPU, overhead=1.0),), default_bandwidth=100.0)
    inst = build([Task("a", 20.0)], cluster=cluster)
    schedule = Evaluator(inst).schedule(Plan(assignment=[0], order=[0]))
    assert schedule.end[0] == inst.duration[0, 0] == 3.0

"""api.write_outputs: the three result files, each written whole (core.atomic)."""

from __future__ import annotations

import csv
import json
import math

from apportion.core.api import Settings, optimize, write_outputs
from apportion.core.model import Cluster, Edge, Instance, Node, Task, Workload

CLUSTER = Cluster(nodes=(Node("g", "gpu", 40.0, 40.0), Node("c", "cpu", 10.0, 64.0)), default_bandwidth=100.0)


def instance(work: float) -> Instance:
    tasks = tuple(Task(name, work) for name in "abcd")
    edges = (Edge("a", "b", 5.0), Edge("a", "c", 5.0), Edge("b", "d"), Edge("c", "d"))
    return Instance.build(Workload(tasks=tasks, edges=edges), CLUSTER)


def test_outputs_replace_older_ones_whole_and_leave_no_temporary_files(tmp_path):
    inst = instance(10.0)
    write_outputs(optimize(inst, Settings(algorithm="round-robin")), tmp_path)
    result = optimize(inst, Settings(algorithm="heft"))
    paths = write_outputs(result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pareto.csv", "plan.json", "schedule.csv"]
    plan = json.loads(paths["plan"].read_text())
    assert plan["settings"]["algorithm"] == "heft"
    assert [row["node"] for row in plan["tasks"]] == [inst.node_ids[j] for j in result.chosen.plan.assignment]
    with paths["schedule"].open(newline="") as fh:
        schedule = list(csv.reader(fh))
    assert [row[0] for row in schedule[1:]] == [inst.task_ids[t] for t in result.chosen.plan.order]
    with paths["pareto"].open(newline="") as fh:
        assert len(list(csv.reader(fh))) == 1 + result.pareto_size


def _refuse(constant):
    raise AssertionError(f"non-standard JSON constant {constant}")


def test_a_plan_with_infinite_metrics_is_written_as_standard_json(tmp_path):
    """Zero work: makespan 0, throughput infinite; plan.json and the summary say null for it."""
    result = optimize(instance(0.0), Settings(algorithm="heft"))
    assert math.isinf(result.metrics["throughput"])
    paths = write_outputs(result, tmp_path / "new" / "folder")
    plan = json.loads(paths["plan"].read_text(), parse_constant=_refuse)
    assert plan["metrics"]["throughput"] is None and plan["metrics"]["makespan"] == 0.0
    assert json.loads(json.dumps(result.summary(), allow_nan=False))["makespan"] == 0.0

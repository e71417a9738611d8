"""`apportion simulate` and `apportion replan`, run as users run them: optimize -> simulate -> replan."""

import csv
import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from apportion.core.cli import main
from apportion.core.simulate import METRICS

EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"
WORKLOAD, CLUSTER = str(EXAMPLES / "workload.yaml"), str(EXAMPLES / "cluster.yaml")
# Small budgets keep the tests fast; the example has 6 tasks on 3 nodes.
BUDGET = ["--population", "16", "--generations", "8"]


def rows(path):
    with Path(path).open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimize")
    assert main(["optimize", WORKLOAD, CLUSTER, *BUDGET, "--seed", "3", "--out", str(out), "--json"]) == 0
    return out / "plan.json"


def run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_simulate_without_noise_realises_the_plan(planned, tmp_path, capsys):
    """With no noise and no failures every sample is the evaluator's schedule, so the realised
    metrics equal the predicted ones and the plan's recorded makespan."""
    report = run_json(capsys, ["simulate", WORKLOAD, CLUSTER, str(planned), "--samples", "20", "--noise-sigma", "0",
                               "--json", "--out", str(tmp_path)])
    makespan = json.loads(planned.read_text())["metrics"]["makespan"]
    assert report["predicted"]["makespan"] == makespan
    for name in ("makespan", "utilization", "imbalance", "mean_response", "p95_response", "completion_rate"):
        assert report["realised"][name]["p5"] == report["realised"][name]["p95"] == pytest.approx(
            report["predicted"][name], rel=1e-12), name
    samples = rows(tmp_path / "simulation.csv")
    assert len(samples) == 20 and list(samples[0]) == ["sample", *METRICS]
    assert {float(r["makespan"]) for r in samples} == {makespan}


def test_simulate_under_failures_writes_one_row_per_sample(planned, tmp_path, capsys):
    argv = ["simulate", WORKLOAD, CLUSTER, str(planned), "--samples", "300", "--seed", "5", "--mtbf", "20",
            "--repair", "10", "--failure-rule", "backup", "--out", str(tmp_path)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "predicted" in table and all(name in table for name in METRICS)
    samples = rows(tmp_path / "simulation.csv")
    assert len(samples) == 300
    failed = np.array([float(r["failed_tasks"]) for r in samples])
    stability = np.array([float(r["stability"]) for r in samples])
    assert failed.max() > 0  # nodes failing every 20 s on average do hit a 25 s plan
    assert np.array_equal(stability, 1 - failed / 6)
    first = (tmp_path / "simulation.csv").read_bytes()
    assert main(argv) == 0  # same seed, same samples
    assert (tmp_path / "simulation.csv").read_bytes() == first


def test_replan_keeps_finished_and_running_tasks(planned, tmp_path, capsys):
    """A node fails mid-plan and is repaired 100 s later: what finished or runs elsewhere keeps
    node and times in the new schedule; the task running on the failed node is lost and placed
    again, on that node only once it is back."""
    old = {t["task"]: t for t in json.loads(planned.read_text())["tasks"]}
    starts = sorted({t["start"] for t in old.values()})
    # The first moment between two task starts when a node runs a task that is not the only
    # GPU (so the lost task has somewhere else to go): that node fails.
    at, victim = next(((a + b) / 2, t["node"]) for a, b in pairwise(starts) for t in old.values()
                      if t["start"] < (a + b) / 2 < t["end"] and t["node"] != "gpu1")
    report = run_json(capsys, ["replan", WORKLOAD, CLUSTER, str(planned), "--at", repr(at), "--fail", victim,
                               "--repair", "100", *BUDGET, "--out", str(tmp_path), "--json"])
    for key in ("makespan", "previous_makespan", "moved_tasks", "pinned_tasks", "lost_tasks", "seconds"):
        assert key in report
    assert report["previous_makespan"] == max(t["end"] for t in old.values())

    new = {r["task"]: r for r in rows(tmp_path / "schedule.csv")}
    assert set(new) == set(old)
    started = {name for name, t in old.items() if t["start"] < at}
    lost = {name for name in started if old[name]["node"] == victim and old[name]["end"] > at}
    kept = started - lost
    assert report["pinned_tasks"] == len(kept) and report["lost_tasks"] == len(lost) == 1
    for name in kept:
        assert new[name]["node"] == old[name]["node"]
        assert float(new[name]["start"]) == old[name]["start"] and float(new[name]["end"]) == old[name]["end"]
    for name in set(old) - kept:
        assert float(new[name]["start"]) >= (at + 100 if new[name]["node"] == victim else at)
    # A lost task counts as lost wherever it goes again; the others that change node, as moved.
    moved = {name for name in set(old) - kept - lost if new[name]["node"] != old[name]["node"]}
    assert report["moved_tasks"] == len(moved)

    changes = {r["task"]: r["status"] for r in rows(tmp_path / "changes.csv")}
    assert {name for name, s in changes.items() if s in ("finished", "running")} == kept
    assert {name for name, s in changes.items() if s == "lost"} == lost
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["replan"]["at"] == at and plan["metrics"]["makespan"] == report["makespan"]


def test_replan_with_a_joining_node_and_urgent_requests(planned, tmp_path, capsys):
    urgent = tmp_path / "urgent.yaml"
    urgent.write_text("""
workload:
  requests: [{id: case_c, priority: 3}]
  tasks:
    - {id: ct_seg_c, kind: cnn, work: 900, memory: 12, request: case_c, allowed_kinds: [gpu]}
    - {id: ct_report_c, kind: nlp, work: 150, memory: 6, request: case_c}
  edges:
    - {source: ct_load_a, target: ct_seg_c, data: 300}
    - {source: ct_seg_c, target: ct_report_c, data: 15}
""")
    join = "{id: gpu2, kind: gpu, speed: 40, memory: 40, zone: cloud}"
    at = 6.0
    report = run_json(capsys, ["replan", WORKLOAD, CLUSTER, str(planned), "--at", "6", "--join", join,
                               "--urgent", str(urgent), *BUDGET, "--out", str(tmp_path / "out"), "--json"])
    assert report["new_tasks"] == 2 and report["nodes"] == 4 and report["tasks"] == 8
    new = {r["task"]: r for r in rows(tmp_path / "out" / "schedule.csv")}
    assert float(new["ct_seg_c"]["start"]) >= at and new["ct_seg_c"]["node_kind"] == "gpu"
    assert float(new["ct_report_c"]["start"]) >= float(new["ct_seg_c"]["end"])
    assert float(new["ct_seg_c"]["start"]) >= float(new["ct_load_a"]["end"])


@pytest.fixture
def other_workload(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text((EXAMPLES / "workload.yaml").read_text().replace("ct_report_b", "ct_summary_b"))
    return str(path)


@pytest.mark.parametrize("argv,field", [
    (["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "5", "--fail", "gpu9"], "fail: unknown node 'gpu9'"),
    (["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "-5"], "at: "),
    (["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "5", "--repair", "30"], "repair: "),
    (["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "1e6"], "nothing to re-plan"),
    (["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "5", "--join", "{id: gpu2, kind: gpu, speed: 0, memory: 4}"],
     "nodes['gpu2'].speed"),
    (["replan", "{other}", CLUSTER, "{plan}", "--at", "5"], "plan.tasks['ct_report_b']: unknown task"),
    (["simulate", "{other}", CLUSTER, "{plan}"], "plan.tasks['ct_report_b']: unknown task"),
    (["simulate", WORKLOAD, CLUSTER, "{plan}", "--mtbf", "-1"], "uncertainty.mtbf"),
    (["simulate", WORKLOAD, CLUSTER, "{plan}", "--samples", "0"], "samples"),
    (["simulate", WORKLOAD, CLUSTER, CLUSTER], "not a plan"),
])
def test_bad_input_is_one_line_and_exit_2(planned, other_workload, tmp_path, capsys, argv, field):
    argv = [a.format(plan=planned, other=other_workload) if a.startswith("{") and a.endswith("}") and " " not in a
            else a for a in argv]
    if argv[0] == "replan":
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("apportion: error: ") and field in lines[0], captured.err
    assert captured.out == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit,field", [
    (lambda plan: plan["tasks"].pop(), "plan.tasks: no entry"),
    (lambda plan: plan["tasks"][0].update(node="gpu7"), ".node: unknown node 'gpu7'"),
    (lambda plan: plan["tasks"][0].update(node=["gpu1"]), ".node: unknown node ['gpu1']"),
    (lambda plan: plan["tasks"][0].update(end=-1), ".end: must be a finite time"),
    (lambda plan: plan["order"].reverse(), "before its parent"),
    (lambda plan: plan["tasks"][1].update(node="edge1"), "placement rules exclude"),
])
def test_plan_files_that_do_not_fit_are_refused(planned, tmp_path, capsys, edit, field):
    plan = json.loads(planned.read_text())
    edit(plan)
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(plan))
    assert main(["simulate", WORKLOAD, CLUSTER, str(bad), "--samples", "5"]) == 2
    assert field in capsys.readouterr().err

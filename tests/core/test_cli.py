"""The `apportion` command line, run as users run it."""

import argparse
import csv
import importlib.metadata
import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from apportion.core.cli import main
from apportion.core.pareto import OBJECTIVES, non_dominated

EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"
WORKLOAD, CLUSTER = str(EXAMPLES / "workload.yaml"), str(EXAMPLES / "cluster.yaml")


def run_json(capsys, *argv):
    assert main(["optimize", WORKLOAD, CLUSTER, "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_optimize_writes_plan_front_and_schedule(tmp_path, capsys):
    out = tmp_path / "run"
    summary = run_json(capsys, "--population", "20", "--generations", "15", "--seed", "3", "--out", str(out))
    for key in ("makespan", "utilization", "imbalance", "hypervolume", "pareto_size", "evaluations", "seconds"):
        assert key in summary
    plan = json.loads((out / "plan.json").read_text())
    workload_tasks = {t["task"] for t in plan["tasks"]}
    assert len(workload_tasks) == len(plan["tasks"]) == len(plan["order"])
    assert plan["metrics"]["makespan"] == summary["makespan"] == max(t["end"] for t in plan["tasks"])

    with (out / "schedule.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["task"] for r in rows} == workload_tasks
    by_node = {}
    for r in rows:
        by_node.setdefault(r["node"], []).append((float(r["start"]), float(r["end"])))
    for spans in by_node.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in pairwise(spans)), "a node runs one task at a time"

    with (out / "pareto.csv").open() as fh:
        front = list(csv.DictReader(fh))
    assert len(front) == summary["pareto_size"] and sum(int(r["chosen"]) for r in front) == 1
    columns = [OBJECTIVES[name] for name in summary["objectives"]]
    F = np.array([[float(r[column]) * (1.0 if sense == "min" else -1.0) for column, sense in columns] for r in front])
    assert len(non_dominated(F)) == len(front)


def test_default_objectives_follow_the_workload_s_arrivals_and_the_box_is_recorded(tmp_path, capsys):
    """The bundled example's two cases arrive at 0 s and 5 s: response time replaces makespan;
    a traffic cycle releases every region at 0 s: makespan. Named objectives win. Every run
    of one instance reports the same reference box."""
    from apportion.core import defaults

    streaming = run_json(capsys, "--population", "12", "--generations", "3", "--out", str(tmp_path / "a"))
    assert tuple(streaming["objectives"]) == defaults.STREAMING_OBJECTIVES
    heft = run_json(capsys, "--algorithm", "heft", "--out", str(tmp_path / "b"))
    assert heft["reference_box"] == streaming["reference_box"]
    assert set(heft["reference_box"]["objectives"]) == set(defaults.STREAMING_OBJECTIVES)
    named = run_json(capsys, "--algorithm", "heft", "--objectives", "makespan", "energy", "--out", str(tmp_path / "c"))
    assert named["objectives"] == ["makespan", "energy"] and set(named["reference_box"]["objectives"]) == {
        "makespan", "energy"}
    assert main(["scenario", "traffic_prediction", "--size", "2", "--nodes", "4", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert main(["optimize", str(tmp_path / "t" / "workload.yaml"), str(tmp_path / "t" / "cluster.yaml"), "--json",
                 "--algorithm", "heft", "--out", str(tmp_path / "d")]) == 0
    assert tuple(json.loads(capsys.readouterr().out)["objectives"]) == defaults.DEFAULT_OBJECTIVES


def test_same_seed_same_plan(tmp_path, capsys):
    for name in ("a", "b"):
        run_json(capsys, "--population", "16", "--generations", "8", "--seed", "11", "--out", str(tmp_path / name))
    assert (tmp_path / "a" / "plan.json").read_bytes() == (tmp_path / "b" / "plan.json").read_bytes()
    assert (tmp_path / "a" / "pareto.csv").read_bytes() == (tmp_path / "b" / "pareto.csv").read_bytes()


@pytest.mark.parametrize("algorithm", ["heft", "greedy", "min-min", "random"])
def test_baselines_from_the_command_line(tmp_path, capsys, algorithm):
    summary = run_json(capsys, "--algorithm", algorithm, "--out", str(tmp_path))
    assert summary["algorithm"] == algorithm and summary["pareto_size"] == 1 and summary["evaluations"] >= 1


def test_sla_selection_respects_the_bound(tmp_path, capsys):
    fastest = run_json(capsys, "--population", "20", "--generations", "10", "--out", str(tmp_path),
                       "--select", "weights:1,0,0")["makespan"]
    bound = fastest * 1.5
    chosen = run_json(capsys, "--population", "20", "--generations", "10", "--out", str(tmp_path),
                      "--select", f"sla:{bound}")
    assert chosen["makespan"] <= bound


@pytest.mark.parametrize("argv,field", [
    (["optimize", WORKLOAD, CLUSTER, "--population", "1"], "population"),
    (["optimize", WORKLOAD, CLUSTER, "--objectives", "makespan,speed"], "objectives"),
    (["optimize", WORKLOAD, CLUSTER, "--select", "best"], "select"),
    (["optimize", WORKLOAD, "/nonexistent/cluster.yaml"], "/nonexistent/cluster.yaml"),
    (["optimize", CLUSTER, CLUSTER], ""),
    (["scenario", "weather_forecast"], "scenario"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, field):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "optimize" else [])) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("apportion: error: ") and field in lines[0]
    assert captured.out == ""


def test_validate_explains(tmp_path, capsys):
    assert main(["validate", WORKLOAD]) == 0
    assert "tasks" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "workload.yaml").read_text().replace("work: 40,", "work: -40,", 1))
    assert main(["validate", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "ct_load_a" in error and "work" in error


def test_scenario_specs_round_trip_into_optimize(tmp_path, capsys):
    assert main(["scenario", "medical_diagnosis", "--size", "3", "--nodes", "6", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["optimize", str(tmp_path / "workload.yaml"), str(tmp_path / "cluster.yaml"), "--json",
                 "--algorithm", "heft", "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == 3 * 7


def test_installed_entry_point(tmp_path):
    """The console script exits non-zero with one readable line on bad input."""
    exe = Path(sys.executable).with_name("apportion")
    done = subprocess.run([str(exe), "validate", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "missing.json" in done.stderr


# --- Plug-in commands ------------------------------------------------------------------------------

def _distribution(root: Path, name: str, entry_points: str) -> None:
    """An installed distribution on ``root`` (a dist-info folder), publishing ``entry_points``."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_a_plugin_command_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "hello_plugin.py").write_text(
        "def register(subparsers):\n"
        "    hello = subparsers.add_parser('hello', help='say hello')\n"
        "    hello.add_argument('--name', default='world', help='whom to greet')\n"
        "    hello.set_defaults(run=lambda args: print(f'hello {args.name}') or 0)\n")
    _distribution(tmp_path, "hello_plugin", "[apportion.commands]\nhello = hello_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["hello", "--name", "Ada"]) == 0
    assert capsys.readouterr().out == "hello Ada\n"


def test_a_broken_plugin_is_one_warning_and_the_rest_works(tmp_path, monkeypatch, capsys):
    (tmp_path / "clashing_plugin.py").write_text(
        "def register(subparsers):\n    subparsers.add_parser('optimize')\n")
    _distribution(tmp_path, "broken_plugin", "[apportion.commands]\nbroken = no_such_module_here:register\n"
                                             "optimize = clashing_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["validate", WORKLOAD]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 2  # one line per broken plug-in: a missing module, a name taken by the core
    assert warnings[0].startswith("apportion: warning: command 'broken' (no_such_module_here:register) skipped: "
                                  "ModuleNotFoundError")
    assert warnings[1].startswith("apportion: warning: command 'optimize' (clashing_plugin:register) skipped: "
                                  "ArgumentError: argument COMMAND: conflicting subparser: optimize")
    assert "Traceback" not in captured.err and "tasks" in captured.out


def test_the_core_command_line_imports_nothing_of_airflow_mlflow_or_the_stack():
    """core/ may not import apportion.operators or apportion.stack (they are plug-ins), and
    loading the command line with its plug-ins imports neither Airflow nor MLflow."""
    import ast

    core = Path(__file__).resolve().parents[2] / "core"
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.startswith(("apportion.operators", "apportion.stack"))], path
    code = ("import sys; from apportion.core.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'mlflow', 'numba', 'pymoo')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- Polish: version, help, defaults -----------------------------------------------------------------

def _subparsers():
    from apportion.core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"apportion {importlib.metadata.version('apportion')}\n"


def test_every_option_of_every_command_has_help_and_shows_its_default():
    parser, commands = _subparsers()
    assert {"optimize", "simulate", "replan", "validate", "scenario", "compare", "demo"} <= set(commands)
    for name, command in commands.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest}: no help"
            if action.option_strings:
                shown = formatter._get_help_string(action)
                assert "default" in shown or "(required)" in shown, f"{name} {action.option_strings}: {shown}"
        if any(a.option_strings and not isinstance(a, argparse._HelpAction) for a in command._actions):
            assert "(default: " in command.format_help(), name  # plug-ins' parsers format defaults too


def test_defaults_come_from_the_shared_constants():
    from apportion.core import defaults

    _, commands = _subparsers()
    opt = commands["optimize"].parse_args(["w", "c"])
    assert (opt.algorithm, opt.population, opt.generations, opt.seed, opt.select, opt.noise_sigma) == (
        defaults.ALGORITHM, defaults.POPULATION, defaults.GENERATIONS, defaults.SEED, defaults.SELECT,
        defaults.NOISE_SIGMA)
    assert opt.objectives is None  # the workload's default: defaults.objectives_for
    sim = commands["simulate"].parse_args(["w", "c", "p"])
    assert (sim.noise_sigma, sim.samples, sim.seed) == (defaults.NOISE_SIGMA, defaults.SAMPLES, defaults.SEED)
    rep = commands["replan"].parse_args(["w", "c", "p", "--at", "1"])
    assert rep.objectives is None and rep.select == defaults.SELECT


def test_a_registered_allocator_is_an_algorithm_choice(monkeypatch):
    from apportion.core.algorithms import registry

    class Mine:
        name = "my-allocator"

    monkeypatch.setitem(registry.REGISTERED, Mine.name, Mine)
    _, commands = _subparsers()
    assert commands["optimize"].parse_args(["w", "c", "--algorithm", "my-allocator"]).algorithm == "my-allocator"
    choices = next(a for a in commands["optimize"]._actions if a.dest == "algorithm").choices
    assert tuple(choices) == registry.algorithm_names() and "my-allocator" in choices


def test_validate_lists_every_schema_error_of_both_halves(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload:\n"
                   "  tasks:\n"
                   "    - {id: a, work: -5, colour: red}\n"
                   "    - {id: b, work: x}\n"
                   "  edges: [{source: a, target: b, data: -1}]\n"
                   "cluster:\n"
                   "  nodes: [{id: n1, kind: cpu, speed: 0, memory: 8}]\n")
    assert main(["validate", str(bad)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == f"apportion: error: {bad}: 5 errors"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  tasks['a'].colour", "  tasks['a'].work", "  tasks['b'].work", "  edges['a'->'b'].data", "  nodes['n1'].speed"]
    assert captured.out == ""


def test_optimize_plans_with_a_calibration_file(tmp_path, capsys):
    """The calibrated speed reaches the plan (the overhead is 0 here: the decoder that writes the
    schedule does not add it yet, see tests/core/test_model.py)."""
    from apportion.core import calibrate
    from apportion.core.calibrate import Observation

    cnn_on_gpu = [Observation("gpu1", "cnn", work, work / 50.0) for work in (100, 400, 900)]
    path = calibrate.save(calibrate.fit(cnn_on_gpu, runs=("r1",), fitted_at="t"), tmp_path / "calibration.json")
    out = tmp_path / "run"
    assert main(["optimize", WORKLOAD, CLUSTER, "--algorithm", "heft", "--calibration", str(path),
                 "--out", str(out)]) == 0
    with (out / "schedule.csv").open() as fh:
        rows = {r["task"]: r for r in csv.DictReader(fh)}
    assert rows["ct_seg_a"]["node"] == "gpu1"
    assert float(rows["ct_seg_a"]["duration"]) == pytest.approx(900 / 50.0)  # declared: 900 / (40 x 4)
    assert path.exists()  # an input, never a stale output
    capsys.readouterr()
    assert main(["optimize", WORKLOAD, CLUSTER, "--calibration", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.strip().startswith("apportion: error: calibration: no such file")

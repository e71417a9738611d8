"""The console script under a careless or hostile user: a reader that closes stdout, Ctrl-C,
options that cannot work given with a long search, a re-used output folder, ids a
spreadsheet would run as formulas."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interrupts import interrupt, popen_interruptible

EXE = str(Path(sys.executable).with_name("apportion"))
EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"
WORKLOAD, CLUSTER = str(EXAMPLES / "workload.yaml"), str(EXAMPLES / "cluster.yaml")
LONG_SEARCH = ["--population", "400", "--generations", "100000"]  # minutes of work, at least


def apportion(*argv, **kwargs):
    return subprocess.run([EXE, *map(str, argv)], capture_output=True, text=True, timeout=120, **kwargs)


def one_error_line(done, *words):
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("apportion: error: ") and len(lines[0]) < 500, done.stderr
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    done = apportion("optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    return out


# --- a closed stdout, Ctrl-C ------------------------------------------------------------------

def _with_closed_stdout(argv):
    """Run the console script with its stdout's reader gone before it writes a byte."""
    proc = subprocess.Popen([EXE, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


def test_help_and_version_to_a_closed_stdout_end_quietly():
    for argv in (["--version"], ["optimize", "--help"]):
        status, err = _with_closed_stdout(argv)
        assert status in (0, 141) and err == ""  # argparse drops what it cannot write


@pytest.mark.parametrize("argv", [
    ["validate", WORKLOAD],
    ["optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2", "--out", "{tmp}/o"],
    ["optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2", "--json", "--out", "{tmp}/j"],
    ["simulate", WORKLOAD, CLUSTER, "{plan}", "--samples", "20"],
    ["replan", WORKLOAD, CLUSTER, "{plan}", "--at", "0", "--population", "8", "--generations", "2",
     "--out", "{tmp}/r"],
    ["scenario", "medical_diagnosis", "--size", "2", "--nodes", "2", "--out", "{tmp}/s"],
], ids=lambda argv: " ".join(argv[:1] + argv[-1:]))
def test_a_closed_stdout_ends_every_command_quietly(argv, tmp_path, plan_dir):
    argv = [a.format(tmp=tmp_path, plan=plan_dir / "plan.json") for a in argv]
    status, err = _with_closed_stdout(argv)
    assert status == 141, err  # 128 + SIGPIPE, as a shell reports a process a pipe's reader closed
    assert err == ""


@pytest.mark.parametrize("delay", [0.3, 1.0, 3.0])
def test_ctrl_c_at_any_moment_is_one_line_and_status_130(delay, tmp_path):
    """From parsing and loading (0.3 s) to the search (3 s): one line, no traceback."""
    proc = popen_interruptible([EXE, "optimize", WORKLOAD, CLUSTER, *LONG_SEARCH, "--out", str(tmp_path / "o")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    out, err = interrupt(proc, within=60)
    assert proc.returncode == 130, err
    assert err == "apportion: interrupted\n"
    assert not (tmp_path / "o").exists(), "an interrupted run leaves no folder behind"


# --- every option checked before the search ---------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--select", "weights:1,2"], ["select", "weights gives 2 numbers for"]),
    (["--objectives", "makespan", "--select", "weights:1,1"], ["select", "2 numbers for 1 objectives"]),
    (["--out", "{file}"], ["out", "exists and is not a folder"]),
    (["--out", "{file}/sub"], ["out", "cannot write into"]),
    (["--out", "/proc/apportion-out"], ["out", "cannot write into"]),
])
@pytest.mark.parametrize("command", ["optimize", "replan"])
def test_unusable_settings_are_refused_before_the_search(command, argv, words, tmp_path, plan_dir):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    argv = [a.format(file=afile) for a in argv]
    inputs = [WORKLOAD, CLUSTER] + ([plan_dir / "plan.json", "--at", "0"] if command == "replan" else [])
    started = time.perf_counter()
    done = apportion(command, *inputs, *LONG_SEARCH, *argv)
    seconds = time.perf_counter() - started
    one_error_line(done, *words)
    assert seconds < 5, f"the error came after {seconds:.1f} s: after the search, not before"
    assert afile.read_text() == "not a folder\n"


def test_simulate_and_scenario_check_out_before_the_work(tmp_path, plan_dir):
    afile = tmp_path / "afile"
    afile.write_text("")
    started = time.perf_counter()
    one_error_line(apportion("simulate", WORKLOAD, CLUSTER, plan_dir / "plan.json", "--samples", "100000000",
                             "--out", afile), "out")
    one_error_line(apportion("scenario", "medical_diagnosis", "--size", "100000", "--out", afile), "out")
    assert time.perf_counter() - started < 10


# --- one consistent set of outputs ------------------------------------------------------------

def _manifest(folder: Path) -> dict:
    return json.loads((folder / "outputs.json").read_text())


def test_outputs_come_with_a_manifest_written_last(tmp_path):
    import hashlib

    out = tmp_path / "o"
    done = apportion("optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    manifest = _manifest(out)
    assert manifest["command"][:2] == ["apportion", "optimize"]
    assert set(manifest["files"]) == {"plan.json", "pareto.csv", "schedule.csv"}
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == entry["sha256"]
    assert sorted(p.name for p in out.iterdir()) == ["outputs.json", "pareto.csv", "plan.json", "schedule.csv"]


def test_a_reused_folder_keeps_no_stale_file_of_another_command(tmp_path, plan_dir):
    out = tmp_path / "o"
    done = apportion("replan", WORKLOAD, CLUSTER, plan_dir / "plan.json", "--at", "0", "--population", "8",
                     "--generations", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    assert (out / "changes.csv").is_file()
    (out / "notes.txt").write_text("mine\n")  # a file of the user's: never touched
    done = apportion("optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    assert not (out / "changes.csv").exists(), "replan's changes.csv is not optimize's"
    assert (out / "notes.txt").read_text() == "mine\n"
    assert set(_manifest(out)["files"]) == {"plan.json", "pareto.csv", "schedule.csv"}
    done = apportion("simulate", WORKLOAD, CLUSTER, out / "plan.json", "--samples", "10", "--out", out)
    assert done.returncode == 0, done.stderr
    # plan.json is what simulate read: not removed, but no longer one of the set's files.
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "outputs.json", "plan.json", "simulation.csv"]
    assert set(_manifest(out)["files"]) == {"simulation.csv"}


def test_an_interrupted_search_leaves_the_previous_set_whole(tmp_path):
    out = tmp_path / "o"
    assert apportion("optimize", WORKLOAD, CLUSTER, "--population", "8", "--generations", "2",
                     "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = popen_interruptible([EXE, "optimize", WORKLOAD, CLUSTER, *LONG_SEARCH, "--seed", "5", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.0)
    interrupt(proc, within=60)
    assert proc.returncode == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "no staging folder, no file changed"


# --- spreadsheet formulas ---------------------------------------------------------------------

def test_ids_that_look_like_formulas_are_quoted_in_every_csv(tmp_path):
    ids = {"load": "=HYPERLINK(\"http://x\")", "seg": "+1+2", "note": "-cmd|' /c calc'!A0", "rep": "@SUM(A1)"}
    workload = {"workload": {
        "requests": [{"id": "=req", "release": 0}],
        "tasks": [{"id": ids["load"], "work": 10, "request": "=req"}, {"id": ids["seg"], "work": 20, "request": "=req"},
                  {"id": ids["note"], "work": 5, "request": "=req"}, {"id": ids["rep"], "work": 5, "request": "=req"}],
        "edges": [{"source": ids["load"], "target": ids["seg"], "data": 1}],
    }}
    cluster = {"cluster": {"nodes": [{"id": "-n1", "kind": "cpu", "speed": 10, "memory": 8},
                                     {"id": "n2", "kind": "cpu", "speed": 5, "memory": 8}],
                           "default_bandwidth": 100}}
    (tmp_path / "w.json").write_text(json.dumps(workload))
    (tmp_path / "c.json").write_text(json.dumps(cluster))
    out = tmp_path / "o"
    done = apportion("optimize", tmp_path / "w.json", tmp_path / "c.json", "--population", "8", "--generations", "2",
                     "--out", out)
    assert done.returncode == 0, done.stderr
    done = apportion("replan", tmp_path / "w.json", tmp_path / "c.json", out / "plan.json", "--at", "0",
                     "--population", "8", "--generations", "2", "--out", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    for path in (out / "schedule.csv", tmp_path / "r" / "schedule.csv", tmp_path / "r" / "changes.csv"):
        with path.open() as fh:
            cells = [cell for row in csv.reader(fh) for cell in row]
        assert not [c for c in cells if c[:1] in "=+-@" and not _number(c)], path.name
        assert "'" + ids["load"] in cells and "'-n1" in cells
    plan = json.loads((out / "plan.json").read_text())  # JSON is not a spreadsheet: ids stay as they are
    assert {t["task"] for t in plan["tasks"]} == set(ids.values())


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

"""The real ``apportion`` console script on generated bad (and good) input: specs as JSON and
YAML text (aliases, huge numbers, wrong types), CSV tables, WfFormat files, plan files and
options. Each case runs in a subprocess under a wall-clock bound and a memory ulimit, and must
end in one of two ways: exit 0 with a valid plan (standard JSON), or exit 2 with exactly one
``apportion: error:`` line under 500 characters. Never a traceback, a hang, or non-standard JSON.

The default run is a few dozen cases (well under a minute); ``-m slow`` runs many more.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.io import load_instance
from apportion.core.plan_file import read_plan

EXE = str(Path(sys.executable).with_name("apportion"))
EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"
WORKLOAD = yaml.safe_load((EXAMPLES / "workload.yaml").read_text())["workload"]
CLUSTER = yaml.safe_load((EXAMPLES / "cluster.yaml").read_text())["cluster"]
WFFORMAT = json.loads((EXAMPLES / "wfformat-small.json").read_text())
TABLES = {p.name: p.read_text() for p in (EXAMPLES / "tables").glob("*.csv")}
SECONDS = 60  # per case: a hang fails the case, it does not stall the suite
# Address space per case: runaway memory is a MemoryError, a failure. Numba's compiler alone
# reserves about 2 GB of it.
MEMORY = 4 * 1024 ** 3
BUDGET = ["--population", "8", "--generations", "2"]

# No shrinking: each case is a process of a second or two; the failing case is printed as drawn.
_COMMON = dict(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = settings(max_examples=5, derandomize=True, **_COMMON)
LONG = settings(max_examples=150, **_COMMON)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _strict_json(text: str):
    """Parse standard JSON only: NaN and Infinity are an error."""
    def refuse(name):
        raise AssertionError(f"non-standard JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def apportion(*argv, cwd) -> subprocess.CompletedProcess:
    """Run the console script as a user would, bounded in time and memory."""
    try:
        return subprocess.run([EXE, *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=SECONDS,
                              preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for more than {SECONDS} s: apportion {' '.join(map(str, argv))[:300]}")


def check_outcome(done: subprocess.CompletedProcess, *, plan: Path | None = None, inputs=None) -> None:
    """Exit 0 (with a valid plan when one was written) or exit 2 with one short error line."""
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    if done.returncode == 0:
        if done.stdout.startswith("{"):
            _strict_json(done.stdout)
        if plan is not None:
            _strict_json(plan.read_text())
            try:
                instance = load_instance(*inputs)
            except SpecError:  # accepted by the CLI, so it loads: anything else is a failure below
                pytest.fail(f"the CLI accepted {inputs} but they do not load")
            read_plan(plan, instance)
        return
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr[-2000:]}"
    lines = done.stderr.splitlines()
    errors = [line for line in lines if line.startswith("apportion: error: ")]
    assert len(errors) == 1 and lines[0] == errors[0], done.stderr[-2000:]
    assert all(len(line) < 500 for line in lines), max(lines, key=len)[:600]
    assert all(line.startswith("  ") for line in lines[1:]), done.stderr[-2000:]  # validate lists each error


# --- values a careless or hostile file holds --------------------------------------------------

HUGE_INT = "HUGE_INT"  # replaced by a literal integer of thousands of digits in the text
ALIAS_BOMB = "ALIAS_BOMB"  # replaced (YAML only) by nine nested levels of nine aliases
scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12)
           | st.floats(-1e12, 1e12, allow_nan=False) | st.sampled_from([HUGE_INT, -1, 0, 10**400, "=cmd", ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
KEYS = ["id", "work", "memory", "kind", "allowed_kinds", "request", "deadline", "source", "target", "data",
        "speed", "zone", "bandwidth", "name", "release", "latency", "pinned_node"]


def _paths(doc, prefix=()):
    """Every (keys and indices) path into ``doc``."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, item in items:
        yield from _paths(item, (*prefix, key))


@st.composite
def mutated(draw, base):
    """``base`` with one to three entries replaced, deleted or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in _paths(doc) if p]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values | st.just(ALIAS_BOMB))
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=5))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


def _bomb(levels: int = 9) -> str:
    nested = "&l0 [" + ", ".join(["lol"] * 9) + "]"
    for level in range(1, levels):
        nested = f"&l{level} [" + ", ".join([nested] + [f"*l{level - 1}"] * 8) + "]"
    return nested


def spec_text(doc, fmt: str) -> str:
    """``doc`` as JSON or YAML text, with its placeholders made real."""
    if fmt == "json":
        text = json.dumps(doc).replace(json.dumps(ALIAS_BOMB), "[]")
    else:
        text = yaml.safe_dump(doc, default_flow_style=True, width=10**6).replace(ALIAS_BOMB, _bomb())
    quoted = json.dumps(HUGE_INT) if fmt == "json" else HUGE_INT
    return text.replace(quoted, "9" * 5000).replace(HUGE_INT, "9" * 5000)


@pytest.fixture(scope="module")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="apportion-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def good_plan(workdir):
    done = apportion("optimize", EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml", *BUDGET, "--out", "good",
                     cwd=workdir)
    assert done.returncode == 0, done.stderr
    return _strict_json((workdir / "good" / "plan.json").read_text())


# --- the cases --------------------------------------------------------------------------------

def _spec_case(workdir, data):
    which = data.draw(st.sampled_from(["workload", "cluster"]))
    fmt = data.draw(st.sampled_from(["json", "yaml"]))
    doc = data.draw(mutated(WORKLOAD if which == "workload" else CLUSTER))
    path = workdir / f"{which}.{fmt}"
    path.write_text(spec_text({which: doc}, fmt))
    other = EXAMPLES / ("cluster.yaml" if which == "workload" else "workload.yaml")
    workload, cluster = (path, other) if which == "workload" else (other, path)
    if data.draw(st.booleans()):
        check_outcome(apportion("validate", path, cwd=workdir))
    shutil.rmtree(workdir / "out", ignore_errors=True)
    done = apportion("optimize", workload, cluster, "--algorithm", "heft", *BUDGET, "--out", "out", cwd=workdir)
    check_outcome(done, plan=workdir / "out" / "plan.json", inputs=(workload, cluster))


def _csv_case(workdir, data):
    tables = workdir / "tables"
    shutil.rmtree(tables, ignore_errors=True)
    tables.mkdir()
    for name, text in TABLES.items():
        rows = list(csv.reader(io.StringIO(text)))
        for _ in range(data.draw(st.integers(0, 3))):
            row = data.draw(st.integers(0, len(rows) - 1))
            cells = rows[row]
            if data.draw(st.booleans()) and cells:
                cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(
                    st.text(max_size=8) | st.sampled_from(["9" * 5000, "-1", "nan", "inf", "=1+1", ""]))
            else:
                cells.append(data.draw(st.text(max_size=4)))
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        (tables / name).write_text(out.getvalue())
    shutil.rmtree(workdir / "out", ignore_errors=True)
    done = apportion("optimize", tables, tables, "--algorithm", "heft", *BUDGET, "--out", "out", cwd=workdir)
    check_outcome(done, plan=workdir / "out" / "plan.json", inputs=(tables, tables))


def _wfformat_case(workdir, data):
    path = workdir / "wf.json"
    path.write_text(spec_text(data.draw(mutated(WFFORMAT)), "json"))
    check_outcome(apportion("validate", path, cwd=workdir))


def _plan_case(workdir, data, good_plan):
    # A folder of its own: an options case may have made ``plan.json`` a folder (``--out plan.json``).
    folder = workdir / "plan_case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    fmt = data.draw(st.sampled_from(["json", "yaml"]))
    path = folder / f"plan.{fmt}"
    path.write_text(spec_text(data.draw(mutated(good_plan)), fmt))
    check_outcome(apportion("simulate", EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml", path,
                            "--samples", "5", cwd=workdir))


OPTION_VALUES = st.sampled_from(["0", "-1", "1", "3", "1.5", "nan", "inf", "-inf", "1e400", "9" * 5000, "", "x",
                                 "knee", "weights:1,1", "weights:1,2,3", "sla:10", "makespan", "utilization,lateness",
                                 "/dev/null", "plan.json", "=cmd", "a\tb\nc"])
OPTIONS = {
    "optimize": ["--algorithm", "--population", "--generations", "--seed", "--objectives", "--select", "--robust",
                 "--robust-statistic", "--noise-sigma", "--robust-validation", "--out"],
    "simulate": ["--samples", "--seed", "--noise-sigma", "--mtbf", "--repair", "--failure-rule", "--out"],
    "replan": ["--at", "--fail", "--repair", "--join", "--urgent", "--objectives", "--select", "--seed", "--out"],
    "scenario": ["--size", "--nodes", "--seed", "--logical-date", "--out"],
}
# Options whose sizes are budgets (population, samples, ...): a value the machine cannot afford
# is another check's business; here they stay small, and only their form is fuzzed.
SMALL = {"--population": "8", "--generations": "2", "--samples": "5", "--robust": "2", "--robust-validation": "5",
         "--size": "2", "--nodes": "2"}


def _options_case(workdir, data):
    command = data.draw(st.sampled_from(sorted(OPTIONS)))
    positional = {"optimize": [EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml"],
                  "simulate": [EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml", "good/plan.json"],
                  "replan": [EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml", "good/plan.json", "--at", "1"],
                  "scenario": ["medical_diagnosis"]}[command]
    argv = [*positional, *(["--population", "8", "--generations", "2"] if command in ("optimize", "replan") else [])]
    for option in data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=3)):
        value = data.draw(OPTION_VALUES)
        if option in SMALL and value.isdigit() and len(value) < 10 and int(value) > 3:
            value = SMALL[option]
        argv += [option, value]
    if "--out" not in argv and command != "simulate":
        argv += ["--out", "opts"]
    shutil.rmtree(workdir / "opts", ignore_errors=True)
    done = apportion(command, *argv, cwd=workdir)
    plan = workdir / "opts" / "plan.json"
    check_outcome(done, plan=plan if plan.exists() else None,
                  inputs=(EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml"))


CASES = {"spec": _spec_case, "csv": _csv_case, "wfformat": _wfformat_case, "options": _options_case}


@pytest.mark.parametrize("kind", sorted(CASES))
@FAST
@given(data=st.data())
def test_generated_input_ends_in_a_plan_or_one_error_line(workdir, good_plan, kind, data):
    CASES[kind](workdir, data)


@FAST
@given(data=st.data())
def test_generated_plan_files_end_in_a_simulation_or_one_error_line(workdir, good_plan, data):
    _plan_case(workdir, data, good_plan)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
@LONG
@given(data=st.data())
def test_many_generated_inputs(workdir, good_plan, kind, data):
    CASES[kind](workdir, data)


@pytest.mark.slow
@LONG
@given(data=st.data())
def test_many_generated_plan_files(workdir, good_plan, data):
    _plan_case(workdir, data, good_plan)

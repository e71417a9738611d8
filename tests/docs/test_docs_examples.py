"""The user documentation runs as written: every command and Python block, against the real files.

The guides (docs/your-workflow.md, docs/python-api.md, docs/makespan-and-response.md,
docs/calibration.md) are
read as a sequence of fenced blocks, in order, from a scratch folder holding copies of
docs/examples/ and core/examples/ (the commands are written as run from the repository root):

* ```console: each ``$ command`` runs in bash (the venv's ``apportion``, ``airflow`` and
  ``python`` first on PATH) and must exit 0, or N when the line says ``# exits with status N``;
  the lines after it are its expected output (stdout and stderr), where ``...`` inside a line
  matches anything and a line of its own ``...`` matches any number of lines. A command with
  no lines after it is only checked for its exit status. A block's commands share one shell
  (``export`` carries on within the block).
* ```python: run in one namespace per document, in process; a ```text block right after it is
  its expected standard output, matched the same way.
* A block preceded by ``<!-- from: PATH -->`` is not run: its text must appear verbatim in
  PATH (so the YAML, CSV and DAG shown are the real files). ``<!-- test: slow -->`` blocks
  (Airflow and MLflow end to end) run only in the slow test.

The default run takes about 35 s on the 2-core development machine; the slow tests (the
makespan page's full-size scenario, the guide with Airflow and MLflow) about 70 s more.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("your-workflow.md", "python-api.md", "makespan-and-response.md", "calibration.md")
EXAMPLE_DAG = ROOT / "docs" / "examples" / "dags" / "ct_reading_allocation.py"
# The core package itself is light (lazy exports); its model, evaluator and search load NumPy.
HEAVY = ("numpy", "numba", "pymoo", "pandas", "mlflow", "apportion.core.model", "apportion.core.api")
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*(from|test):\s*(.*?)\s*-->\s*$")
_EXIT = re.compile(r"#\s*exits with status (\d+)\s*$")


@dataclass
class Block:
    lang: str
    text: str
    line: int
    markers: dict[str, str] = field(default_factory=dict)
    output: str | None = None  # the ```text block right after a python block


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, with their markers and expected outputs."""
    lines = doc.read_text().splitlines()
    found: list[Block] = []
    i, previous_end = 0, -1
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        i += 1
        body = []
        while not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        markers = {}
        j = start - 1
        while j >= 0 and _MARKER.match(lines[j]):
            key, value = _MARKER.match(lines[j]).groups()
            markers[key] = value
            j -= 1
        block = Block(fence.group(1), "\n".join(body) + "\n", start + 1, markers)
        previous = found[-1] if found else None
        between = lines[previous_end + 1:start]
        if (block.lang == "text" and previous is not None and previous.lang == "python"
                and not any(s.strip() for s in between)):
            previous.output = block.text
        else:
            found.append(block)
        previous_end = i
        i += 1
    return found


def matches(expected: str, actual: str) -> bool:
    """``actual`` fits ``expected``, where ``...`` is a wildcard (see the module docstring)."""
    pattern = ""
    for line in expected.strip("\n").splitlines():
        if line.strip() == "...":
            pattern += r"(?:.*\n)*?"
        else:
            pattern += re.escape(line.rstrip()).replace(re.escape("..."), ".*?") + r"\n"
    text = "".join(line.rstrip() + "\n" for line in actual.strip("\n").splitlines())
    return re.fullmatch(pattern, text) is not None


def console_commands(text: str) -> list[tuple[str, str]]:
    """``[(command, expected output)]`` of a console block; ``\\`` continues a command."""
    commands: list[list] = []
    continued = False
    for line in text.splitlines():
        if continued:
            commands[-1][0] += "\n" + line
        elif line.startswith("$ "):
            commands.append([line[2:], ""])
        elif commands:
            commands[-1][1] += line + "\n"
        else:
            raise AssertionError(f"console block starts with output, not a '$ ' command: {line!r}")
        continued = line.endswith("\\")
    return [(c, out) for c, out in commands]


def scratch(tmp_path: Path) -> Path:
    """A folder laid out like the repository root for the examples: docs/examples, core/examples."""
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    shutil.copytree(ROOT / "core" / "examples", tmp_path / "core" / "examples")
    return tmp_path


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_console(block: Block, cwd: Path, where: str, timeout: float) -> None:
    commands = console_commands(block.text)
    script = ["exec 2>&1"]
    for command, _ in commands:
        script += [command, 'echo "@@EXIT $?@@"']
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=shell_env(), capture_output=True,
                          text=True, timeout=timeout)
    parts = re.split(r"@@EXIT (\d+)@@\n", done.stdout)
    outputs, statuses = parts[0:-1:2], [int(s) for s in parts[1::2]]
    assert len(statuses) == len(commands), f"{where}: the block stopped early:\n{done.stdout}{done.stderr}"
    for (command, expected), output, status in zip(commands, outputs, statuses, strict=True):
        wanted = _EXIT.search(command.splitlines()[0])
        assert status == (int(wanted.group(1)) if wanted else 0), \
            f"{where}: `{command}` exited {status}:\n{output}"
        if expected.strip():
            assert matches(expected, output), f"{where}: `{command}` printed\n{output}\nnot\n{expected}"


def run_python(block: Block, namespace: dict, where: str) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.text, where, "exec"), namespace)
    if block.output is not None:
        assert matches(block.output, out.getvalue()), f"{where} printed\n{out.getvalue()}\nnot\n{block.output}"


def run_doc(name: str, tmp_path: Path, monkeypatch, *, slow: bool = False) -> int:
    """Run every block of docs/NAME in order from a scratch folder; return how many ran."""
    doc = ROOT / "docs" / name
    cwd = scratch(tmp_path)
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    namespace: dict = {"__name__": "__doc__"}
    ran = 0
    for block in blocks(doc):
        where = f"docs/{name}:{block.line}"
        if "from" in block.markers or block.lang not in ("console", "python"):
            continue
        if block.markers.get("test") == "slow" and not slow:
            continue
        if block.lang == "console":
            run_console(block, cwd, where, timeout=900 if slow else 300)
        else:
            run_python(block, namespace, where)
        ran += 1
    return ran


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DOCS)
def test_files_shown_in_the_docs_are_the_real_files(name):
    shown = [b for b in blocks(ROOT / "docs" / name) if "from" in b.markers]
    for block in shown:
        path = ROOT / block.markers["from"]
        assert path.is_file(), f"docs/{name}:{block.line}: no file {path}"
        assert block.text.strip() in path.read_text(), \
            f"docs/{name}:{block.line}: the block is not a verbatim part of {block.markers['from']}"
    if name == "your-workflow.md":
        assert {b.markers["from"] for b in shown} >= {
            "docs/examples/hospital/workload.yaml", "docs/examples/hospital/cluster.yaml",
            "docs/examples/traffic/tasks.csv", "docs/examples/dags/ct_reading_allocation.py",
        }


def test_the_harness_matches_and_refuses():
    assert matches("a ... c\n...\nlast\n", "a b c\nx\ny\nlast\n")
    assert not matches("a ... c\nlast\n", "a b c\nx\nlast\n")
    assert not matches("makespan 75.83 s\n", "makespan 75.84 s\n")
    assert console_commands("$ a \\\n  b\nout\n$ c\n") == [("a \\\n  b", "out\n"), ("c", "")]


def test_your_workflow_guide_runs(tmp_path, monkeypatch):
    assert shutil.which("apportion", path=str(Path(sys.executable).parent)), "the venv has no apportion script"
    assert run_doc("your-workflow.md", tmp_path, monkeypatch) >= 8


def test_python_api_page_runs(tmp_path, monkeypatch):
    from apportion.core.algorithms.registry import BUILTIN, REGISTERED

    before = set(REGISTERED)
    try:
        assert run_doc("python-api.md", tmp_path, monkeypatch) >= 10
        assert "fastest-node" in REGISTERED
    finally:  # the page registers an allocator of its own; other tests expect the built-in list
        for name in set(REGISTERED) - before - set(BUILTIN):
            del REGISTERED[name]


@pytest.mark.slow
def test_makespan_page_figures_are_what_the_commands_give(tmp_path, monkeypatch):
    """The medical scenario at its full size (700 tasks), searched four times and planned by HEFT
    once: about 11 s."""
    assert run_doc("makespan-and-response.md", tmp_path, monkeypatch) >= 3


def test_example_dag_loads_in_a_dagbag(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(EXAMPLE_DAG, folder)
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    dag = bag.dags["ct_reading_allocation"]
    assert sorted(dag.task_ids) == ["allocate", "dispatch", "evaluate_plan"]
    tasks = {t.task_id: t for t in dag.tasks}
    assert tasks["allocate"].upstream_task_ids == set()
    assert tasks["evaluate_plan"].upstream_task_ids == {"allocate"}
    assert tasks["dispatch"].upstream_task_ids == {"allocate", "evaluate_plan"}
    allocate = tasks["allocate"]
    assert type(allocate).__name__ == "AllocationOperator"
    assert allocate.objectives == ["mean_response", "utilization", "imbalance"]
    assert allocate.experiment_name == "ct-reading"
    params = dag.params.dump()
    assert params["select"] == "compromise"
    # The Params point at the specs in the folder beside the DAG's folder.
    assert params["workload"] == str(folder.parent / "hospital" / "workload.yaml")


def test_example_dag_parses_without_heavy_imports():
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(EXAMPLE_DAG)], capture_output=True, text=True,
                          env=shell_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"heavy modules imported while parsing: {done.stdout}"


def test_readme_lists_the_docs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Documentation", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(([^)#]+)\)", section)
    assert {f"docs/{name}" for name in DOCS} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), f"README's Documentation section links to a missing {link}"


@pytest.mark.slow
def test_your_workflow_guide_runs_with_airflow_and_mlflow(tmp_path, monkeypatch):
    """The whole guide, with the Airflow part: ``airflow dags test`` on the example DAG and the
    MLflow look-up after it (about a minute)."""
    ran = run_doc("your-workflow.md", tmp_path, monkeypatch, slow=True)
    fast = sum(1 for b in blocks(ROOT / "docs" / "your-workflow.md")
               if b.lang in ("console", "python") and "from" not in b.markers and b.markers.get("test") != "slow")
    assert ran > fast

"""WfCommons WfFormat instances (real scientific workflows) as Apportion workloads.

Mapping (docs/spec-formats.md): a task's work is its recorded runtime times a reference speed
(``reference_speed`` GFLOP/s, default 10, the speed of the machine the runtime was measured on);
memory comes from ``memoryInBytes``; an edge carries the files the parent writes and the child
reads (MB, 0 if none); the kind is the task's category, else its name without the numeric
suffix; the whole workflow is one request released at time 0. Sizes use decimal units
(1 MB = 1e6 bytes, 1 GB = 1e9 bytes).

Layouts: WfFormat 1.5/1.6 (``workflow.specification`` + ``workflow.execution``, what wfcommons
1.6 writes) and the older 1.4 layout (``workflow.tasks`` with per-task ``files`` marked
``link: input/output``; 1.3's ``runtime`` and ``size`` keys are read too).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping

import numpy as np

from apportion.core.errors import SpecError
from apportion.core.model import Edge, Request, Task, Workload
from apportion.core.spec import check_workload

DEFAULT_REFERENCE_SPEED = 10.0  # GFLOP/s

# Recipe names as WfCommons lists them -> recipe classes in wfcommons.wfchef.recipes.
RECIPES = {
    "1000genome": "GenomeRecipe", "blast": "BlastRecipe", "bwa": "BwaRecipe",
    "cycles": "CyclesRecipe", "epigenomics": "EpigenomicsRecipe", "montage": "MontageRecipe",
    "rnaseq": "RnaseqRecipe", "seismology": "SeismologyRecipe", "soykb": "SoykbRecipe",
    "srasearch": "SrasearchRecipe",
}

_ID_SUFFIX = re.compile(r"_(?:ID)?\d+$")


def is_wfformat(doc: object) -> bool:
    return isinstance(doc, Mapping) and "workflow" in doc


def _mapping(value: object, path: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _list(obj: Mapping, key: str, path: str, *, required: bool = True) -> list:
    if key not in obj and not required:
        return []
    value = obj.get(key)
    if not isinstance(value, list):
        raise SpecError(f"{path}.{key}", "missing (required)" if key not in obj
                        else f"must be a list, got {type(value).__name__}")
    return value


def _short(value: object, limit: int = 40) -> str:
    """A value as an error message quotes it: at most ``limit`` characters; an integer too long
    to print (Python refuses beyond 4,300 digits) by its size."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _name(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"must be a non-empty string, got {_short(value)}")
    return value


def _amount(obj: Mapping, keys: tuple[str, ...], path: str, *, default: float | None = None) -> float:
    """The first of ``keys`` present in ``obj``, as a finite number >= 0 (float64)."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < math.inf or (isinstance(value, int) and value.bit_length() > 1024):
                raise SpecError(f"{path}.{key}", f"must be a finite number >= 0, got {_short(value)}")
            return float(value)
    if default is None:
        raise SpecError(f"{path}.{keys[0]}", "missing (required)")
    return default


def _kind(task: Mapping, name: str) -> str:
    category = task.get("category")
    if isinstance(category, str) and category:
        return category
    return _ID_SUFFIX.sub("", name) or name


class _Task:
    """One WfFormat task, whatever the layout: what the mapping needs and nothing else."""

    def __init__(self, id: str, kind: str, runtime: float, memory: float, path: str):
        self.id, self.kind, self.runtime, self.memory, self.path = id, kind, runtime, memory, path
        self.runtime_field = f"{path}.runtimeInSeconds"  # where the runtime was read, for errors
        self.parents: list[str] = []
        self.children: list[str] = []
        self.inputs: dict[str, float] = {}  # file id -> bytes
        self.outputs: dict[str, float] = {}


def _tasks_15(workflow: Mapping) -> list[_Task]:
    """WfFormat 1.5/1.6: tasks and files under ``specification``, runtimes under ``execution``."""
    spec = _mapping(workflow["specification"], "workflow.specification")
    if "execution" not in workflow:
        raise SpecError("workflow.execution",
                        "missing: the instance has no task runtimes, so the work of its tasks is unknown")
    execution = _mapping(workflow["execution"], "workflow.execution")
    sizes: dict[str, float] = {}
    for i, f in enumerate(_list(spec, "files", "workflow.specification", required=False)):
        path = f"workflow.specification.files[{i}]"
        f = _mapping(f, path)
        sizes[_name(f.get("id"), f"{path}.id")] = _amount(f, ("sizeInBytes",), path)
    runs: dict[str, Mapping] = {}
    for i, t in enumerate(_list(execution, "tasks", "workflow.execution")):
        t = _mapping(t, f"workflow.execution.tasks[{i}]")
        runs[_name(t.get("id"), f"workflow.execution.tasks[{i}].id")] = t
    out = []
    for i, t in enumerate(_list(spec, "tasks", "workflow.specification")):
        t = _mapping(t, f"workflow.specification.tasks[{i}]")
        tid = _name(t.get("id"), f"workflow.specification.tasks[{i}].id")
        path = f"workflow.specification.tasks[{_short(tid)}]"
        run_path = f"workflow.execution.tasks[{_short(tid)}]"
        if tid not in runs:
            raise SpecError(run_path, "missing: every task needs its runtimeInSeconds")
        run = runs[tid]
        name = t.get("name") if isinstance(t.get("name"), str) and t.get("name") else tid
        task = _Task(tid, _kind({**t, **run}, name), _amount(run, ("runtimeInSeconds",), run_path),
                     _amount(run, ("memoryInBytes",), run_path, default=0.0), path)
        task.runtime_field = f"{run_path}.runtimeInSeconds"
        task.parents = [_name(p, f"{path}.parents") for p in _list(t, "parents", path, required=False)]
        task.children = [_name(c, f"{path}.children") for c in _list(t, "children", path, required=False)]
        for key, files in (("inputFiles", task.inputs), ("outputFiles", task.outputs)):
            for fid in _list(t, key, path, required=False):
                if _name(fid, f"{path}.{key}") not in sizes:
                    raise SpecError(f"{path}.{key}", f"unknown file {_short(fid)} (not in workflow.specification.files)")
                files[fid] = sizes[fid]
        out.append(task)
    return out


def _tasks_14(workflow: Mapping) -> list[_Task]:
    """WfFormat 1.4 (and 1.3): one list of tasks, each with its runtime and its files.

    Tasks refer to each other by name (or id), so a task's name is its id here.
    """
    out = []
    aliases: dict[str, str] = {}
    for i, t in enumerate(_list(workflow, "tasks", "workflow")):
        t = _mapping(t, f"workflow.tasks[{i}]")
        name = _name(t.get("name"), f"workflow.tasks[{i}].name")
        path = f"workflow.tasks[{_short(name)}]"
        task = _Task(name, _kind(t, name), _amount(t, ("runtimeInSeconds", "runtime"), path),
                     _amount(t, ("memoryInBytes",), path, default=0.0), path)
        task.runtime_field = f"{path}.{'runtimeInSeconds' if 'runtimeInSeconds' in t else 'runtime'}"
        aliases.setdefault(name, name)
        if isinstance(t.get("id"), str):
            aliases.setdefault(t["id"], name)
        task.parents = [_name(p, f"{path}.parents") for p in _list(t, "parents", path, required=False)]
        task.children = [_name(c, f"{path}.children") for c in _list(t, "children", path, required=False)]
        for k, f in enumerate(_list(t, "files", path, required=False)):
            fpath = f"{path}.files[{k}]"
            f = _mapping(f, fpath)
            fid = _name(f.get("name"), f"{fpath}.name")
            if isinstance(f.get("path"), str):
                fid = f["path"] + fid
            link = f.get("link")
            if link not in ("input", "output"):
                raise SpecError(f"{fpath}.link", f"must be 'input' or 'output', got {_short(link)}")
            (task.inputs if link == "input" else task.outputs)[fid] = _amount(f, ("sizeInBytes", "size"), fpath)
        out.append(task)
    for task in out:
        for key in ("parents", "children"):
            refs = getattr(task, key)
            for ref in refs:
                if ref not in aliases:
                    raise SpecError(f"{task.path}.{key}", f"unknown task {_short(ref)}")
            setattr(task, key, [aliases[r] for r in refs])
    return out


def workload_from_wfformat(doc: object, *, reference_speed: float = DEFAULT_REFERENCE_SPEED) -> Workload:
    """A checked ``Workload`` from a parsed WfFormat instance (see the module docstring)."""
    if isinstance(reference_speed, bool) or not isinstance(reference_speed, (int, float)) \
            or not 0 < reference_speed < math.inf:
        raise SpecError("reference_speed", f"must be a finite number > 0, got {_short(reference_speed)}")
    doc = _mapping(doc, "(top level)")
    workflow = _mapping(doc.get("workflow"), "workflow")
    if "specification" in workflow:
        tasks = _tasks_15(workflow)
    elif "tasks" in workflow:
        tasks = _tasks_14(workflow)
    else:
        raise SpecError("workflow", "has neither 'specification' (WfFormat 1.5+) nor 'tasks' (WfFormat 1.4)")
    name = doc["name"] if isinstance(doc.get("name"), str) and doc["name"] else "wfformat"
    by_id = {t.id: t for t in tasks}
    # Dependencies are listed on both ends; either end is enough.
    links: dict[tuple[str, str], None] = {}
    for t in tasks:
        for key, pairs in (("parents", ((p, t.id) for p in t.parents)),
                           ("children", ((t.id, c) for c in t.children))):
            for parent, child in pairs:
                unknown = parent if parent not in by_id else child
                if unknown not in by_id:
                    raise SpecError(f"{t.path}.{key}", f"unknown task {_short(unknown)}")
                links[(parent, child)] = None
    edges = []
    for parent, child in links:
        out, inp = by_id[parent].outputs, by_id[child].inputs
        shared = sum(out[f] for f in out.keys() & inp.keys())
        if not math.isfinite(shared):
            raise SpecError(f"{by_id[parent].path}.outputFiles", f"the files it passes to {_short(child)} add up "
                            "beyond float range (above 1.8e308 bytes)")
        edges.append(Edge(parent, child, shared / 1e6))
    for t in tasks:
        if not math.isfinite(t.runtime * reference_speed):
            raise SpecError(t.runtime_field, f"times reference_speed {reference_speed:g} overflows "
                            f"float range (runtime {t.runtime:g} s)")
    workload = Workload(
        tasks=tuple(Task(id=t.id, work=t.runtime * reference_speed, kind=t.kind, memory=t.memory / 1e9,
                         request=name) for t in tasks),
        edges=tuple(edges),
        requests=(Request(id=name),),
        name=name,
    )
    check_workload(workload)
    return workload


def wfcommons_instance(recipe: str, num_tasks: int, seed: int) -> dict:
    """A WfFormat instance built by a WfCommons recipe; the same ``seed`` gives the same workflow.

    WfCommons draws from the global ``random`` and NumPy generators without taking a seed, so
    both are seeded for the call and restored afterwards: the caller's streams are untouched
    (not thread-safe). File ids are random UUIDs; tasks, edges, runtimes and sizes are not.
    """
    if not isinstance(recipe, str) or recipe.lower() not in RECIPES:
        raise SpecError("recipe", f"unknown WfCommons recipe {_short(recipe)}; choose from {sorted(RECIPES)}")
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
        raise SpecError("num_tasks", f"must be a positive integer, got {_short(num_tasks)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError("seed", f"must be a non-negative integer, got {_short(seed)}")
    from wfcommons.wfchef import recipes

    recipe_class = getattr(recipes, RECIPES[recipe.lower()])
    saved_random, saved_numpy = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(np.random.SeedSequence(seed).generate_state(4))
        try:
            workflow = recipe_class.from_num_tasks(num_tasks).build_workflow(f"{recipe.lower()}-{num_tasks}-s{seed}")
        except ValueError as e:  # fewer tasks than the recipe's smallest base graph
            raise SpecError("num_tasks", f"{recipe}: {e}") from None
        workflow.generate_json()
        return workflow.workflow_json
    finally:
        random.setstate(saved_random)
        np.random.set_state(saved_numpy)


def generate_wfcommons(recipe: str, num_tasks: int, seed: int, *,
                       reference_speed: float = DEFAULT_REFERENCE_SPEED) -> Workload:
    """A workload from a WfCommons recipe (montage, epigenomics, 1000genome, ...), about
    ``num_tasks`` tasks (recipes may give a few fewer); deterministic for a seed."""
    return workload_from_wfformat(wfcommons_instance(recipe, num_tasks, seed), reference_speed=reference_speed)

"""WfCommons WfFormat instances: real recipe-generated workflows load as workloads."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from apportion.core.errors import SpecError
from apportion.core.io import describe, load_workload
from apportion.core.model import Instance
from apportion.core.synthetic import random_cluster
from apportion.core.wfformat import generate_wfcommons, workload_from_wfformat

ROOT = Path(__file__).resolve().parents[2]
INSTANCES = sorted((ROOT / "tests" / "data" / "wfformat").glob("*.json"))
EXAMPLE = ROOT / "core" / "examples" / "wfformat-small.json"


def test_there_are_recipe_instances_of_several_workflows():
    recipes = {p.name.split("-")[0] for p in INSTANCES}
    assert {"montage", "epigenomics", "1000genome", "cycles", "soykb"} <= recipes
    assert all(p.stat().st_size < 200_000 for p in INSTANCES)


@pytest.mark.parametrize("path", INSTANCES, ids=lambda p: p.stem)
def test_recipe_instance_matches_its_file(path):
    doc = json.loads(path.read_text())
    spec, execution = doc["workflow"]["specification"], doc["workflow"]["execution"]
    workload = load_workload(path)

    assert [t.id for t in workload.tasks] == [t["id"] for t in spec["tasks"]]
    links = {(p, t["id"]) for t in spec["tasks"] for p in t["parents"]}
    assert links == {(c_parent, c) for t in spec["tasks"] for c_parent, c in ((t["id"], c) for c in t["children"])}
    assert {(e.source, e.target) for e in workload.edges} == links
    assert len(workload.edges) == len(links)

    runtime = {t["id"]: t["runtimeInSeconds"] for t in execution["tasks"]}
    assert all(t.work == pytest.approx(runtime[t.id] * 10.0) for t in workload.tasks)
    assert all(t.kind == s["name"] for t, s in zip(workload.tasks, spec["tasks"], strict=True))
    size = {f["id"]: f["sizeInBytes"] for f in spec["files"]}
    outputs = {t["id"]: set(t["outputFiles"]) for t in spec["tasks"]}
    inputs = {t["id"]: set(t["inputFiles"]) for t in spec["tasks"]}
    for e in workload.edges:
        assert e.data == pytest.approx(sum(size[f] for f in outputs[e.source] & inputs[e.target]) / 1e6)
    assert sum(e.data > 0 for e in workload.edges) > len(workload.edges) / 2  # real files flow on most edges
    assert [r.id for r in workload.requests] == [doc["name"]]

    instance = Instance.build(workload, random_cluster(6, seed=1))
    assert (instance.n_tasks, instance.n_edges) == (len(spec["tasks"]), len(links))


def test_example_maps_runtime_memory_files_and_category():
    workload = load_workload(EXAMPLE, reference_speed=4.0)
    task = {t.id: t for t in workload.tasks}
    assert task["mProject_00000002"].work == 32.5 * 4.0
    assert task["mProject_00000002"].memory == 0.5  # 500 000 000 bytes
    assert task["mProject_00000002"].kind == "mProject"  # name, as the id suffix is not part of it
    assert task["mAdd_00000004"].kind == "coadd"  # the category wins
    data = {(e.source, e.target): e.data for e in workload.edges}
    assert data == {("mProject_00000001", "mDiffFit_00000003"): 8.0,
                    ("mProject_00000002", "mDiffFit_00000003"): 8.5,
                    ("mProject_00000002", "mAdd_00000004"): 8.5,
                    ("mDiffFit_00000003", "mAdd_00000004"): 0.002}
    assert describe(EXAMPLE) == "workload 'montage-tiny' (WfFormat 1.6): 4 tasks, 4 edges, 1 request"


OLD_LAYOUT = {
    "name": "blast-1.4", "schemaVersion": "1.4",
    "workflow": {"makespanInSeconds": 10, "executedAt": "2021-01-01T00:00:00Z", "tasks": [
        {"name": "split_fasta_ID0000001", "id": "ID0000001", "category": "split_fasta", "runtimeInSeconds": 2.0,
         "memoryInBytes": 2_000_000_000, "parents": [], "children": ["blastall_ID0000002"],
         "files": [{"link": "input", "name": "in.fa", "sizeInBytes": 5_000_000},
                   {"link": "output", "name": "part1.fa", "sizeInBytes": 1_000_000},
                   {"link": "output", "name": "part2.fa", "sizeInBytes": 3_000_000}]},
        {"name": "blastall_ID0000002", "id": "ID0000002", "runtime": 7.5, "parents": ["ID0000001"],
         "files": [{"link": "input", "name": "part1.fa", "sizeInBytes": 1_000_000},
                   {"link": "input", "name": "part2.fa", "size": 3_000_000},
                   {"link": "output", "name": "hits.out", "sizeInBytes": 10}]},
        {"name": "cat_ID0000003", "runtimeInSeconds": 1.0, "parents": ["blastall_ID0000002"], "files": []},
    ]},
}


def test_wfformat_1_4_layout():
    workload = workload_from_wfformat(OLD_LAYOUT)
    assert [(t.id, t.kind, t.work, t.memory) for t in workload.tasks] == [
        ("split_fasta_ID0000001", "split_fasta", 20.0, 2.0),
        ("blastall_ID0000002", "blastall", 75.0, 0.0),  # 1.3's "runtime", no category: the name's prefix
        ("cat_ID0000003", "cat", 10.0, 0.0),
    ]
    assert [(e.source, e.target, e.data) for e in workload.edges] == [
        ("split_fasta_ID0000001", "blastall_ID0000002", 4.0),  # referenced by id and by name alike
        ("blastall_ID0000002", "cat_ID0000003", 0.0),  # no file shared
    ]


@pytest.mark.parametrize("mutate, field, reason", [
    (lambda d: d["workflow"].pop("execution"), "workflow.execution", "no task runtimes"),
    (lambda d: d["workflow"]["execution"]["tasks"].pop(), "workflow.execution.tasks['mAdd_00000004']", "runtime"),
    (lambda d: d["workflow"]["execution"]["tasks"][0].update(runtimeInSeconds=-1),
     "workflow.execution.tasks['mProject_00000001'].runtimeInSeconds", "finite number >= 0"),
    (lambda d: d["workflow"]["specification"]["tasks"][2]["parents"].append("ghost"),
     "workflow.specification.tasks['mDiffFit_00000003'].parents", "unknown task 'ghost'"),
    (lambda d: d["workflow"]["specification"]["tasks"][0]["inputFiles"].append("ghost.fits"),
     "workflow.specification.tasks['mProject_00000001'].inputFiles", "unknown file 'ghost.fits'"),
    (lambda d: d["workflow"]["specification"]["files"][0].update(sizeInBytes="big"),
     "workflow.specification.files[0].sizeInBytes", "finite number"),
    (lambda d: d["workflow"]["specification"]["tasks"][0]["parents"].append("mAdd_00000004"), "edges", "cycle"),
    (lambda d: d["workflow"].pop("specification"), "workflow", "neither 'specification'"),
])
def test_bad_wfformat_names_the_field(mutate, field, reason):
    doc = json.loads(EXAMPLE.read_text())
    mutate(doc)
    with pytest.raises(SpecError) as err:
        load_workload(doc)
    assert err.value.field == field
    assert reason in err.value.reason


def test_reference_speed_must_be_positive():
    with pytest.raises(SpecError) as err:
        load_workload(EXAMPLE, reference_speed=0)
    assert err.value.field == "reference_speed"


def test_generate_wfcommons_is_deterministic_and_leaves_global_random_state_alone():
    random.seed(123)
    np.random.seed(123)
    expected_random, expected_numpy = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)

    first = generate_wfcommons("montage", 70, seed=5)
    again = generate_wfcommons("montage", 70, seed=5)
    other = generate_wfcommons("montage", 70, seed=6)

    assert (random.random(), np.random.random()) == (expected_random, expected_numpy)
    assert first == again
    assert first != other
    assert 60 <= len(first.tasks) <= 70
    assert {t.kind for t in first.tasks} >= {"mProject", "mDiffFit", "mAdd"}
    Instance.build(first, random_cluster(4, seed=0))


def test_generate_wfcommons_rejects_unknown_recipes_and_too_few_tasks():
    with pytest.raises(SpecError) as err:
        generate_wfcommons("tetris", 100, seed=0)
    assert err.value.field == "recipe"
    with pytest.raises(SpecError) as err:
        generate_wfcommons("soykb", 10, seed=0)
    assert err.value.field == "num_tasks"

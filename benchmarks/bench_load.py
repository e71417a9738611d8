"""Loading at scale: read, schema check and build of a large spec, the whole ``optimize`` against
its search, and peak memory at the spec's size limit.

Reference case (issue 10, part 4): ``apportion scenario medical_diagnosis --size 3000 --nodes
256`` (21,000 tasks, 21,000 edges, 256 nodes), written by ``core.io.dump`` as ``.yaml`` and as
``.json``. Targets: load + check + build <= 1 s for either; the whole ``apportion optimize``
command <= 1.2 x its search seconds; 100,000 tasks on 1,000 nodes (size 14285: 99,995 tasks)
loaded, built and optimised (population 20 x 5 generations) within 2 GB peak RSS (the
optimisation runs with its address space capped at 4.5 GB: past that it reports where it ran out).

Per format, the median wall seconds over a few runs of each phase: read (``read_document``),
schema (``check_document``), model (``workload_from_dict`` + ``cluster_from_dict``, which check
the schema again and run the model's checks on each alone), build (``Instance.build``) and
total (``load_instance``, what ``optimize`` runs). Reference, in the same process on the same
documents: libyaml reading the block-style YAML ``yaml.safe_dump`` writes (how ``dump`` wrote
YAML before) and jsonschema validating (what decided pass/fail before); the ratios are
reference / ours. The optimize run and the memory run are subprocesses (the memory figure is
the child's ``ru_maxrss``). Prints a table and one JSON line.

    python benchmarks/bench_load.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from apportion.core import defaults
from apportion.core.io import dump, load_instance, read_document
from apportion.core.model import Instance
from apportion.core.scenarios import build as build_scenario
from apportion.core.spec import (
    _validator,
    check_document,
    cluster_from_dict,
    cluster_to_dict,
    workload_from_dict,
    workload_to_dict,
)

TARGET_LOAD_SECONDS = 1.0
TARGET_OPTIMIZE_RATIO = 1.2
TARGET_PEAK_MB = 2048

# Loads and builds one spec in a fresh process, then optimises it with the address space capped
# (OPTIMIZE_CAP_MB: the machine is shared); prints the peak RSS after each step in MB (Linux: KB),
# or where the optimisation ran out of the cap.
OPTIMIZE_CAP_MB = 4500
MEMORY_CHILD = """
import json, resource, sys, tempfile, traceback
from apportion.core.io import load_instance
peak = lambda: round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
instance = load_instance(sys.argv[1], sys.argv[2])
out = {"tasks": instance.n_tasks, "nodes": instance.n_nodes, "load_build_peak_rss_mb": peak()}
from apportion.core.api import Settings, optimize, write_outputs
cap = int(sys.argv[3]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
try:
    write_outputs(optimize(instance, Settings(population=20, generations=5, seed=0)), tempfile.mkdtemp())
    out["optimize_peak_rss_mb"] = peak()
except MemoryError:
    frame = traceback.extract_tb(sys.exc_info()[2])[-1]
    out["optimize_peak_rss_mb"] = None
    out["optimize_out_of_memory_at"] = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
print(json.dumps(out))
"""


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def write_specs(folder: Path, size: int, nodes: int) -> tuple[int, int]:
    workload, cluster = build_scenario("medical_diagnosis", size=size, nodes=nodes, seed=0)
    for suffix in (".yaml", ".json"):
        dump(workload_to_dict(workload), folder / f"workload{suffix}")
        dump(cluster_to_dict(cluster), folder / f"cluster{suffix}")
    return len(workload.tasks), len(cluster.nodes)


def phases(folder: Path, suffix: str, repeats: int) -> dict:
    paths = (folder / f"workload{suffix}", folder / f"cluster{suffix}")
    docs = [read_document(p) for p in paths]
    workload, cluster = workload_from_dict(docs[0]), cluster_from_dict(docs[1])
    out = {
        "read": median_seconds(lambda: [read_document(p) for p in paths], repeats),
        "schema": median_seconds(lambda: (check_document(docs[0], "workload"), check_document(docs[1], "cluster")),
                                 repeats),
        "model": median_seconds(lambda: (workload_from_dict(docs[0]), cluster_from_dict(docs[1])), repeats),
        "build": median_seconds(lambda: Instance.build(workload, cluster), repeats),
        "total": median_seconds(lambda: load_instance(*paths), repeats),
    }
    return {key: round(value, 4) for key, value in out.items()}


def reference(folder: Path, repeats: int) -> dict:
    """The old read (libyaml, block style) and the old schema check (jsonschema) of the same docs."""
    import yaml

    docs = [read_document(folder / f"{what}.json") for what in ("workload", "cluster")]
    texts = [yaml.safe_dump(doc, sort_keys=False) for doc in docs]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    read = median_seconds(lambda: [yaml.load(text, Loader=loader) for text in texts], max(1, repeats // 2))
    schema = median_seconds(lambda: [list(_validator(what).iter_errors(doc))
                                     for what, doc in zip(("workload", "cluster"), docs, strict=True)],
                            max(1, repeats // 2))
    return {"read_yaml_block": round(read, 4), "schema_jsonschema": round(schema, 4)}


def optimize_run(folder: Path, population: int, generations: int) -> dict:
    """The whole ``apportion optimize`` command (interpreter start included) against its search."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "apportion.core.cli", "optimize", str(folder / "workload.yaml"),
                               str(folder / "cluster.yaml"), "--population", str(population), "--generations",
                               str(generations), "--json", "--out", out], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
    search = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {"population": population, "generations": generations, "wall_seconds": round(wall, 3),
            "search_seconds": round(search, 3), "ratio": round(wall / search, 3)}


def memory_run(folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(folder / "workload.yaml"),
                           str(folder / "cluster.yaml"), str(OPTIMIZE_CAP_MB)], capture_output=True, text=True,
                          check=True)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "optimize_cap_mb": OPTIMIZE_CAP_MB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and budget (a smoke run)")
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    size, nodes, big_size, big_nodes, repeats = (40, 16, 300, 64, 2) if args.quick else (3000, 256, 14285, 1000, 5)
    population, generations = (10, 3) if args.quick else (defaults.POPULATION, defaults.GENERATIONS)

    with tempfile.TemporaryDirectory() as tmp:
        folder, big = Path(tmp) / "reference", Path(tmp) / "big"
        folder.mkdir()
        big.mkdir()
        tasks, n_nodes = write_specs(folder, size, nodes)
        by_format = {suffix.lstrip("."): phases(folder, suffix, repeats) for suffix in (".yaml", ".json")}
        ref = reference(folder, repeats)
        opt = optimize_run(folder, population, generations)
        write_specs(big, big_size, big_nodes)
        memory = memory_run(big)

    print(f"medical_diagnosis: {tasks:,} tasks, {n_nodes} nodes; median of {repeats} runs (s)")
    print(f"{'format':<6} {'read':>8} {'schema':>8} {'model':>8} {'build':>8} {'total':>8}")
    for fmt, row in by_format.items():
        print(f"{fmt:<6} " + " ".join(f"{row[k]:>8.3f}" for k in ("read", "schema", "model", "build", "total")))
    read_ratio = ref["read_yaml_block"] / by_format["yaml"]["read"]
    schema_ratio = ref["schema_jsonschema"] / by_format["yaml"]["schema"]
    print(f"reference: libyaml block read {ref['read_yaml_block']:.3f} s ({read_ratio:.1f}x ours), "
          f"jsonschema {ref['schema_jsonschema']:.3f} s ({schema_ratio:.1f}x ours)")
    print(f"optimize {population}x{generations}: command {opt['wall_seconds']:.2f} s, search {opt['search_seconds']:.2f} s, "
          f"ratio {opt['ratio']:.2f} (target <= {TARGET_OPTIMIZE_RATIO})")
    optimized = (f"{memory['optimize_peak_rss_mb']:.0f} MB" if memory["optimize_peak_rss_mb"] is not None else
                 f"over the {OPTIMIZE_CAP_MB} MB cap at {memory['optimize_out_of_memory_at']}")
    print(f"memory: {memory['tasks']:,} tasks x {memory['nodes']} nodes, peak RSS after load + build "
          f"{memory['load_build_peak_rss_mb']:.0f} MB, after optimize {optimized} (target <= {TARGET_PEAK_MB})")
    print(json.dumps({
        "benchmark": "load", "tasks": tasks, "nodes": n_nodes, "phases": by_format, "reference": ref,
        "read_speedup_vs_libyaml": round(read_ratio, 2), "schema_speedup_vs_jsonschema": round(schema_ratio, 2),
        "optimize": opt, "memory": memory, "load_average": round(os.getloadavg()[0], 2),
        "targets": {"load_seconds": TARGET_LOAD_SECONDS, "optimize_ratio": TARGET_OPTIMIZE_RATIO,
                    "peak_rss_mb": TARGET_PEAK_MB},
    }))


if __name__ == "__main__":
    main()

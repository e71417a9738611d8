"""Node slots: what they cost the evaluator, as ratios against references run in the same process.

Three rates per instance (1,000 tasks / 8 nodes and 5,000 tasks / 32 nodes, 3 edges a task):

* **one slot, now / base**: the evaluator of this checkout with every node at one slot (the
  path it compiles when no node has more) against the evaluator of a base revision (``--base``,
  its ``core/evaluate.py`` read with ``git show`` and compiled here). Target ~1.0: one slot
  everywhere costs nothing.
* **slot path / one-slot path**: the slotted decode forced on the same one-slot instance.
* **2 slots**: every node with 2 slots (another schedule, for scale).

Timings are CPU time of this process, best of rounds that alternate the two sides of each
ratio. Prints a table and one JSON line.

    python benchmarks/bench_slots.py [--quick] [--base REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apportion.core.evaluate import Evaluator  # noqa: E402
from apportion.core.model import Instance  # noqa: E402
from apportion.core.synthetic import random_cluster, random_workload  # noqa: E402
from benchmarks.bench_evaluator import random_plans  # noqa: E402


def base_evaluator_class(rev: str, folder: Path):
    """``Evaluator`` of ``core/evaluate.py`` at revision ``rev``, as a module of its own."""
    source = subprocess.run(["git", "show", f"{rev}:core/evaluate.py"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    path = folder / "base_evaluate.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("base_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.Evaluator


def seconds_per_eval(evaluator, plans: np.ndarray, order: np.ndarray, seconds: float) -> float:
    reps, started = 0, time.process_time()
    while (elapsed := time.process_time() - started) < seconds:
        evaluator.stats(plans, order, check=False)
        reps += 1
    return elapsed / (reps * len(plans))


def ab(a, b, plans, order, seconds: float, rounds: int) -> tuple[float, float]:
    """(best seconds per evaluation of ``a``, of ``b``), rounds alternating the two."""
    for ev in (a, b):
        ev.stats(plans, order, check=False)
    best_a = best_b = np.inf
    for _ in range(rounds):
        best_a = min(best_a, seconds_per_eval(a, plans, order, seconds / rounds))
        best_b = min(best_b, seconds_per_eval(b, plans, order, seconds / rounds))
    return best_a, best_b


def case(base_class, n_tasks: int, n_nodes: int, quick: bool) -> dict:
    workload = random_workload(n_tasks, 3 * n_tasks, seed=3, n_requests=max(1, n_tasks // 100))
    cluster = random_cluster(n_nodes, seed=3, n_zones=4)
    inst = Instance.build(workload, cluster)
    plans = random_plans(inst, 100 if n_tasks <= 1000 else 20, seed=4)
    order = inst.topo_order
    seconds, rounds = (1.0, 4) if quick else (6.0, 8)
    now, base = ab(Evaluator(inst), base_class(inst), plans, order, seconds, rounds)
    forced = Evaluator(inst)
    forced._slot_ptr = np.arange(n_nodes + 1, dtype=np.int64)  # the slotted decode, one slot per node
    forced._slots = np.ones(n_nodes)
    assert np.array_equal(forced.stats(plans, order), Evaluator(inst).stats(plans, order))
    slotted, _ = ab(forced, Evaluator(inst), plans, order, seconds, rounds)
    two = Instance.build(workload, replace(cluster, nodes=tuple(replace(nd, slots=2) for nd in cluster.nodes)))
    two_slots = seconds_per_eval(Evaluator(two), plans, order, seconds / rounds)
    return {"tasks": n_tasks, "edges": inst.n_edges, "nodes": n_nodes,
            "evals_per_s": 1 / now, "base_evals_per_s": 1 / base, "ratio_now_to_base": base / now,
            "slot_path_evals_per_s": 1 / slotted, "ratio_slot_path_to_one_slot_path": now / slotted,
            "two_slots_evals_per_s": 1 / two_slots}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings (for CI smoke runs)")
    parser.add_argument("--base", default="3b6b44b", help="revision whose evaluator is the base (default: "
                                                          "the one before slots)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base_class = base_evaluator_class(args.base, Path(folder))
        rows = [case(base_class, n, m, args.quick) for n, m in [(1000, 8), (5000, 32)]]
    print(f"Evaluator with node slots, against {args.base} (ratios > 1: this checkout is faster)")
    print(f"  {'tasks':>6} {'nodes':>5} {'evals/s':>10} {'base':>10} {'now/base':>9} {'slot path':>10} "
          f"{'ratio':>6} {'2 slots':>10}")
    for r in rows:
        print(f"  {r['tasks']:>6} {r['nodes']:>5} {r['evals_per_s']:>10,.0f} {r['base_evals_per_s']:>10,.0f} "
              f"{r['ratio_now_to_base']:>9.3f} {r['slot_path_evals_per_s']:>10,.0f} "
              f"{r['ratio_slot_path_to_one_slot_path']:>6.3f} {r['two_slots_evals_per_s']:>10,.0f}")
    print(json.dumps({"benchmark": "slots", "base": args.base, "cases": rows}))


if __name__ == "__main__":
    main()

"""Every benchmark script runs in its quick mode and ends with its JSON line.

Smoke runs only: the figures are not asserted (timings depend on the machine; the quality
claims need the full budgets). What breaks here is a script that no longer runs against the
current core, or whose JSON lost the fields its README section promises.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Fields each script's JSON must carry (benchmarks/README.md).
FIELDS = {
    "baselines": ("pairs", "tasks", "seconds", "exponent"),
    "load": ("phases", "reference", "read_speedup_vs_libyaml", "schema_speedup_vs_jsonschema", "optimize", "memory"),
    "evaluator": ("reference", "scaling", "scaling_exponent", "peak_rss_mb"),
    "slots": ("base", "cases"),
    "optimizer": ("seconds", "cpu_seconds", "evaluations_per_s", "evaluator_share", "pymoo_share", "ours_share",
                  "cold_start_seconds", "cold_numba_setup_seconds", "speedup_vs_stock", "hypervolume"),
    "quality": ("instances", "summary"),
    "simulator": ("static_makespan", "no_noise_seconds", "cases"),
    "robust": ("summary", "runs", "knee_shift_correlation"),
    "replan": ("first_makespan", "first_front", "cases", "target_seconds"),
    "allocate_memory": ("tasks", "nodes", "peak_rss_mb", "phase_peak_rss_mb", "dominant_phase", "target_mb"),
    "saga": ("instances", "summary", "heuristics", "excluded"),
    "islands": ("instances", "wall_time", "cpu_count", "islands", "rounds"),
    "calibration": ("runs", "probed", "declared", "final_median_abs_error", "target", "target_met", "calibration"),
}


def install_saga() -> None:
    """SAGA installs without its declared dependencies (benchmarks/requirements-saga.txt), so
    the project's extras cannot bring it; a clean clone gets it here."""
    if importlib.util.find_spec("saga") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "-r",
                        str(ROOT / "benchmarks" / "requirements-saga.txt")], check=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIELDS))
def test_benchmark_quick_run_ends_with_its_json(name):
    if name == "saga":
        install_saga()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"bench_{name}.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 2, done.stdout  # the table comes first
    record = json.loads(lines[-1])
    assert record["benchmark"] == name
    missing = [field for field in FIELDS[name] if field not in record]
    assert not missing, missing
    if name == "evaluator":
        reference = record["reference"]
        assert reference["evals_per_s"] > 0 and reference["ratio_vs_python"] > 0
        assert math.isfinite(record["scaling_exponent"])
    if name == "load":
        assert set(record["phases"]) == {"yaml", "json"}
        assert record["memory"]["load_build_peak_rss_mb"] > 0 and record["optimize"]["ratio"] >= 1.0
    if name == "islands":
        assert [t["workers"] for t in record["wall_time"]] == [1, 2, 4]
        for row in record["instances"]:
            assert all(row[v]["hypervolume"] > 0 for v in ("one", "seeds", "islands", "rounds"))
    if name == "calibration":
        assert [run["run"] for run in record["runs"]] == [1, 2, 3]
        assert all(run["median_abs_error"] >= 0 and run["fit"] for run in record["runs"])
    if name == "optimizer":
        shares = [record[f"{category}_share"] for category in ("evaluator", "pymoo")]
        assert all(0.0 <= share <= 1.0 for share in shares)
    if name == "saga":
        # Even the quick run checks the cost models: every SAGA schedule, scored by Apportion's
        # evaluator, comes out at SAGA's makespan or below.
        assert len(record["heuristics"]) >= 19
        assert record["summary"]["model_disagreements"] == []
        scored = [run for case in record["instances"] for run in case["heuristics"].values() if run["status"] == "ok"]
        assert scored and all(run["agrees"] for run in scored)

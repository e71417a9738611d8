"""Scenario inputs and settings: one scenario build writes the workload and the cluster, the
snapshot marks nodes down, and bad values are named in one line."""

from __future__ import annotations

import json

import pytest

from apportion.core.errors import SpecError
from apportion.operators.allocating import allocate
from apportion.operators.inputs import build_workload, make_settings, snapshot_cluster
from apportion.operators.tracking import AirflowRef
from tests.operators.conftest import SMALL, local


def ref(dag_id):
    return AirflowRef(dag_id, "manual__2026-01-01", "allocate")


def test_the_snapshot_starts_from_the_cluster_the_scenario_was_built_with(tmp_path):
    built = build_workload("medical_diagnosis", size=2, nodes=4, seed=3, out_dir=tmp_path / "build")
    as_built = json.loads(open(local(built["cluster"])).read())
    down = as_built["nodes"][0]["id"]
    snap = snapshot_cluster(built, nodes_down=[down], out_dir=tmp_path / "snap")
    snapshot = json.loads(open(local(snap["cluster"])).read())
    assert [n["id"] for n in snapshot["nodes"]] == [n["id"] for n in as_built["nodes"]]
    assert [n.get("failed", False) for n in snapshot["nodes"]] == [n["id"] == down for n in as_built["nodes"]]
    assert (snap["nodes"], snap["nodes_failed"], snap["nodes_down"]) == (4, 1, [down])


def test_settings_take_the_project_defaults_and_bad_values_are_named(dag_id, output_root):
    from apportion.core import defaults

    settings = make_settings()
    assert (settings.algorithm, settings.population, settings.generations, settings.seed, settings.select) == (
        defaults.ALGORITHM, defaults.POPULATION, defaults.GENERATIONS, defaults.SEED, defaults.SELECT)
    assert (settings.objectives, settings.noise_sigma) == (defaults.DEFAULT_OBJECTIVES, defaults.NOISE_SIGMA)
    robust = make_settings(robust_scenarios=12, noise_sigma=0.25, objectives=["makespan", "energy"])
    assert (robust.robust_scenarios, robust.noise_sigma, robust.objectives) == (12, 0.25, ("makespan", "energy"))
    for field, value in (("population", 2.5), ("population", "20"), ("robust_scenarios", -1),
                         ("robust_scenarios", "K"), ("noise_sigma", -0.2), ("objectives", "makespan,energy")):
        with pytest.raises(SpecError) as caught:
            make_settings(**{field: value})
        assert caught.value.field == field and "\n" not in str(caught.value)
    for field, value in (("warm_start", "False"), ("migration_objective", 1)):
        with pytest.raises(SpecError) as caught:
            allocate(**SMALL, output_root=output_root, ref=ref(dag_id), **{field: value})
        assert caught.value.field == field
    with pytest.raises(SpecError) as caught:
        allocate(scenario="medical_diagnosis", scenario_params={"sise": 3}, output_root=output_root,
                 ref=ref(dag_id))
    assert caught.value.field == "scenario_params"


def test_unknown_nodes_down_are_named(tmp_path):
    with pytest.raises(SpecError) as refused:
        snapshot_cluster(scenario="medical_diagnosis", size=2, nodes=4, nodes_down=["no-such-node"], out_dir=tmp_path)
    assert refused.value.field == "nodes_down" and "no-such-node" in str(refused.value)

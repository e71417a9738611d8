"""The scenario library: every generated pair builds, rules hold, load and sizes behave."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, Evaluator
from apportion.core.model import Instance
from apportion.core.scenarios import SCENARIOS, build
from apportion.core.scenarios import profiles as P
from apportion.core.scenarios.clusters import CITY_SLOTS, HOSPITAL_SLOTS, SPEECH_SLOTS, apportion
from apportion.core.scenarios.traffic import load_factor, neighbours

HOSPITAL_ONLY = {"dicom_prep", "ct_seg", "lesion_cls", "notes_nlp", "lab_model"}


def step(task_id: str) -> str:
    return task_id.split(".", 1)[1]


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(SCENARIOS)), size=st.integers(1, 200), nodes=st.integers(2, 64),
       seed=st.integers(0, 2**16))
def test_every_size_builds_and_scales_the_task_count(name, size, nodes, seed):
    workload, cluster = build(name, size=size, nodes=nodes, seed=seed)
    inst = Instance.build(workload, cluster)
    assert inst.n_nodes == nodes
    assert inst.n_tasks == SCENARIOS[name].tasks_per_unit * size
    assert len(workload.requests) == size
    assert np.isfinite(inst.inv_bandwidth).all()  # every zone pair is linked
    assert np.isfinite(inst.duration[inst.eligible]).all() and (inst.duration[inst.eligible] > 0).all()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_defaults_and_a_single_node_build(name):
    workload, cluster = build(name)
    assert len(workload.requests) == SCENARIOS[name].default_size
    assert len(cluster.nodes) == SCENARIOS[name].default_nodes
    Instance.build(workload, cluster)
    Instance.build(*build(name, size=3, nodes=1))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_seed_same_scenario_other_seed_differs(name):
    a = build(name, size=20, nodes=8, seed=7)
    assert a == build(name, size=20, nodes=8, seed=7)
    assert a[0] != build(name, size=20, nodes=8, seed=8)[0]


@pytest.mark.parametrize("nodes", [1, 2, 5, 16, 40])
def test_patient_data_stays_in_the_hospital_and_cnns_on_gpus(nodes):
    workload, cluster = build("medical_diagnosis", size=30, nodes=nodes, seed=3)
    inst = Instance.build(workload, cluster)
    zone = np.array([nd.zone for nd in cluster.nodes])
    kind = np.array([nd.kind for nd in cluster.nodes])
    for i, t in enumerate(workload.tasks):
        where = inst.eligible_nodes(i)
        if step(t.id) in HOSPITAL_ONLY:
            assert t.allowed_zones == ("hospital",)
            assert (zone[where] == "hospital").all()
        else:
            assert t.allowed_zones is None
        if step(t.id) in {"ct_seg", "lesion_cls"}:
            assert (kind[where] == "gpu").all()
    # Features may leave: with cloud nodes present, fusion and report can use them.
    if (zone == "cloud").any():
        fusion = workload.tasks.index(next(t for t in workload.tasks if step(t.id) == "fusion"))
        assert (zone[inst.eligible_nodes(fusion)] == "cloud").any()


def test_urgent_cases_have_deadlines_and_priority():
    workload, _ = build("medical_diagnosis", size=200, nodes=4, seed=1, urgent_share=0.5)
    urgent = [r for r in workload.requests if r.deadline is not None]
    routine = [r for r in workload.requests if r.deadline is None]
    assert 60 < len(urgent) < 140  # binomial(200, 0.5)
    assert all(r.deadline == pytest.approx(r.release + 900.0) and r.priority == 3.0 for r in urgent)
    assert all(r.priority == 1.0 for r in routine)
    by_request = {r.id: r.priority for r in workload.requests}
    assert all(t.priority == by_request[t.request] for t in workload.tasks)
    none, _ = build("medical_diagnosis", size=50, nodes=4, urgent_share=0.0)
    assert all(r.deadline is None for r in none.requests)
    releases = [r.release for r in workload.requests]
    assert releases == sorted(releases) and 0 <= releases[0] and releases[-1] < 3600.0


def test_rush_hour_raises_traffic_load_over_night():
    def total_work(when):
        workload, _ = build("traffic_prediction", size=36, nodes=16, seed=5, logical_date=when)
        return sum(t.work for t in workload.tasks), sum(e.data for e in workload.edges)

    rush_work, rush_data = total_work(datetime(2024, 3, 5, 8, 0))  # Tuesday 08:00
    night_work, night_data = total_work(datetime(2024, 3, 5, 3, 0))
    evening_work, _ = total_work(datetime(2024, 3, 5, 17, 30))
    assert rush_work > 1.5 * night_work
    assert evening_work > 1.5 * night_work
    assert rush_data > night_data
    # No rush on a Saturday morning.
    assert load_factor(datetime(2024, 3, 9, 8, 0)) < load_factor(datetime(2024, 3, 5, 8, 0))
    for hour in (7, 8, 9, 16, 17, 18, 19):
        assert load_factor(datetime(2024, 3, 5, hour, 0)) > 2 * load_factor(datetime(2024, 3, 5, 3, 0))


def test_traffic_logical_date_forms_and_default():
    iso = build("traffic_prediction", size=4, nodes=3, logical_date="2024-03-05T03:00:00")
    assert iso == build("traffic_prediction", size=4, nodes=3, logical_date=datetime(2024, 3, 5, 3, 0))
    assert build("traffic_prediction", size=4, nodes=3) != iso  # default is a rush hour
    with pytest.raises(SpecError) as err:
        build("traffic_prediction", size=4, logical_date="tomorrow")
    assert err.value.field == "logical_date"


def test_traffic_edge_tasks_stay_in_their_district_and_read_neighbours():
    workload, cluster = build("traffic_prediction", size=36, nodes=16, seed=2)
    inst = Instance.build(workload, cluster)
    for i, t in enumerate(workload.tasks):
        if step(t.id) in {"ingest", "detect"}:
            (zone,) = t.allowed_zones
            assert zone.startswith("district-")
            assert {(cluster.nodes[j].kind, cluster.nodes[j].zone) for j in inst.eligible_nodes(i)} <= {("edge", zone)}
    cross = {(e.source.split(".")[0], e.target.split(".")[0]) for e in workload.edges
             if e.source.split(".")[0] != e.target.split(".")[0]}
    near = neighbours(36)
    assert cross == {(f"r{j}", f"r{i}") for i in range(36) for j in near[i]}
    assert all(len(n) in (2, 3, 4) for n in near)  # 6x6 grid: corners, sides, interior


def test_gpus_are_fast_at_dense_models_not_at_etl():
    factors = P.speed_factors()
    gpu, cpu = P.effective_speed(P.A100), P.effective_speed(P.CPU_SERVER)
    for kind in ("cnn", "transformer", "llm"):
        assert gpu * factors["gpu"][kind] > 10 * cpu * factors["cpu"][kind]
    for kind in ("etl", "tabular", "graph_search"):
        assert gpu * factors["gpu"][kind] < 1.1 * cpu * factors["cpu"][kind]
    for hw in P.HARDWARE:  # factor x speed reproduces the utilisation table
        for kind, u in P.UTILISATION[hw.kind].items():
            assert P.effective_speed(hw) * factors[hw.kind][kind] == pytest.approx(hw.peak_gflops * u)


def test_cluster_mix_follows_the_documented_ratio():
    assert apportion(16, HOSPITAL_SLOTS) == [4, 3, 2, 4, 3]
    assert apportion(16, CITY_SLOTS) == [6, 2, 3, 1, 2, 2]
    assert apportion(16, SPEECH_SLOTS) == [4, 2, 2, 5, 3]
    for n in range(1, 65):
        for slots in (HOSPITAL_SLOTS, CITY_SLOTS, SPEECH_SLOTS):
            counts = apportion(n, slots)
            assert sum(counts) == n and counts[0] >= 1 and min(counts) >= 0
    _, city = build("traffic_prediction", nodes=16)
    assert sorted({nd.zone for nd in city.nodes}) == ["cloud", "district-0", "district-1", "district-2",
                                                      "district-3", "metro"]


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "weather"}, "scenario"),
    ({"name": "medical_diagnosis", "size": 0}, "size"),
    ({"name": "medical_diagnosis", "size": 2.5}, "size"),
    ({"name": "multimodal_speech", "nodes": 0}, "nodes"),
    ({"name": "traffic_prediction", "nodes": True}, "nodes"),
    ({"name": "medical_diagnosis", "seed": -1}, "seed"),
    ({"name": "medical_diagnosis", "urgent_share": 1.5}, "urgent_share"),
    ({"name": "medical_diagnosis", "window": -1.0}, "window"),
    ({"name": "traffic_prediction", "cycle": 0.0}, "cycle"),
    ({"name": "multimodal_speech", "urgent_share": 0.1}, "options.urgent_share"),
])
def test_bad_arguments_name_the_parameter(kwargs, field):
    kwargs = dict(kwargs)
    with pytest.raises(SpecError) as err:
        build(kwargs.pop("name"), **kwargs)
    assert err.value.field == field


def fastest_eligible_makespan(workload, cluster) -> float:
    inst = Instance.build(workload, cluster)
    assignment = np.argmin(inst.duration, axis=1)  # inf where not eligible
    stats = Evaluator(inst).stats(assignment, inst.topo_order)[0]
    return float(stats[STAT_INDEX["makespan"]])


def test_medical_makespan_is_plausible():
    # One case alone, every task on its fastest eligible node: the critical path is nnU-Net's
    # sliding-window inference with mirroring on an on-site GPU (tens of seconds to a couple of
    # minutes in practice), plus preprocessing and the report: expect 10 s .. 10 min.
    one = fastest_eligible_makespan(*build("medical_diagnosis", size=1, nodes=16, seed=0, window=0.0))
    assert 10.0 < one < 600.0
    # The default batch releases 100 cases over an hour; the greedy plan stacks all hospital
    # work on one GPU, so it ends after the last release but well within a day.
    workload, cluster = build("medical_diagnosis")
    last_release = max(r.release for r in workload.requests)
    batch = fastest_eligible_makespan(workload, cluster)
    assert last_release < batch < 24 * 3600.0
    assert batch > 100 * 10.0  # at least the GPU time of 100 segmentations on one GPU


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_through_scenario_validate_and_optimize(name, tmp_path, capsys):
    """What a user does with a scenario, on the command line: write it, check it, plan it."""
    import json

    from apportion.core.cli import main

    out = tmp_path / name
    assert main(["scenario", name, "--size", "3", "--nodes", "6", "--out", str(out)]) == 0
    for half in ("workload", "cluster"):
        assert main(["validate", str(out / f"{half}.yaml")]) == 0
    capsys.readouterr()
    assert main(["optimize", str(out / "workload.yaml"), str(out / "cluster.yaml"), "--algorithm", "heft",
                 "--json", "--out", str(tmp_path / "plan")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == 3 * SCENARIOS[name].tasks_per_unit and summary["makespan"] > 0


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_specs_hold_plain_python_numbers(name):
    from apportion.core.spec import cluster_to_dict, workload_to_dict

    def values(doc):
        if isinstance(doc, dict):
            return [v for item in doc.values() for v in values(item)]
        if isinstance(doc, list):
            return [v for item in doc for v in values(item)]
        return [doc]

    workload, cluster = build(name)
    kinds = {type(v) for v in values(workload_to_dict(workload)) + values(cluster_to_dict(cluster))}
    assert kinds <= {str, int, float, bool, type(None)}, kinds

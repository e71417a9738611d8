"""Calibration: the robust speed/overhead estimator against its plain-Python reference, its
invariants, persistence, and how it reaches the cluster the next plan uses."""

import json
import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.core import calibrate
from apportion.core.calibrate import Calibration, Observation, apply_calibration, fit, median_abs_error
from apportion.core.errors import SpecError
from apportion.core.model import Cluster, Node
from tests.reference.naive_calibrate import naive_fit

CLUSTER = Cluster(nodes=(Node("gpu1", "gpu", 40.0, 40.0), Node("cpu1", "cpu", 10.0, 64.0)), default_bandwidth=100.0)


def affine(node, kind, works, speed, overhead):
    return [Observation(node, kind, w, overhead + w / speed) for w in works]


works = st.lists(st.floats(0.5, 500.0), min_size=3, max_size=12, unique=True)
speeds = st.floats(0.2, 200.0)
overheads = st.floats(0.0, 5.0)


@settings(max_examples=60, deadline=None)
@given(works, speeds, overheads, works, speeds)
def test_noise_free_affine_data_is_recovered(works_a, speed_a, overhead, works_b, speed_b):
    obs = affine("n1", "cnn", works_a, speed_a, overhead) + affine("n1", "etl", works_b, speed_b, overhead)
    cal = fit(obs)
    assert cal.overhead("n1").overhead == pytest.approx(overhead, rel=1e-6, abs=1e-6)
    assert cal.speed("n1", "cnn").speed == pytest.approx(speed_a, rel=1e-6)
    assert cal.speed("n1", "etl").speed == pytest.approx(speed_b, rel=1e-6)
    assert {s.source for s in cal.speeds} == {"group"}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1.0, 400.0), min_size=12, max_size=20, unique=True), speeds, overheads,
       st.lists(st.floats(3.0, 50.0), min_size=2, max_size=2), st.randoms(use_true_random=False))
def test_a_few_outliers_move_no_estimate(works, speed, overhead, blowups, rnd):
    obs = affine("n1", "cnn", works, speed, overhead)
    for i, blowup in zip(rnd.sample(range(len(obs)), 2), blowups, strict=True):
        obs[i] = Observation("n1", "cnn", obs[i].work, obs[i].duration * blowup)
    cal = fit(obs)
    assert cal.overhead("n1").overhead == pytest.approx(overhead, rel=1e-6, abs=1e-6)
    assert cal.speed("n1", "cnn").speed == pytest.approx(speed, rel=1e-6)


observation = st.builds(Observation, node=st.sampled_from(["a", "b", "c"]), kind=st.sampled_from(["x", "y"]),
                        work=st.floats(0.0, 100.0), duration=st.floats(0.0, 100.0))


@settings(max_examples=80, deadline=None)
@given(st.lists(observation, max_size=30), st.randoms(use_true_random=False))
def test_estimates_do_not_depend_on_the_order_of_observations(obs, rnd):
    shuffled = list(obs)
    rnd.shuffle(shuffled)
    a, b = fit(obs), fit(shuffled)
    assert (a.speeds, a.overheads, a.global_speed, a.global_overhead) == \
           (b.speeds, b.overheads, b.global_speed, b.global_overhead)


@settings(max_examples=80, deadline=None)
@given(st.lists(observation, max_size=30), st.integers(1, 4))
def test_fit_matches_the_plain_python_reference(obs, min_points):
    cal = fit(obs, min_points=min_points)
    overhead, speed = naive_fit(obs, min_points=min_points)
    assert {o.node: o.overhead for o in cal.overheads} == pytest.approx(overhead, rel=1e-9, abs=1e-12)
    assert {(s.node, s.kind): s.speed for s in cal.speeds} == pytest.approx(speed, rel=1e-9)


def test_small_groups_fall_back_to_the_node_then_to_everything_and_say_so():
    obs = (affine("a", "x", [10, 20, 30, 40], 5.0, 1.0) + affine("a", "y", [20], 5.0, 1.0)
           + affine("b", "x", [10, 20], 2.0, 0.5))
    cal = fit(obs)
    assert cal.speed("a", "x").source == "group"
    assert cal.speed("a", "y").source == "node" and cal.speed("a", "y").speed == pytest.approx(5.0)
    assert cal.speed("b", "x").source == "global"
    assert cal.overhead("a").source == "node" and cal.overhead("b").source == "global"
    assert cal.overhead("b").overhead == pytest.approx(1.0)
    assert fit(affine("a", "x", [10, 10, 10], 5.0, 1.0)).overhead("a").source == "none"


def test_applied_calibration_predicts_what_was_observed():
    obs = affine("gpu1", "cnn", [40, 80, 160, 320], 13.0, 0.9) + affine("cpu1", "etl", [5, 10, 20], 4.0, 1.1)
    declared = median_abs_error(obs, CLUSTER)
    calibrated = apply_calibration(CLUSTER, fit(obs))
    assert declared > 0.5
    assert median_abs_error(obs, calibrated) < 1e-9
    assert [n.overhead for n in calibrated.nodes] == pytest.approx([0.9, 1.1])
    assert calibrated.node_speed_factors["gpu1"]["cnn"] == pytest.approx(13.0 / 40.0)
    # a kind never observed on a node keeps its declared speed
    assert "etl" not in calibrated.node_speed_factors["gpu1"]


def test_merge_keeps_a_window_per_group_and_the_runs_in_order(tmp_path):
    cal = Calibration(window=4)
    cal = cal.merge(affine("a", "x", [1, 2, 3], 1.0, 0.0), run_id="r1", fitted_at="2026-12-05T09:00:00Z")
    cal = cal.merge(affine("a", "x", [4, 5, 6], 2.0, 0.0), run_id="r2", fitted_at="2026-12-05T10:00:00Z")
    assert cal.revision == 2 and cal.runs == ("r1", "r2")
    assert [(o.work, o.run_id) for o in cal.observations] == [(3.0, "r1"), (4.0, "r2"), (5.0, "r2"), (6.0, "r2")]
    path = calibrate.save(cal, tmp_path / "calibration.json")
    doc = json.loads(path.read_text())
    assert (doc["format"], doc["format_version"], doc["revision"], doc["count"]) == ("apportion-calibration", 1, 2, 4)
    assert doc["fitted_at"] == "2026-12-05T10:00:00Z"
    again = calibrate.load(path)
    assert again == cal
    assert calibrate.save(again, tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_a_missing_file_is_an_empty_calibration_and_a_wrong_version_is_one_clear_error(tmp_path):
    assert calibrate.load(tmp_path / "none.json") == Calibration()
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**Calibration().to_dict(), "format_version": 99}))
    with pytest.raises(SpecError, match=r"format_version: this Apportion reads version 1, the file has 99"):
        calibrate.load(path)
    path.write_text("{}")
    with pytest.raises(SpecError, match="not a calibration file"):
        calibrate.load(path)


@pytest.mark.parametrize("bad,field", [
    ({"node": "a", "kind": "x", "work": -1, "duration": 1}, "observations[0].work"),
    ({"node": "a", "kind": "x", "work": 1, "duration": math.nan}, "observations[0].duration"),
    ({"node": "", "kind": "x", "work": 1, "duration": 1}, "observations[0].node"),
    ({"node": "a", "kind": "x", "work": 1, "duration": 1, "colour": 3}, "observations[0].colour"),
])
def test_bad_observations_name_the_field(bad, field):
    with pytest.raises(SpecError) as err:
        fit([bad])
    assert err.value.field == field


def test_a_pandas_frame_and_step_records_are_observations():
    frame = pd.DataFrame({"node": ["a"] * 3, "kind": ["x"] * 3, "work": [1.0, 2.0, 4.0], "duration": [1.5, 2.5, 4.5]})
    assert fit(frame).speed("a", "x").speed == pytest.approx(1.0)
    with pytest.raises(SpecError, match="observations.duration: missing required column"):
        fit(frame.drop(columns="duration"))
    records = [{"node": "a", "kind": "x", "work": 2.0, "start": 10.0, "end": 13.5, "run_id": "r"}]
    assert calibrate.observations_of(records) == (Observation("a", "x", 2.0, 3.5, "r"),)


def test_observations_on_unknown_nodes_are_named_when_predicting():
    with pytest.raises(SpecError, match=r"observations\[0\].node: unknown node 'zz'"):
        median_abs_error([Observation("zz", "x", 1.0, 1.0)], CLUSTER)


def test_update_merges_saves_and_says_how_the_error_fell(tmp_path):
    path = tmp_path / "calibration.json"
    run1 = affine("gpu1", "cnn", [40, 80, 160], 13.0, 0.9)
    first = calibrate.update(path, run1, CLUSTER, run_id="r1", fitted_at="t1")
    assert first.error_before > 0.5 and first.error_after < 1e-9
    run2 = affine("gpu1", "cnn", [50, 100], 13.0, 0.9)
    second = calibrate.update(path, run2, CLUSTER, run_id="r2", fitted_at="t2")
    assert second.error_before < 1e-9  # run 2 was predicted with run 1's calibration
    assert calibrate.load(path).runs == ("r1", "r2") and len(second.calibration.observations) == 5
    assert second.cluster.nodes[0].overhead == pytest.approx(0.9)


def test_fit_settings_are_checked():
    with pytest.raises(SpecError, match="min_points: must be an integer >= 1"):
        fit([], min_points=0)
    with pytest.raises(SpecError, match="window"):
        fit([], window=True)

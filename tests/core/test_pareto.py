"""Pareto tools against plain-Python references, and the selection policies."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from apportion.core.errors import SpecError
from apportion.core.evaluate import STAT_INDEX, STATS
from apportion.core.pareto import (
    HV_REFERENCE,
    crowding_distance,
    front_ranks,
    hypervolume,
    non_dominated,
    objective_matrix,
    parse_policy,
    plane_normal,
    ranks_and_crowding,
    select,
)
from tests.reference.naive_pareto import (
    brute_crowding,
    brute_hypervolume,
    brute_non_dominated,
    brute_ranks,
    cramer_plane_normal,
)

# Small integer values make ties and duplicate rows common.
objective_arrays = st.integers(1, 4).flatmap(
    lambda k: arrays(np.float64, st.tuples(st.integers(0, 40), st.just(k)), elements=st.integers(0, 5).map(float))
)


@settings(max_examples=60, deadline=None)
@given(objective_arrays)
def test_non_dominated_matches_brute_force(F):
    assert non_dominated(F).tolist() == brute_non_dominated(F)


@settings(max_examples=60, deadline=None)
@given(objective_arrays)
def test_front_ranks_match_repeated_peeling(F):
    assert front_ranks(F).tolist() == brute_ranks(F)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4).flatmap(
    lambda k: arrays(np.float64, st.tuples(st.integers(3, 25), st.just(k)), elements=st.integers(0, 9).map(float))))
def test_crowding_distance_matches_reference(F):
    np.testing.assert_allclose(crowding_distance(F), brute_crowding(F.tolist()), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(objective_arrays)
def test_non_dominated_distinct_keeps_the_first_of_equal_rows(F):
    first = {}
    for i in brute_non_dominated(F):
        first.setdefault(tuple(F[i]), i)
    assert non_dominated(F, distinct=True).tolist() == sorted(first.values())


@settings(max_examples=60, deadline=None)
@given(objective_arrays)
def test_ranks_and_crowding_is_crowding_within_each_front(F):
    rank, crowd = ranks_and_crowding(F)
    assert rank.tolist() == brute_ranks(F)
    for level in set(rank.tolist()):
        members = np.flatnonzero(rank == level)
        expected = brute_crowding(F[members].tolist()) if members.size > 2 else [np.inf] * members.size
        np.testing.assert_array_equal(crowd[members], expected)


def test_crowding_distance_of_two_points_is_infinite():
    assert np.isinf(crowding_distance(np.array([[0.0, 1.0], [1.0, 0.0]]))).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 3).flatmap(
    lambda k: arrays(np.float64, st.tuples(st.integers(1, 7), st.just(k)),
                     elements=st.floats(0.0, 12.0, allow_nan=False))))
def test_hypervolume_matches_exact_reference(F):
    ideal, nadir = np.zeros(F.shape[1]), np.full(F.shape[1], 10.0)
    Z = (F - ideal) / (nadir - ideal)
    expected = brute_hypervolume(Z.tolist(), [HV_REFERENCE] * F.shape[1])
    assert hypervolume(F, ideal, nadir) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_hypervolume_2d_by_hand():
    # Normalised points (0, 1) and (0.5, 0.5), reference (1.1, 1.1), summed in vertical strips.
    F = np.array([[0.0, 10.0], [5.0, 5.0]])
    expected = (0.5 - 0.0) * (1.1 - 1.0) + (1.1 - 0.5) * (1.1 - 0.5)
    assert hypervolume(F, np.zeros(2), np.full(2, 10.0)) == pytest.approx(expected)
    assert hypervolume(F[:0], np.zeros(2), np.ones(2)) == 0.0
    assert hypervolume(np.array([[20.0, 0.0]]), np.zeros(2), np.full(2, 10.0)) == 0.0  # beyond the reference


def stats_matrix(**columns):
    n = len(next(iter(columns.values())))
    stats = np.zeros((n, len(STATS)))
    for name, values in columns.items():
        stats[:, STAT_INDEX[name]] = values
    return stats


def test_objective_matrix_negates_maximised_objectives():
    stats = stats_matrix(makespan=[3.0, 4.0], utilization=[0.5, 0.9], energy=[10.0, 7.0])
    F = objective_matrix(stats, ("makespan", "utilization", "energy"))
    np.testing.assert_array_equal(F, [[3.0, -0.5, 10.0], [4.0, -0.9, 7.0]])


def test_unknown_or_repeated_objective_is_a_spec_error():
    with pytest.raises(SpecError, match="unknown objective 'speed'") as err:
        objective_matrix(np.zeros((1, len(STATS))), ("makespan", "speed"))
    assert err.value.field == "objectives"
    with pytest.raises(SpecError, match="repeated"):
        objective_matrix(np.zeros((1, len(STATS))), ("makespan", "makespan"))


# A convex front in (makespan, imbalance): the middle point is the balanced one.
FRONT = stats_matrix(makespan=[0.0, 1.0, 2.0, 3.0, 10.0], imbalance=[10.0, 3.0, 2.0, 1.0, 0.0])


def test_compromise_picks_the_balanced_point():
    assert select(FRONT, ("makespan", "imbalance"), "compromise") == 2


# Normalised (0, 1), (.05, .45), (.3, .3), (1, 0): the second plan is furthest below the line
# through the extremes (1 - .5 against 1 - .6), the third nearest the ideal (0.42 against 0.45).
BENT = stats_matrix(makespan=[0.0, 0.5, 3.0, 10.0], imbalance=[10.0, 4.5, 3.0, 0.0])


def test_knee_is_furthest_from_the_line_through_the_extremes_and_compromise_nearest_the_ideal():
    assert select(BENT, ("makespan", "imbalance"), "knee") == 1
    assert select(BENT, ("makespan", "imbalance"), "compromise") == 2


def test_knee_of_one_objective_is_its_best_plan_and_of_one_plan_that_plan():
    assert select(stats_matrix(makespan=[3.0, 1.0, 2.0]), ("makespan",), "knee") == 1
    assert select(stats_matrix(makespan=[3.0]), ("makespan", "utilization"), "knee") == 0


def test_knee_in_three_objectives_uses_the_plane_through_the_three_extremes():
    # Extremes (0,1,1), (1,0,1), (1,1,0) span the plane z1 + z2 + z3 = 2; the bulge at
    # (.3,.3,.3) is 1.1 / sqrt(3) below it, the flatter (.5,.5,.6) 0.4 / sqrt(3).
    stats = stats_matrix(makespan=[0.0, 1.0, 1.0, 0.3, 0.5], imbalance=[1.0, 0.0, 1.0, 0.3, 0.5],
                         energy=[1.0, 1.0, 0.0, 0.3, 0.6])
    assert select(stats, ("makespan", "imbalance", "energy"), "knee") == 3


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5).flatmap(lambda k: arrays(
    np.float64, (k, k), elements=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 1, width=32)))))
def test_the_knees_plane_is_the_exact_solution_rounded_once(points):
    """Bit for bit the exact rational solution (Cramer's rule): the same on every CPU, which
    LAPACK's solve is not; None exactly when the points span no plane n . z = 1."""
    expected = cramer_plane_normal(points.tolist())
    got = plane_normal(points)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.tolist() == expected


def test_the_knees_plane_refuses_points_it_cannot_solve_for():
    assert plane_normal(np.array([[1.0, 0.0], [np.inf, 1.0]])) is None
    assert plane_normal(np.array([[1.0, 1.0], [2.0, 2.0]])) is None  # singular
    assert plane_normal(np.array([[1.0, 1.0], [1.0, 1.0]])) is None  # one point: many planes
    assert plane_normal(np.array([[2.0 ** -1000, 0.0], [0.0, 1.0]])).tolist() == [2.0 ** 1000, 1.0]
    assert plane_normal(np.array([[2.0 ** -1070, 0.0], [0.0, 1.0]])) is None  # 2^1070: beyond any float


fronts = st.integers(1, 4).flatmap(
    lambda k: arrays(np.float64, st.tuples(st.integers(1, 30), st.just(k)),
                     elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)))


@settings(max_examples=80, deadline=None)
@given(fronts, st.data())
def test_knee_and_compromise_pick_a_non_dominated_plan_whatever_the_units(F, data):
    """Scaling an objective (by a power of two, exact in floating point) never changes the pick,
    and no other plan dominates the plan picked."""
    from apportion.core.pareto import knee_point

    scale = np.array(data.draw(st.lists(st.integers(-20, 20), min_size=F.shape[1], max_size=F.shape[1])))
    for pick in (knee_point, lambda F: int(np.argmin(np.linalg.norm(
            (F - F.min(axis=0)) / np.where(np.ptp(F, axis=0) > 0, np.ptp(F, axis=0), 1.0), axis=1)))):
        chosen = pick(F)
        assert 0 <= chosen < F.shape[0]
        assert chosen in non_dominated(F).tolist()
        assert pick(F * 2.0 ** scale) == chosen
    names = ("makespan", "imbalance", "energy", "cost")[:F.shape[1]]
    stats = stats_matrix(**{name: F[:, c] for c, name in enumerate(names)})
    assert select(stats, names, "knee") == knee_point(F)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 4).flatmap(lambda k: st.tuples(
    arrays(np.float64, st.tuples(st.integers(1, 12), st.just(k)), elements=st.floats(-5.0, 15.0, width=32)),
    arrays(np.float64, st.tuples(st.integers(1, 12), st.just(k)), elements=st.floats(0.0, 6.0, width=32)),
    arrays(np.float64, st.just(k), elements=st.floats(-2.0, 2.0, width=32)),
    arrays(np.float64, st.just(k), elements=st.floats(0.0, 12.0, width=32)))))
def test_a_front_that_weakly_dominates_another_never_scores_less_in_a_fixed_box(case):
    """Points improved (or kept), or points added, never lower the hypervolume, also when
    some lie beyond the nadir or the reference point or better than the ideal."""
    G, improvement, ideal, span = case
    nadir = ideal + span
    F = G - improvement[np.arange(G.shape[0]) % improvement.shape[0]]
    hv_G = hypervolume(G, ideal, nadir)
    tolerance = 1e-12 * max(1.0, hv_G)
    assert hypervolume(F, ideal, nadir) >= hv_G - tolerance
    assert hypervolume(np.vstack([G, F[:1]]), ideal, nadir) >= hv_G - tolerance
    assert 0.0 <= hv_G <= HV_REFERENCE ** G.shape[1] + tolerance


def test_hypervolume_does_not_depend_on_the_order_of_the_points():
    rng = np.random.default_rng(3)
    F = rng.random((40, 3))
    values = {hypervolume(F[rng.permutation(40)], np.zeros(3), np.ones(3)) for _ in range(5)}
    assert len(values) == 1


def test_weights_pick_the_obvious_extremes():
    assert select(FRONT, ("makespan", "imbalance"), "weights:1,0") == 0
    assert select(FRONT, ("makespan", "imbalance"), "weights:0,1") == 4
    # Normalised points (0,1) (.1,.3) (.2,.2) (.3,.1) (1,0): weighted sums by hand.
    assert select(FRONT, ("makespan", "imbalance"), "weights:2,1") == 1
    assert select(FRONT, ("makespan", "imbalance"), "weights:1,2") == 3


def test_sla_takes_best_utilisation_within_the_bound():
    stats = stats_matrix(makespan=[10.0, 20.0, 30.0, 40.0], utilization=[0.3, 0.6, 0.9, 0.95])
    assert select(stats, ("makespan", "utilization"), "sla:30") == 2
    assert select(stats, ("makespan", "utilization"), "sla:25.5") == 1
    chosen = select(stats, ("makespan", "utilization"), "sla:100")
    assert chosen == 3


def test_sla_ties_in_utilisation_go_to_the_shorter_makespan():
    stats = stats_matrix(makespan=[20.0, 10.0], utilization=[0.5, 0.5])
    assert select(stats, ("makespan", "utilization"), "sla:30") == 1


def test_sla_that_nothing_meets_names_the_best_makespan():
    stats = stats_matrix(makespan=[12.5, 20.0], utilization=[0.3, 0.6])
    with pytest.raises(SpecError, match=r"best achievable makespan is 12\.5 s") as err:
        select(stats, ("makespan", "utilization"), "sla:10")
    assert err.value.field == "select"


@pytest.mark.parametrize("policy, message", [
    ("elbow", "unknown policy"),
    ("knee:3", "unknown policy"),
    ("compromise:1", "unknown policy"),
    ("weights:", "numbers separated by commas"),
    ("weights:1,x", "numbers separated by commas"),
    ("weights:-1,2", ">= 0"),
    ("weights:0,0", "at least one weight"),
    ("sla:", "makespan bound in seconds"),
    ("sla:fast", "makespan bound in seconds"),
    ("sla:-5", ">= 0"),
    ("sla:inf", "finite"),
])
def test_bad_policies_are_spec_errors(policy, message):
    with pytest.raises(SpecError, match=message) as err:
        parse_policy(policy)
    assert err.value.field == "select"


def test_weights_must_match_the_objectives():
    with pytest.raises(SpecError, match="3 numbers for 2 objectives") as err:
        select(FRONT, ("makespan", "imbalance"), "weights:1,1,1")
    assert err.value.field == "select"


def test_select_needs_plans():
    with pytest.raises(SpecError, match="no plans"):
        select(np.zeros((0, len(STATS))), ("makespan",), "knee")


def test_policy_parsing_accepts_spaces_case_and_unit():
    assert parse_policy(" KNEE ") == ("knee", None)
    assert parse_policy("Compromise") == ("compromise", None)
    assert parse_policy("sla:30s") == ("sla", 30.0)
    kind, weights = parse_policy("weights:1, 2.5 ,0")
    assert kind == "weights" and weights.tolist() == [1.0, 2.5, 0.0]


def test_knee_never_picks_a_dominated_plan_when_normalising_rounds_a_gap_away():
    """1 - 1.2e-34 rounds to 1 in the normalised objective: plans 1 and 2 tie there, but plan 2
    dominates plan 1 (hypothesis found it)."""
    from apportion.core.pareto import knee_point

    assert knee_point(np.array([[1.0], [1.2e-34], [0.0]])) == 2

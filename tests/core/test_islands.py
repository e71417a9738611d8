"""Island-model NSGA-II: configurations from one seed, the merge and its guarantees, migration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from apportion.core.api import Settings
from apportion.core.errors import SpecError
from apportion.core.islands import (
    MAX_ROUNDS,
    carry_migrants,
    covers,
    is_non_dominated,
    island_budget,
    island_configs,
    island_seeds,
    merge_fronts,
    merged_result,
    migrant_indices,
    reference_box,
    search_islands,
)
from apportion.core.model import Instance
from apportion.core.pareto import non_dominated, objective_matrix
from apportion.core.synthetic import random_cluster, random_workload

OBJECTIVES = ("makespan", "utilization", "imbalance")

# Small integer values so that ties and equal rows (duplicates) are common.
fronts = st.lists(arrays(np.float64, st.tuples(st.integers(0, 8), st.just(3)), elements=st.integers(0, 4)),
                  min_size=1, max_size=5).filter(lambda fs: sum(f.shape[0] for f in fs) > 0)


def instance_of(n_tasks=24, n_nodes=4, seed=3):
    return Instance.build(random_workload(n_tasks, 2 * n_tasks, seed=seed, n_requests=2),
                          random_cluster(n_nodes, seed=seed, n_zones=1))


@settings(max_examples=100, deadline=None)
@given(fronts)
def test_a_merged_front_is_non_dominated_without_duplicates_and_weakly_dominates_every_island(islands):
    merged = merge_fronts(islands)
    assert is_non_dominated(merged.F)
    assert len({tuple(row) for row in merged.F}) == len(merged)
    for F in islands:
        assert covers(merged.F, merged.violation, F)
    # Every kept row is the island row it names.
    for island, row, values in zip(merged.island, merged.row, merged.F, strict=True):
        assert np.array_equal(islands[island][row], values)


@settings(max_examples=100, deadline=None)
@given(fronts, st.data())
def test_with_constraints_the_merge_keeps_least_violation_and_still_covers_every_island(islands, data):
    violations = [data.draw(arrays(np.float64, F.shape[0], elements=st.sampled_from([0.0, 0.0, 1.5, 3.0])))
                  for F in islands]
    merged = merge_fronts(islands, violations)
    everything = np.concatenate(violations)
    assert np.all(merged.violation == everything.min())
    for F, v in zip(islands, violations, strict=True):
        assert covers(merged.F, merged.violation, F, v)


@settings(max_examples=100, deadline=None)
@given(fronts)
def test_the_merge_is_the_non_dominated_set_of_the_union(islands):
    union = np.concatenate(islands)
    expected = {tuple(union[i]) for i in non_dominated(union)}
    assert {tuple(row) for row in merge_fronts(islands).F} == expected


def test_covers_is_false_when_a_plan_is_not_weakly_dominated():
    F = np.array([[1.0, 2.0]])
    assert covers(F, None, np.array([[1.0, 2.0], [2.0, 2.0]]))
    assert not covers(F, None, np.array([[0.5, 3.0]]))
    assert not covers(F, np.array([1.0]), np.array([[5.0, 5.0]]), np.array([0.0]))  # less violation wins
    assert covers(F, np.array([0.0]), np.array([[0.0, 0.0]]), np.array([2.0]))


def test_island_seeds_come_from_the_run_seed_alone_and_differ_between_islands_and_rounds():
    assert island_seeds(7, 4) == island_seeds(7, 4)
    assert island_seeds(7, 6)[:4] == island_seeds(7, 4)
    assert len(set(island_seeds(7, 16))) == 16
    assert island_seeds(7, 4) != island_seeds(8, 4)
    assert island_seeds(7, 4, round=2) != island_seeds(7, 4, round=1)
    assert all(0 <= s < 2**31 for s in island_seeds(2**31 - 1, 8))


def test_objective_emphasis_leaves_one_objective_out_in_turn():
    configs = island_configs(0, 5, OBJECTIVES)
    assert [c.objectives for c in configs] == [
        OBJECTIVES, ("utilization", "imbalance"), ("makespan", "imbalance"), ("makespan", "utilization"),
        ("utilization", "imbalance")]
    assert all(c.objectives == OBJECTIVES for c in island_configs(0, 5, OBJECTIVES, emphasis=False))
    assert island_configs(0, 3, ("makespan",))[2].objectives == ("makespan",)


@pytest.mark.parametrize(("call", "field"), [
    (lambda: island_seeds(-1, 2), "seed"),
    (lambda: island_seeds(0, 0), "islands"),
    (lambda: island_seeds(0, 2.0), "islands"),
    (lambda: island_seeds(0, 2, round=MAX_ROUNDS + 1), "round"),
    (lambda: island_configs(0, 2, ("speed",)), "objectives"),
    (lambda: merge_fronts([]), "fronts"),
    (lambda: merge_fronts([np.zeros((2, 3)), np.zeros((1, 2))]), "fronts"),
    (lambda: merge_fronts([np.zeros((2, 3))], [np.zeros(3)]), "fronts[0]"),
    (lambda: merge_fronts([np.full((1, 2), np.nan)]), "fronts[0]"),
])
def test_bad_input_is_one_error_naming_the_field(call, field):
    with pytest.raises(SpecError) as error:
        call()
    assert error.value.field == field


def test_migrants_are_the_whole_front_when_it_fits_else_the_most_spread_out():
    F = np.array([[0.0, 4.0], [1.0, 3.0], [1.5, 2.9], [3.0, 1.0], [4.0, 0.0]])
    assert migrant_indices(F, 10).tolist() == [0, 1, 2, 3, 4]
    picked = migrant_indices(F, 3)
    assert picked.tolist() == sorted(picked.tolist()) and {0, 4} <= set(picked.tolist()) and len(picked) == 3


def test_a_front_record_carries_back_onto_the_instance_unchanged():
    inst = instance_of()
    run = search_islands(inst, Settings(population=8, generations=2, seed=1), islands=2)
    record = {"tasks": list(inst.task_ids), "nodes": list(inst.node_ids), "chosen": 0,
              "plans": [{"assignment": p.assignment.tolist(), "order": p.order.tolist()} for p in run.plans]}
    for old, new in zip(run.plans, carry_migrants(record, inst), strict=True):
        assert np.array_equal(old.assignment, new.assignment) and np.array_equal(old.order, new.order)


def test_an_island_search_is_repeatable_bit_for_bit_and_its_rounds_only_improve():
    inst = instance_of()
    run_settings = Settings(population=8, generations=3, seed=11)
    first = search_islands(inst, run_settings, islands=3, rounds=2)
    again = search_islands(inst, run_settings, islands=3, rounds=2)
    assert np.array_equal(first.stats, again.stats)
    for a, b in zip(first.plans, again.plans, strict=True):
        assert np.array_equal(a.assignment, b.assignment) and np.array_equal(a.order, b.order)
    assert [[f.config for f in fronts] for fronts in first.rounds] == [
        island_configs(11, 3, OBJECTIVES, round=r) for r in (1, 2)]

    F = objective_matrix(first.stats, OBJECTIVES)
    assert is_non_dominated(F)
    for island in first.rounds[-1]:
        assert covers(F, first.merged.violation, objective_matrix(island.stats, OBJECTIVES))
    box = reference_box(inst, OBJECTIVES)
    result = merged_result(inst, run_settings, first.plans, first.stats, box=box, evaluations=first.evaluations,
                           seconds=1.0)
    assert result.hypervolume > 0 and result.chosen_index in range(len(first.plans))
    assert first.evaluations > 2 * 3 * 8 * 3


def test_island_budget_spends_about_the_evaluations_of_one_search():
    assert island_budget(119, 4) == 29  # 4 x 30 populations = 120 = 119 + 1
    assert island_budget(119, 4, 2) == 14
    assert island_budget(3, 8) == 1  # at least one generation
    with pytest.raises(SpecError, match="islands"):
        island_budget(10, 0)

"""core.defaults is the one source of the names and defaults the command line, the operators,
the DAG forms and the core share: the core's own lists and defaults agree with it."""

from __future__ import annotations

import inspect
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apportion.core import defaults
from apportion.core.algorithms.nsga import NSGA2Allocator
from apportion.core.api import Settings
from apportion.core.errors import SpecError
from apportion.core.evaluate import STATS
from apportion.core.pareto import OBJECTIVES, parse_policy
from apportion.core.simulate import simulate


def test_pareto_knows_exactly_the_objectives_defaults_names_in_its_order():
    assert tuple(OBJECTIVES) == defaults.OBJECTIVES
    assert set(defaults.DEFAULT_OBJECTIVES) <= set(OBJECTIVES)
    for column, sense in OBJECTIVES.values():
        assert column in STATS
        assert sense in ("min", "max")


def test_settings_allocator_and_simulator_defaults_come_from_defaults():
    s = Settings()
    assert (s.algorithm, s.population, s.generations, s.seed, s.select, s.noise_sigma) == (
        defaults.ALGORITHM, defaults.POPULATION, defaults.GENERATIONS, defaults.SEED, defaults.SELECT,
        defaults.NOISE_SIGMA)
    assert s.objectives == defaults.DEFAULT_OBJECTIVES
    nsga = NSGA2Allocator()
    assert (nsga.population, nsga.generations) == (defaults.POPULATION, defaults.GENERATIONS)
    assert inspect.signature(simulate).parameters["samples"].default == defaults.SAMPLES


@settings(max_examples=300, deadline=None)
@given(st.from_regex(defaults.SELECT_PATTERN, fullmatch=True))
def test_every_policy_the_select_pattern_admits_parses(policy):
    kind, value = parse_policy(policy)
    assert kind == policy.partition(":")[0]
    if kind == "weights":
        assert (value > 0).any()


@pytest.mark.parametrize("policy", [
    "", "knee:", "median", "weights:", "weights:0", "weights:0,0.0,.0", "weights:1,,2", "weights:-1",
    "weights:1;2", "weights:a", "sla:", "sla:-5", "sla:nan", "sla:inf", "sla:5m", "sla:s",
])
def test_policies_the_select_pattern_refuses_are_spec_errors_on_select(policy):
    assert not re.search(defaults.SELECT_PATTERN, policy)
    with pytest.raises(SpecError) as err:
        parse_policy(policy)
    assert err.value.field == "select"

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


def test_default_objectives_are_response_time_when_requests_arrive_over_time():
    from apportion.core.model import Request, Task, Workload

    tasks = (Task("a", 1.0, request="r1"), Task("b", 1.0, request="r2"))
    at_once = Workload(tasks=tasks, requests=(Request("r1", 5.0), Request("r2", 5.0)))
    over_time = Workload(tasks=tasks, requests=(Request("r1", 0.0), Request("r2", 5.0)))
    assert defaults.objectives_for(at_once) == defaults.DEFAULT_OBJECTIVES
    assert defaults.objectives_for(over_time) == defaults.STREAMING_OBJECTIVES
    # A task in no request belongs to one released at 0.
    loose = Workload(tasks=(*tasks, Task("c", 1.0)), requests=at_once.requests)
    assert defaults.objectives_for(loose) == defaults.STREAMING_OBJECTIVES
    assert defaults.objectives_for(Workload(tasks=(Task("c", 1.0),))) == defaults.DEFAULT_OBJECTIVES
    assert set(defaults.STREAMING_OBJECTIVES) <= set(OBJECTIVES)


@pytest.mark.parametrize(("scenario", "expected"), [
    ("medical_diagnosis", defaults.STREAMING_OBJECTIVES),  # cases over an hour
    ("multimodal_speech", defaults.STREAMING_OBJECTIVES),  # streams over the day
    ("traffic_prediction", defaults.DEFAULT_OBJECTIVES),  # every region's cycle at 0 s
])
def test_scenarios_get_the_objectives_their_arrivals_call_for(scenario, expected):
    from apportion.core.scenarios import build

    workload, _ = build(scenario, size=3, nodes=4)
    assert defaults.objectives_for(workload) == expected

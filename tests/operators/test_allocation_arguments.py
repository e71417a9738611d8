"""The allocation arguments are declared once; the operator's template fields, keyword-only
signature and docs, and the step's keywords, all follow from that declaration."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest

from apportion.operators.allocating import allocate
from apportion.operators.allocation import AllocationOperator
from apportion.operators.allocation_arguments import AllocationArguments


def test_the_operator_takes_every_argument_by_keyword_only_with_its_default():
    parameters = inspect.signature(AllocationOperator.__init__).parameters
    for f in fields(AllocationArguments):
        assert parameters[f.name].kind is inspect.Parameter.KEYWORD_ONLY, f.name
        assert parameters[f.name].default == f.default, f.name
    operator = AllocationOperator(task_id="allocate", population=20, warm_start=True)
    assert (operator.population, operator.warm_start, operator.tracking_attempts) == (20, True, 3)
    with pytest.raises(TypeError, match="keyword arguments"):
        AllocationOperator("allocate")


def test_templated_arguments_and_docs_follow_the_declaration():
    templated = {f.name for f in fields(AllocationArguments) if f.metadata["templated"]}
    assert set(AllocationOperator.template_fields) == templated
    assert {"nested", "mlflow_conn_id", "tracking_attempts"}.isdisjoint(templated)
    for f in fields(AllocationArguments):
        assert f":param {f.name}: " in AllocationOperator.__doc__, f.name


def test_a_misspelt_argument_is_refused_by_the_operator_the_mapping_and_the_step():
    with pytest.raises(TypeError, match="populaton"):
        AllocationOperator(task_id="allocate", populaton=20)
    with pytest.raises(TypeError, match="algorithmz"):
        AllocationOperator.partial(task_id="allocate").expand(algorithmz=["nsga2"])
    with pytest.raises(TypeError, match="populaton"):
        allocate(scenario="medical_diagnosis", populaton=20)


def test_the_operator_hands_its_rendered_attributes_to_the_step():
    operator = AllocationOperator(task_id="allocate", scenario="medical_diagnosis", seed=7, nested=True)
    arguments = AllocationArguments.of(operator)
    assert (arguments.scenario, arguments.seed, arguments.nested, arguments.algorithm) == (
        "medical_diagnosis", 7, True, None)

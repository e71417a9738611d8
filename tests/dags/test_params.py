"""The trigger form's Params: bad values are refused when a run is triggered, and the enums and
bounds agree with what the core accepts."""

from __future__ import annotations

import re

import pytest

WORKFLOWS = {"medical_diagnosis": "cases", "traffic_prediction": "regions", "multimodal_speech": "streams"}
ALL_DAGS = (*WORKFLOWS, "allocation_benchmark", "failure_drill")


def trigger_params(dag, conf):
    """Validate ``conf`` as a trigger does: the REST API and ``dag.test()`` call
    ``SerializedDAG.create_dagrun``, which validates ``params.deep_merge(conf)`` of the
    serialized DAG before any run exists."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    merged = scheduler_dag.params.deep_merge(conf)
    merged.validate()
    return merged


@pytest.fixture(scope="module")
def workflow_module(apportion_dagbag):
    import allocation_workflow  # importable because the bundle put dags/ on sys.path

    return allocation_workflow


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_defaults_are_valid(apportion_dagbag, dag_id):
    dag = apportion_dagbag.dags[dag_id]
    assert trigger_params(dag, {}).dump() == dag.params.dump()


BAD_WORKFLOW_CONF = [
    ({"population": -5}, "less than the minimum"),
    ({"population": 3}, "less than the minimum"),
    ({"population": "20"}, "is not of type 'integer'"),
    ({"generations": 0}, "less than the minimum"),
    ({"seed": -1}, "less than the minimum"),
    ({"nodes": 0}, "less than the minimum"),
    ({"nodes": 100000}, "greater than the maximum"),
    ({"algorithm": "simulated-annealing"}, "is not one of"),
    ({"select": "best"}, "does not match"),
    ({"select": "weights:"}, "does not match"),
    ({"select": "weights:a,b"}, "does not match"),
    ({"select": "sla:"}, "does not match"),
    ({"select": "sla:-3"}, "does not match"),
    ({"objectives": ["makespan", "latency"]}, "is not one of"),
    ({"objectives": ["makespan", "makespan"]}, "non-unique"),
    ({"warm_start": "yes"}, "is not of type 'boolean'"),
    ({"migration_objective": 1}, "is not of type 'boolean'"),
    ({"nodes_down": "gpu-0"}, "is not of type 'array'"),
    ({"nodes_down": [""]}, "should be non-empty"),
    ({"noise_sigma": -0.1}, "less than the minimum"),
    ({"noise_sigma": 5}, "greater than the maximum"),
    ({"mtbf": 0}, "less than or equal to the minimum"),
    ({"mtbf": "often"}, "is not of type 'null', 'number'"),
    ({"samples": 0}, "less than the minimum"),
    ({"robust_scenarios": -1}, "less than the minimum"),
    ({"robust_scenarios": 1000}, "greater than the maximum"),
    ({"robust_scenarios": 2.5}, "is not of type 'integer'"),
    ({"calibration": "sometimes"}, "is not one of"),
]


@pytest.mark.parametrize("dag_id", WORKFLOWS)
@pytest.mark.parametrize(("conf", "message"), BAD_WORKFLOW_CONF, ids=lambda v: repr(v)[:40])
def test_bad_values_are_refused_at_trigger(apportion_dagbag, dag_id, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=re.escape(message)):
        trigger_params(apportion_dagbag.dags[dag_id], conf)


@pytest.mark.parametrize(("dag_id", "unit"), WORKFLOWS.items())
def test_size_is_counted_in_the_scenario_unit(apportion_dagbag, dag_id, unit):
    from airflow.sdk.exceptions import ParamValidationError

    from apportion.core.scenarios import SCENARIOS

    scenario = SCENARIOS[dag_id]
    assert unit == scenario.unit
    params = apportion_dagbag.dags[dag_id].params
    assert (params[unit], params["nodes"]) == (scenario.default_size, scenario.default_nodes)
    with pytest.raises(ParamValidationError):
        trigger_params(apportion_dagbag.dags[dag_id], {unit: 0})


def test_medical_defaults_are_100_cases_on_16_nodes(apportion_dagbag):
    params = apportion_dagbag.dags["medical_diagnosis"].params
    assert (params["cases"], params["nodes"]) == (100, 16)


@pytest.mark.parametrize(
    "conf",
    [
        {"select": "weights:1,2,0.5"},
        {"select": "weights:.5,0,3."},
        {"select": "sla:120"},
        {"select": "sla:90.5s"},
        {"objectives": ["energy", "cost"]},
        {"algorithm": "heft", "population": 4, "generations": 1, "seed": 0},
        {"city_timezone": "America/Argentina/Buenos_Aires"},
        {"robust_scenarios": 24, "noise_sigma": 0.3},
    ],
    ids=repr,
)
def test_good_values_are_accepted(apportion_dagbag, conf):
    merged = trigger_params(apportion_dagbag.dags["traffic_prediction"], conf)
    assert all(merged[k] == v for k, v in conf.items())


def test_city_timezone_must_look_like_a_zone_name(apportion_dagbag):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="does not match"):
        trigger_params(apportion_dagbag.dags["traffic_prediction"], {"city_timezone": "8am; DROP"})


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"algorithms": ["nsga2", "magic"]}, "is not one of"),
        ({"algorithms": []}, "should be non-empty"),
        ({"scenario": "weather"}, "is not one of"),
        ({"size": 0}, "less than the minimum"),
        ({"population": -1}, "less than the minimum"),
    ],
    ids=repr,
)
def test_benchmark_refuses_bad_values(apportion_dagbag, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=re.escape(message)):
        trigger_params(apportion_dagbag.dags["allocation_benchmark"], conf)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"fail_at": 1.5}, "greater than the maximum"),
        ({"fail_at": -0.1}, "less than the minimum"),
        ({"repair": -1}, "less than the minimum"),
        ({"fail_node": ""}, "should be non-empty"),
        ({"scenario": "weather"}, "is not one of"),
    ],
    ids=repr,
)
def test_failure_drill_refuses_bad_values(apportion_dagbag, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=re.escape(message)):
        trigger_params(apportion_dagbag.dags["failure_drill"], conf)


def test_optional_numbers_accept_none_and_numbers(apportion_dagbag):
    assert trigger_params(apportion_dagbag.dags["failure_drill"], {"repair": 120.5})["repair"] == 120.5
    assert trigger_params(apportion_dagbag.dags["failure_drill"], {"repair": None})["repair"] is None
    assert trigger_params(apportion_dagbag.dags["medical_diagnosis"], {"mtbf": 3600})["mtbf"] == 3600


def test_dag_test_refuses_bad_conf_before_any_task_runs(apportion_dagbag, airflow_metadata_db):
    """The full trigger path, with the metadata database: no run, no task."""
    from airflow.sdk.exceptions import ParamValidationError

    dag = apportion_dagbag.dags["medical_diagnosis"]
    with pytest.raises(ParamValidationError, match="population"):
        dag.test(run_conf={"population": -5})


def schema(dag, name):
    return dag.params.get_param(name).schema


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_form_choices_and_defaults_come_from_the_registry_and_core_defaults(apportion_dagbag, dag_id):
    from apportion.core import defaults
    from apportion.core.algorithms.registry import algorithm_names
    from apportion.core.scenarios import SCENARIOS

    dag = apportion_dagbag.dags[dag_id]
    params = dag.params
    if dag_id == "allocation_benchmark":
        assert schema(dag, "algorithms")["items"]["enum"] == list(algorithm_names()) == params["algorithms"]
    else:
        assert schema(dag, "algorithm")["enum"] == list(algorithm_names())
        assert params["algorithm"] == defaults.ALGORITHM
    # migrations needs a previous plan: the migration_objective Param adds it, not the list.
    assert schema(dag, "objectives")["items"]["enum"] == [o for o in defaults.OBJECTIVES if o != "migrations"]
    assert params["objectives"] == []  # empty: the workload's default (defaults.objectives_for)
    assert ", ".join(defaults.STREAMING_OBJECTIVES) in dag.params.get_param("objectives").description
    assert (params["population"], params["generations"], params["seed"], params["select"]) == (
        defaults.POPULATION, defaults.GENERATIONS, defaults.SEED, defaults.SELECT)
    assert schema(dag, "select")["pattern"] == defaults.SELECT_PATTERN
    if "scenario" in params:
        assert sorted(schema(dag, "scenario")["enum"]) == sorted(SCENARIOS)
    if dag_id in WORKFLOWS:  # the command line's simulation defaults
        assert (params["noise_sigma"], params["samples"]) == (defaults.NOISE_SIGMA, defaults.SAMPLES) == (0.3, 1000)


def test_an_allocator_registered_with_register_appears_in_the_forms(workflow_module):
    from apportion.core.algorithms import registry

    @registry.register
    class Plugged:
        name = "plugged-in"

    try:
        assert "plugged-in" in workflow_module.optimiser_params()["algorithm"].schema["enum"]
        assert "plugged-in" in workflow_module.algorithms_param(many=True).schema["items"]["enum"]
    finally:
        registry.REGISTERED.pop("plugged-in")


@pytest.mark.parametrize("dag_id", ALL_DAGS)
def test_every_param_sits_in_a_form_section(apportion_dagbag, dag_id):
    dag = apportion_dagbag.dags[dag_id]
    sections = {name: dag.params.get_param(name).schema.get("section") for name in dag.params}
    assert all(sections.values()), sections
    assert {"Scenario", "Optimiser"} <= set(sections.values())


def test_budget_bounds_match_what_the_core_accepts(apportion_dagbag):
    from apportion.core.api import Settings
    from apportion.core.errors import SpecError

    schema = {name: param.schema for name, param in apportion_dagbag.dags["medical_diagnosis"].params.items()}
    for field in ("population", "generations", "seed"):
        lowest = schema[field]["minimum"]
        Settings(**{field: lowest})
        with pytest.raises(SpecError) as refused:
            Settings(**{field: lowest - 1})
        assert refused.value.field == field

"""Reading plan.json back (``apportion.core.plan_file.read_plan``): what ``optimize`` wrote comes
back as written; a file that does not fit is one ``SpecError`` line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from apportion.core.api import Settings, optimize, write_outputs
from apportion.core.errors import SpecError
from apportion.core.io import load_instance
from apportion.core.plan_file import read_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "core" / "examples"


@pytest.fixture(scope="module")
def instance():
    return load_instance(EXAMPLES / "workload.yaml", EXAMPLES / "cluster.yaml")


@pytest.fixture(scope="module")
def written(instance, tmp_path_factory):
    """A plan.json as ``apportion optimize`` writes it, and the run it came from."""
    result = optimize(instance, Settings(population=16, generations=8, seed=3))
    return write_outputs(result, tmp_path_factory.mktemp("plan"))["plan"], result


def test_the_written_plan_comes_back(instance, written):
    path, result = written
    plan, start, end = read_plan(path, instance)
    np.testing.assert_array_equal(plan.assignment, result.chosen.plan.assignment)
    np.testing.assert_array_equal(plan.order, result.chosen.plan.order)
    np.testing.assert_array_equal(start, result.chosen.start)
    np.testing.assert_array_equal(end, result.chosen.end)


def _set(path, value):
    """An edit setting ``doc[path...] = value``."""
    def edit(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


MALFORMED = {
    "a list where a node name belongs": (_set(("tasks", 0, "node"), ["cpu1"]), "plan.tasks['{t0}'].node",
                                         "unknown node ['cpu1']"),
    "a list where a task name belongs": (_set(("tasks", 0, "task"), ["x"]), "plan.tasks[0]", "must be a mapping"),
    "a list in the order": (_set(("order", 2), ["x"]), "plan.order[2]", "unknown task ['x']"),
    "a missing task": (lambda doc: doc["tasks"].pop(), "plan.tasks", "no entry for 1 task(s)"),
    "an unknown node": (_set(("tasks", 0, "node"), "gpu7"), "plan.tasks['{t0}'].node", "unknown node 'gpu7'"),
    "an unknown task": (_set(("tasks", 0, "task"), "mri_a"), "plan.tasks['mri_a']", "unknown task"),
    "a task listed twice": (lambda doc: doc["tasks"].__setitem__(1, dict(doc["tasks"][0])), "plan.tasks['{t0}']",
                            "listed twice"),
    "NaN": (_set(("tasks", 0, "start"), float("nan")), "plan.tasks['{t0}'].start", "must be a finite time"),
    "Infinity": (_set(("tasks", 0, "end"), float("inf")), "plan.tasks['{t0}'].end", "must be a finite time"),
    "a number as text": (_set(("tasks", 0, "end"), "12"), "plan.tasks['{t0}'].end", "must be a finite time"),
    "an end before its start": (_set(("tasks", 0, "start"), 1e9), "plan.tasks['{t0}'].end", "before its start"),
    "children first": (lambda doc: doc["order"].reverse(), "plan", "before its parent"),
    "a node the placement rules exclude": (_set(("tasks", 1, "node"), "edge1"), "plan", "placement rules exclude"),
    "no order": (lambda doc: doc.pop("order"), "{path}", "not a plan"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_plan_that_does_not_fit_is_one_line_naming_the_field(instance, written, tmp_path, case):
    edit, field, reason = MALFORMED[case]
    doc = json.loads(written[0].read_text())
    t0 = doc["tasks"][0]["task"]
    edit(doc)
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(doc))  # NaN and Infinity as Python's json writes them
    with pytest.raises(SpecError) as err:
        read_plan(bad, instance)
    assert err.value.field == field.format(t0=t0, path=bad), str(err.value)
    assert reason in err.value.reason and "\n" not in str(err.value)


@pytest.mark.parametrize("content,reason", [
    ("{\"tasks\": [", "invalid JSON"),
    ("", "empty file"),
    ("[1, 2]", "not a plan"),
    ("{\"tasks\": {}, \"order\": []}", "not a plan"),
])
def test_a_file_that_is_no_plan_json(instance, tmp_path, content, reason):
    bad = tmp_path / "plan.json"
    bad.write_text(content)
    with pytest.raises(SpecError) as err:
        read_plan(bad, instance)
    assert err.value.field == str(bad) and reason in err.value.reason and "\n" not in str(err.value)


def test_a_number_too_large_for_a_float_is_not_a_time(instance, written, tmp_path):
    doc = json.loads(written[0].read_text())
    doc["tasks"][0]["end"] = "END"
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(doc).replace('"END"', "1e999"))  # JSON reads it as infinity
    with pytest.raises(SpecError) as err:
        read_plan(bad, instance)
    assert err.value.field == f"plan.tasks[{doc['tasks'][0]['task']!r}].end" and "got inf" in err.value.reason


@pytest.mark.parametrize("digits", [400, 5000, 100_000])
@pytest.mark.parametrize("key", ["start", "end"])
def test_an_integer_of_any_length_is_one_line_naming_the_field(instance, written, tmp_path, key, digits):
    """400 digits overflow a float; past 4300, Python refuses to convert them at all."""
    doc = json.loads(written[0].read_text())
    doc["tasks"][0][key] = "HUGE"
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(doc).replace('"HUGE"', "9" * digits))
    with pytest.raises(SpecError) as err:
        read_plan(bad, instance)
    assert err.value.field == f"plan.tasks[{doc['tasks'][0]['task']!r}].{key}"
    assert "must be a finite time" in err.value.reason and len(str(err.value)) < 200


def test_a_long_name_is_quoted_short(instance, written, tmp_path):
    doc = json.loads(written[0].read_text())
    doc["tasks"][0]["node"] = "n" * 100_000
    doc["order"][0] = "t" * 100_000
    bad = tmp_path / "plan.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as err:
        read_plan(bad, instance)
    assert "unknown node 'nnnn" in str(err.value) and len(str(err.value)) < 300

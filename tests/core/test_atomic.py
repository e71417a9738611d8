import json
import math

import pytest

from apportion.core import atomic


def test_write_json_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "plan.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"b": [1, 2]})
    assert json.loads(target.read_text()) == {"b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["plan.json"]


def test_refused_content_keeps_the_old_file(tmp_path):
    target = tmp_path / "plan.json"
    atomic.write_json(target, {"makespan": 1.0})
    with pytest.raises(ValueError):
        atomic.write_json(target, {"makespan": math.inf})  # not standard JSON
    assert json.loads(target.read_text()) == {"makespan": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_copy_file(tmp_path):
    source = tmp_path / "a.txt"
    source.write_text("x" * 10_000)
    copied = atomic.copy_file(source, tmp_path / "out" / "b.txt")
    assert copied.read_text() == "x" * 10_000

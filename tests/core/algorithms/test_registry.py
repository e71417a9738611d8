"""The algorithm registry: built-in names, register(), entry points of installed packages, and
a light import (DAG files read it while they are parsed)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from apportion.core.algorithms import registry
from apportion.core.algorithms.base import AllocationResult, Allocator, get_allocator
from apportion.core.algorithms.registry import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    algorithm_names,
    get_allocator_class,
    register,
)
from apportion.core.api import Settings, optimize
from apportion.core.errors import SpecError
from apportion.core.evaluate import Evaluator, Plan
from tests.core.algorithms.instances import small_instance


@pytest.fixture
def registered(monkeypatch):
    """REGISTERED as it is now, restored after the test (a test's classes do not leak)."""
    monkeypatch.setattr(registry, "REGISTERED", dict(registry.REGISTERED))


def test_every_builtin_name_loads_its_class():
    for name in BUILTIN:
        cls = get_allocator_class(name)
        assert issubclass(cls, Allocator) and cls.name == name
    assert algorithm_names()[:len(BUILTIN)] == tuple(BUILTIN)


def test_a_registered_class_is_offered_and_built(registered):
    @register
    class FastestNode(Allocator):
        """Every task on its fastest eligible node, in topological order."""

        name = "fastest-node"

        def __init__(self, *, tag: str = ""):
            self.tag = tag

        def allocate(self, evaluator, *, seed=0, progress=None):
            inst = evaluator.instance
            plan = Plan(np.argmin(inst.duration, axis=1).astype(np.int32), inst.topo_order.copy())
            return AllocationResult(self.name, [plan], evaluator.stats(plan.assignment, plan.order), 1, 0.0)

    assert "fastest-node" in algorithm_names()
    allocator = get_allocator("fastest-node", tag="x")
    assert isinstance(allocator, FastestNode) and allocator.tag == "x"
    inst = small_instance()
    result = allocator.allocate(Evaluator(inst))
    assert (inst.eligible[np.arange(inst.n_tasks), result.plans[0].assignment]).all()


FAKE_MODULE = '''
import numpy as np

from apportion.core.algorithms.base import AllocationResult, Allocator
from apportion.core.evaluate import Plan


class FirstEligible(Allocator):
    """Every task on its first eligible node, in topological order."""

    name = "first-eligible"

    def allocate(self, evaluator, *, seed=0, progress=None):
        inst = evaluator.instance
        plan = Plan(np.argmax(inst.eligible, axis=1).astype(np.int32), inst.topo_order.copy())
        return AllocationResult(self.name, [plan], evaluator.stats(plan.assignment, plan.order), 1, 0.0)
'''


def test_an_allocator_published_by_an_installed_package_is_found_and_runs(tmp_path, monkeypatch, registered):
    (tmp_path / "fake_allocators.py").write_text(FAKE_MODULE)
    info = tmp_path / "fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfirst-eligible = fake_allocators:FirstEligible\n")
    assert "first-eligible" not in algorithm_names()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_allocators", raising=False)

    assert "first-eligible" in algorithm_names()
    assert get_allocator_class("first-eligible").__module__ == "fake_allocators"
    inst = small_instance()
    result = optimize(inst, Settings(algorithm="first-eligible"))
    np.testing.assert_array_equal(result.chosen.plan.assignment, np.argmax(inst.eligible, axis=1))


def test_an_unknown_name_is_a_spec_error_on_algorithm():
    with pytest.raises(SpecError) as err:
        get_allocator("simulated-annealing")
    assert err.value.field == "algorithm"
    assert "simulated-annealing" in err.value.reason and "nsga2" in err.value.reason


def test_importing_the_registry_loads_nothing_heavy():
    code = textwrap.dedent("""
        import json, sys
        import apportion.core, apportion.core.defaults, apportion.core.algorithms.registry as registry
        registry.algorithm_names()
        print(json.dumps(sorted(name.split(".")[0] for name in sys.modules)))
    """)
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True).stdout))
    assert "apportion" in loaded
    assert not loaded & {"numpy", "numba", "pymoo", "scipy", "pandas", "mlflow"}

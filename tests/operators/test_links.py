"""The extra links: the operator, the plugin and the provider information name the same ones.

(That a run stores each link's URL as an XCom is tested with a real dag.test() run in
tests/plugins/test_plugin.py, marked slow.)"""

from __future__ import annotations

from apportion.operators.allocation import AllocationOperator
from apportion.operators.links import MlflowPlanLink, MlflowRunLink
from apportion.operators.provider import get_provider_info
from apportion.plugins.apportion_plugin import ApportionPlugin


def qualified(link) -> str:
    return f"{type(link).__module__}.{type(link).__name__}"


def test_the_operator_plugin_and_provider_list_the_same_links():
    declared = sorted(qualified(link) for link in AllocationOperator.operator_extra_links)
    assert declared == sorted(qualified(link) for link in ApportionPlugin.operator_extra_links)
    assert declared == sorted(get_provider_info()["extra-links"])
    assert {MlflowRunLink.name, MlflowPlanLink.name} == {"MLflow run", "Allocation plan"}

"""The provider information Airflow reads through the apache_airflow_provider entry point."""

from __future__ import annotations

import json
from importlib import import_module
from importlib.metadata import entry_points
from importlib.resources import files

import jsonschema

from apportion.operators.provider import get_provider_info


def load(path: str):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)


def test_the_entry_point_gives_provider_info_airflow_accepts():
    (entry,) = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("apportion.")]
    info = entry.load()()
    assert info == get_provider_info()
    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    assert info["package-name"] == "apportion"  # Airflow refuses a name that differs from the distribution's


def test_every_class_it_names_exists_and_the_connection_type_is_the_hooks():
    info = get_provider_info()
    for connection in info["connection-types"]:
        hook = load(connection["hook-class-name"])
        assert hook.conn_type == connection["connection-type"] == "apportion_mlflow"
    for link in info["extra-links"]:
        assert load(link)().name

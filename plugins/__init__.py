"""Apportion's Airflow plugin, installed as ``apportion.plugins`` and registered through the
``airflow.plugins`` entry point: installing the project is enough, no folder to copy."""

"""What Airflow's ProvidersManager learns about Apportion (the ``apache_airflow_provider``
entry point): the MLflow connection type, so the Connections page offers it with its fields,
and the operators' extra links."""

from __future__ import annotations


def get_provider_info() -> dict:
    return {
        "package-name": "apportion",
        "name": "Apportion",
        "description": "Decide where the steps of multi-step AI workflows run; track the plans in MLflow.",
        "connection-types": [
            {"connection-type": "apportion_mlflow", "hook-class-name": "apportion.operators.hooks.ApportionMlflowHook",
             "hook-name": "Apportion MLflow"},
        ],
        "extra-links": ["apportion.operators.links.MlflowRunLink", "apportion.operators.links.MlflowPlanLink"],
    }

"""What runs Apportion's Airflow and MLflow servers on one machine, apart from the DAGs and the
operators: process supervision (``processes``), the servers' environment and start-up
(``servers``), a memory monitor (``memory``), a small client of Airflow's REST API
(``airflow_client``), ``apportion demo`` (``demo``) and the command-line plug-ins that drive
Airflow and MLflow (``commands``).

Installed as ``apportion.stack``; nothing here is imported by the core.
"""

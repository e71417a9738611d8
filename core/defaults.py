"""Names and defaults that the command line, the Airflow operators and the DAGs' trigger forms
share, in one place.

Standard library only: DAG files read this while they are parsed (to fill the trigger form's
choices), so importing it must not load NumPy, Numba, pymoo or MLflow.
"""

from __future__ import annotations

# Every objective a search can minimise (utilization is maximised), in the order forms show
# them. ``migrations`` means something only against a previous plan.
OBJECTIVES: tuple[str, ...] = ("makespan", "utilization", "imbalance", "mean_response", "energy", "cost",
                               "migrations")
DEFAULT_OBJECTIVES: tuple[str, ...] = ("makespan", "utilization", "imbalance")

ALGORITHM = "nsga2"
POPULATION = 100
GENERATIONS = 200
SEED = 0
SELECT = "knee"
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # [0-9], not \d: Python's \d takes any digit
_POSITIVE = r"(?:[0-9]*[1-9][0-9]*(?:\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)"  # with a nonzero digit
# The syntax ``apportion.core.pareto.parse_policy`` accepts: knee | weights:a,b,c (at least one
# weight above 0) | sla:SECONDS[s]. Everything it matches parses (tests/core/test_defaults.py).
SELECT_PATTERN = rf"^(?:knee|weights:(?:{_NUMBER},)*{_POSITIVE}(?:,{_NUMBER})*|sla:{_NUMBER}s?)$"

# Lognormal sigma (mean 1) of task durations and transfers: in a simulation, and in the
# scenarios of a robust search.
NOISE_SIGMA = 0.3
# Monte Carlo samples of a simulation.
SAMPLES = 1000

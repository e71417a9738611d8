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
# The objectives a search uses when none are named, chosen by ``objectives_for``: a batch (every
# request released at once) is judged by its makespan; when requests arrive over time the
# makespan mostly measures the arrival window, and the priority-weighted mean response time is
# what each request experiences (docs/metrics.md, "Default objectives").
DEFAULT_OBJECTIVES: tuple[str, ...] = ("makespan", "utilization", "imbalance")
STREAMING_OBJECTIVES: tuple[str, ...] = ("mean_response", "utilization", "imbalance")


def objectives_for(workload) -> tuple[str, ...]:
    """The default objectives of ``workload`` (a ``core.model.Workload``): ``STREAMING_OBJECTIVES``
    when its requests are released at more than one time, else ``DEFAULT_OBJECTIVES``. Tasks
    that name no request belong to one released at 0."""
    releases = {request.release for request in workload.requests}
    if any(task.request is None for task in workload.tasks):
        releases.add(0.0)
    return STREAMING_OBJECTIVES if len(releases) > 1 else DEFAULT_OBJECTIVES


ALGORITHM = "nsga2"
POPULATION = 100
GENERATIONS = 200
SEED = 0
# How a plan is picked from the front; docs/metrics.md says why compromise is the default.
SELECT = "compromise"
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"  # [0-9], not \d: Python's \d takes any digit
_POSITIVE = r"(?:[0-9]*[1-9][0-9]*(?:\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)"  # with a nonzero digit
# The syntax ``apportion.core.pareto.parse_policy`` accepts: knee | compromise | weights:a,b,c (at
# least one weight above 0) | sla:SECONDS[s]. Everything it matches parses (tests/core/test_defaults.py).
SELECT_PATTERN = rf"^(?:knee|compromise|weights:(?:{_NUMBER},)*{_POSITIVE}(?:,{_NUMBER})*|sla:{_NUMBER}s?)$"

# Lognormal sigma (mean 1) of task durations and transfers: in a simulation, and in the
# scenarios of a robust search.
NOISE_SIGMA = 0.3
# Monte Carlo samples of a simulation.
SAMPLES = 1000

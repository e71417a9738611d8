"""Predicted versus realised: enact the chosen plan many times under noise and node failures.

The optimiser's numbers assume every task takes exactly its expected time; ``simulate_plan``
runs ``core.simulate`` on the verified plan and logs the realised metrics beside the predicted
ones on the allocation's MLflow run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.chosen_plan import load_chosen_plan
from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
from apportion.operators.storage import save_folder, task_folders
from apportion.operators.tracking import AirflowRef

# Realised metrics the simulate step logs (``sim/<name>_<statistic>``).
REALISED_METRICS = ("makespan", "mean_response", "p95_response", "utilization", "imbalance", "completion_rate",
                    "deadline_misses", "failed_tasks", "moved_tasks")
REALISED_STATISTICS = ("mean", "std", "p5", "p50", "p95")


# ``core.simulate.Uncertainty`` names its fields; a user set these arguments.
_ARGUMENT_OF = {"uncertainty.duration_sigma": "noise_sigma", "uncertainty.transfer_sigma": "noise_sigma",
                "uncertainty.mtbf": "mtbf", "uncertainty.repair_mean": "repair_mean"}


def _uncertainty(noise_sigma, mtbf, repair_mean):
    """``core.simulate.Uncertainty`` (which checks the values), its errors naming our arguments."""
    import math

    from apportion.core.errors import SpecError
    from apportion.core.simulate import Uncertainty

    try:
        return Uncertainty(duration_sigma=noise_sigma, transfer_sigma=noise_sigma,
                           mtbf=math.inf if mtbf is None else mtbf, repair_mean=repair_mean)
    except SpecError as error:
        raise SpecError(_ARGUMENT_OF.get(error.field, error.field), error.reason) from None


def simulate_plan(allocation: Mapping[str, Any], *, noise_sigma: float | None = None, mtbf: float | None = None,
                  repair_mean: float = 60.0, samples: int | None = None, seed: int = 0,
                  tracking_uri: str | None = None, mlflow_conn_id: str | None = DEFAULT_CONN_ID,
                  output_root: str | Path | None = None, context: Mapping[str, Any] | None = None,
                  ref: AirflowRef | None = None) -> dict:
    """Enact the chosen plan ``samples`` times (``core.simulate``): task durations and transfers
    vary lognormally with sigma ``noise_sigma`` (mean 1), nodes fail every ``mtbf`` seconds on
    average (``None``: never) and are repaired in ``repair_mean`` s. Same seed, same samples.
    Unset ``noise_sigma`` and ``samples`` take the command line's defaults
    (``apportion.core.defaults``: 0.3 and 1000).

    Writes simulation.json and simulation.png (stored in the task's folder of the storage
    root; histograms of the realised makespan and p95
    response, the predicted values marked) and logs ``sim/<metric>_<mean|std|p5|p50|p95>``
    beside the predicted ``plan/<metric>`` of the allocation's MLflow run. Returns a small summary.
    """
    import math
    from dataclasses import asdict

    from apportion.core.atomic import write_json
    from apportion.core.simulate import simulate
    from apportion.operators.charts import simulation_chart

    folder, store = task_folders(ref, context=context, output_root=output_root)
    from apportion.core import defaults

    noise_sigma = defaults.NOISE_SIGMA if noise_sigma is None else noise_sigma
    samples = defaults.SAMPLES if samples is None else samples
    uncertainty = _uncertainty(noise_sigma, mtbf, repair_mean)
    instance, plan, record = load_chosen_plan(allocation)
    started = time.perf_counter()
    result = simulate(instance, plan, uncertainty, samples=samples, seed=seed)  # checks samples and seed
    seconds = time.perf_counter() - started

    realised = result.summary()
    predicted = record["metrics"]
    metrics = {f"sim/{name}_{stat}": realised[name][stat]
               for name in REALISED_METRICS for stat in REALISED_STATISTICS}
    if predicted.get("makespan"):
        metrics["sim/makespan_mean_over_predicted"] = realised["makespan"]["mean"] / predicted["makespan"]
    metrics["sim/seconds"] = seconds
    chart = simulation_chart({name: result[name] for name in ("makespan", "p95_response")},
                             {name: predicted.get(name) for name in ("makespan", "p95_response")},
                             folder / "simulation.png",
                             title=f"plan {allocation.get('plan_id')}: {samples} samples, noise sigma {noise_sigma:g}"
                                   + ("" if mtbf is None else f", MTBF {mtbf:g} s"))
    # Standard JSON has no infinity: nodes that never fail have ``"mtbf": null``.
    uncertainty_record = {k: None if isinstance(v, float) and math.isinf(v) else v
                          for k, v in asdict(uncertainty).items()}
    report = {"plan_id": allocation.get("plan_id"), "samples": samples, "seed": seed, "seconds": seconds,
              "uncertainty": uncertainty_record, "predicted": {n: predicted.get(n) for n in REALISED_METRICS},
              "realised": {n: realised[n] for n in REALISED_METRICS}}
    write_json(folder / "simulation.json", report, sort_keys=True)
    save_folder(folder, store, ("simulation.png", "simulation.json"))

    if allocation.get("mlflow_run_id"):
        run_id = allocation["mlflow_run_id"]
        with ApportionMlflowHook(mlflow_conn_id, tracking_uri or allocation.get("tracking_uri")).upload_from(
                str(store)) as tracker:
            tracker.log_params(run_id, {"sim/noise_sigma": noise_sigma, "sim/mtbf": mtbf,
                                        "sim/repair_mean": uncertainty.repair_mean, "sim/samples": samples,
                                        "sim/seed": seed})
            tracker.log_metrics(run_id, metrics)
            tracker.client.log_artifact(run_id, str(folder / "simulation.json"))
            tracker.client.log_artifact(run_id, str(chart))
    return {"plan_id": allocation.get("plan_id"), "samples": samples, "seconds": seconds,
            "predicted_makespan": predicted.get("makespan"), "realised_makespan_mean": realised["makespan"]["mean"],
            "realised_makespan_p95": realised["makespan"]["p95"], "chart": str(store / chart.name), "artifact_uri": str(store)}

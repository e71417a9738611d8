"""The allocation step: optimise, write the run folder, store it, then log it all to MLflow.

``allocate`` writes every result to its run folder and stores it in the storage root
(``operators.storage``) before it talks to MLflow, so an unreachable server loses nothing: the
retry, on this worker or another, finds the complete stored result (same inputs and settings,
``operators.reuse``) and only uploads it. With ``warm_start`` the front the DAG last
published seeds the search (``operators.warm_start``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from apportion.operators.allocation_arguments import AllocationArguments
from apportion.operators.chosen_plan import PLAN_SCHEMA
from apportion.operators.hooks import ApportionMlflowHook
from apportion.operators.inputs import check_flag, cluster_summary, make_settings, resolve_inputs, scenario_kwargs
from apportion.operators.paths import FRONT_FILE, PLAN_FILE, current_context
from apportion.operators.reuse import RESULT_FILE, RESULT_VERSION, complete_result, fingerprint, plan_id
from apportion.operators.storage import as_path, fetch_folder, is_folder, local_files_in, save_folder, task_folders
from apportion.operators.tracking import (
    AirflowRef,
    Tracker,
    artifact_url,
    history_steps,
    reference_box_params,
    run_url,
    without_credentials,
)
from apportion.operators.warm_start import front_record, previous_front, warm_start_record


def compute_allocation(workload, cluster, settings, folder: str | Path, *, store: Any = None,
                       scenario_info: Mapping | None = None, started: float | None = None,
                       previous: Mapping[str, Any] | None = None) -> dict:
    """Optimise and write plan.json, front.json, pareto.csv, schedule.csv, charts, the specs
    and, last, result.json into the local ``folder``, and store them in ``store`` (a URI or
    ``ObjectStoragePath``; default: ``folder`` itself), result.json last. If the stored
    result.json already matches these inputs and settings, reuse it (downloaded into
    ``folder``). ``previous`` (a published front.json) warm-starts the search and sets each
    task's previous node. Returns the result record (with ``"reused"``)."""
    from apportion.core.algorithms.heft import HeftAllocator
    from apportion.core.api import optimize, write_outputs
    from apportion.core.atomic import write_json
    from apportion.core.io import cluster_to_dict, workload_to_dict
    from apportion.core.model import Instance
    from apportion.core.warm_start import carry_front, with_previous_nodes

    started = time.perf_counter() if started is None else started
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = as_path(folder if store is None else store)
    if previous is not None:
        workload = with_previous_nodes(workload, cluster, previous)
    workload_spec, cluster_spec = workload_to_dict(workload), cluster_to_dict(cluster)
    source = None if previous is None else json.dumps([previous.get("plan_id"), previous.get("source")], sort_keys=True)
    key = fingerprint(settings, workload_spec, cluster_spec, source)
    done = complete_result(store, key)
    if done is not None:
        fetch_folder(store, folder)  # MLflow uploads from the local folder
        return {**done, "reused": True}

    (folder / RESULT_FILE).unlink(missing_ok=True)
    if not is_folder(store, folder) and (store / RESULT_FILE).exists():
        (store / RESULT_FILE).unlink()  # an earlier try's, for other inputs: not complete any more
    instance = Instance.build(workload, cluster)
    carried = carry_front(previous, instance, HeftAllocator().build(instance)) if previous is not None else []
    result = optimize(instance, settings, initial_plans=carried)
    paths = write_outputs(result, folder)
    write_json(folder / "workload.json", workload_spec, sort_keys=True)
    write_json(folder / "cluster.json", cluster_spec, sort_keys=True)
    from apportion.operators.charts import gantt_chart, pareto_charts

    pareto_charts(paths["pareto"], settings.objectives, folder / "pareto.html", folder / "pareto.png",
                  title=f"{settings.algorithm}: Pareto front")
    gantt_chart(paths["schedule"], folder / "gantt.png", title=f"{settings.algorithm}: chosen plan")

    chosen_id = plan_id(json.loads(paths["plan"].read_text()))
    write_json(folder / FRONT_FILE, front_record(result, chosen_id), indent=None)
    record = _result_record(result, workload, cluster, instance, key, chosen_id, scenario_info,
                            warm_start_record(previous, instance, result, carried), started)
    write_json(folder / RESULT_FILE, record, sort_keys=True)
    save_folder(folder, store, local_files_in(folder), last=RESULT_FILE)
    return {**record, "reused": False}


def _result_record(result, workload, cluster, instance, key: str, chosen_id: str, scenario_info: Mapping | None,
                   warm: tuple[dict, dict], started: float) -> dict:
    """result.json: the chosen plan's id, summary and objectives, and the params and metrics
    MLflow gets."""
    from apportion.core.pareto import OBJECTIVES

    settings = result.settings
    warm_params, warm_metrics = warm
    robust_params, robust_metrics = _robust_record(result)
    task_seconds = time.perf_counter() - started
    return {
        "version": RESULT_VERSION,
        "fingerprint": key,
        "plan_id": chosen_id,
        "summary": result.summary(),
        "objectives": {name: result.chosen.stat(OBJECTIVES[name][0]) for name in settings.objectives},
        "metrics": {
            **{f"plan/{name}": value for name, value in result.metrics.items()},
            **warm_metrics,
            **robust_metrics,
            "search/hypervolume": result.hypervolume,
            "search/pareto_size": result.pareto_size,
            "search/evaluations": result.evaluations,
            "search/seconds": result.seconds,
            "search/evaluations_per_second": result.evaluations / result.seconds if result.seconds > 0 else 0.0,
            "search/task_seconds": task_seconds,
            "search/share_of_task": result.seconds / task_seconds if task_seconds > 0 else 0.0,
        },
        "params": {
            "search/algorithm": settings.algorithm, "search/population": settings.population,
            "search/generations": settings.generations, "search/seed": settings.seed,
            "search/objectives": ",".join(settings.objectives), "search/select": settings.select,
            "instance/workload": workload.name, "instance/cluster": cluster.name, "instance/tasks": instance.n_tasks,
            "instance/edges": instance.n_edges, "instance/requests": len(instance.request_ids),
            **{f"instance/{name}": count for name, count in cluster_summary(cluster).items()},
            **reference_box_params(result.reference_box),
            **warm_params,
            **robust_params,
            **{f"scenario/{k}" if k != "scenario" else "scenario/name": v
               for k, v in (scenario_info or {}).items() if v is not None},
        },
        "history": result.history,
    }


def _robust_record(result) -> tuple[dict, dict]:
    """MLflow params and metrics of a robust run (none for a nominal one): its settings, and
    ``robust/<metric>`` of the chosen plan over the scenarios beside
    ``robust/nominal_choice_makespan``, what the plan a nominal run picks gives there."""
    if result.robust_metrics is None:
        return {}, {}
    s = result.settings
    params = {"robust/scenarios": s.robust_scenarios, "robust/statistic": s.robust_statistic,
              "robust/noise_sigma": s.noise_sigma}
    metrics = {f"robust/{name}": value for name, value in result.robust_metrics.items()}
    if result.nominal_choice_robust_metrics is not None:
        params["robust/validation"] = s.robust_validation
        metrics["robust/nominal_choice_makespan"] = result.nominal_choice_robust_metrics["makespan"]
    return params, metrics


def allocate(workload=None, cluster=None, *, context: Mapping[str, Any] | None = None,
             ref: AirflowRef | None = None, **arguments) -> dict:
    """Allocate, write the run folder, log it all to MLflow and return the XCom summary.

    ``arguments``: the other fields of ``AllocationArguments`` (documented on
    ``AllocationOperator``), by keyword. ``ref`` names the task instance when there is no
    Airflow context (tests, scripts); otherwise it comes from ``context`` or the current task.
    """
    return run_allocation(AllocationArguments(workload=workload, cluster=cluster, **arguments), context=context,
                          ref=ref)


def run_allocation(args: AllocationArguments, *, context: Mapping[str, Any] | None = None,
                   ref: AirflowRef | None = None) -> dict:
    """``allocate`` with its arguments in one record (what ``AllocationOperator`` calls).

    With ``warm_start`` the front the DAG last published (``previous_front``) seeds the
    search and sets each task's previous node; ``migration_objective`` then also minimises
    the tasks moved off it (the ``migrations`` objective).
    """
    started = time.perf_counter()
    ref = ref or AirflowRef.from_context(current_context(context))
    folder, store = task_folders(ref, output_root=args.output_root)
    settings = make_settings(algorithm=args.algorithm, population=args.population, generations=args.generations,
                             seed=args.seed, objectives=args.objectives, select=args.select,
                             robust_scenarios=args.robust_scenarios, noise_sigma=args.noise_sigma)
    w, c = resolve_inputs(args.workload, args.cluster, scenario=args.scenario, scenario_params=args.scenario_params)
    info = {"scenario": args.scenario, **scenario_kwargs(args.scenario_params)} if args.scenario else {}
    warm_start, migration_objective = (check_flag(args.warm_start, "warm_start"),
                                       check_flag(args.migration_objective, "migration_objective"))
    previous = previous_front(ref.dag_id, args.output_root) if warm_start else None
    from dataclasses import replace

    if not args.objectives:  # none named: the workload's default (docs/metrics.md)
        from apportion.core.defaults import objectives_for

        settings = replace(settings, objectives=objectives_for(w))
    if previous is not None and migration_objective and "migrations" not in settings.objectives:
        settings = replace(settings, objectives=(*settings.objectives, "migrations"))
    c, calibrated = calibrated_cluster(c, args, scenario=args.scenario or w.name)
    record = compute_allocation(w, c, settings, folder, store=store, scenario_info=info, started=started,
                                previous=previous)
    if calibrated is not None:
        record = {**record, "params": {**record["params"], **calibrated}}
    hook = ApportionMlflowHook(args.mlflow_conn_id, args.tracking_uri, attempts=args.tracking_attempts)
    with hook.upload_from(str(store)) as tracker:
        tracked = _track_allocation(record, folder, str(store), ref, tracker, experiment_name=args.experiment_name or ref.dag_id,
                                    run_name=args.run_name, nested=args.nested,
                                    child_run_name=args.child_run_name or settings.algorithm)
    return _xcom_summary(record, settings, store, tracked)


def calibrated_cluster(cluster, args: AllocationArguments, *, scenario: str) -> tuple[Any, dict | None]:
    """The cluster to plan on and the calibration params to log: with ``args.calibration``, every
    node as the machine the calibration measured (``calibrating.planning_cluster``), and
    ``calibration/planned_revision`` (0: no calibration yet, the declared cluster) and
    ``calibration/planned_with`` (the file); without, the cluster as given and no params."""
    from apportion.core.errors import SpecError
    from apportion.operators.calibrating import calibration_uri, planning_cluster, read_calibration

    chosen = args.calibration
    if chosen is None or chosen is False:
        return cluster, None
    if chosen is True:
        target = calibration_uri(scenario, cluster.name, args.output_root)
    elif isinstance(chosen, str) and chosen:
        target = chosen
    else:
        raise SpecError("calibration", f"must be true, false or a calibration file's path or URI, got {chosen!r}")
    calibration = read_calibration(target)
    if calibration.revision > 0:
        cluster = planning_cluster(cluster, calibration, args.calibration_scale)
    return cluster, {"calibration/planned_revision": calibration.revision, "calibration/planned_with": str(target)}


def _xcom_summary(record: Mapping[str, Any], settings, store, tracked: Mapping[str, Any]) -> dict:
    """What ``allocate`` returns to XCom: the plan's headline numbers, the stored files' URIs
    and MLflow ids."""
    s = record["summary"]
    return {
        "plan_id": record["plan_id"],
        "algorithm": settings.algorithm,
        "seed": settings.seed,
        "objectives": record["objectives"],
        "makespan": s["makespan"], "utilization": s["utilization"], "imbalance": s["imbalance"],
        "hypervolume": s["hypervolume"], "pareto_size": s["pareto_size"],
        "optimiser_seconds": s["seconds"],
        "warm_start": record["params"].get("warm_start/enabled") == "true",
        "warm_start_source": record["params"].get("warm_start/source"),
        "moved_tasks": record["metrics"].get("warm_start/moved_tasks"),
        "robust_makespan": record["metrics"].get("robust/makespan"),
        "reused": record["reused"],
        "calibration_revision": record["params"].get("calibration/planned_revision"),
        "artifact_uri": str(store),
        "plan_uri": str(store / PLAN_FILE),
        "workload": str(store / "workload.json"),
        "cluster": str(store / "cluster.json"),
        **tracked,
    }


def _spec_datasets(record: Mapping[str, Any], folder: Path) -> dict:
    """The workload and cluster specs as MLflow input datasets, profiled by their sizes."""
    params = record["params"]
    sizes = {key.removeprefix("instance/"): value for key, value in params.items() if key.startswith("instance/")}
    workload = {k: sizes[k] for k in ("tasks", "edges", "requests")}
    cluster = {k: v for k, v in sizes.items() if k.startswith("nodes")}
    return {"workload": (params["instance/workload"], folder / "workload.json", workload),
            "cluster": (params["instance/cluster"], folder / "cluster.json", cluster)}


def _track_allocation(record: dict, folder: Path, stored: str, ref: AirflowRef, tracker: Tracker, *,
                      experiment_name: str,
                      run_name: str | None, nested: bool, child_run_name: str) -> dict:
    """Log one allocation to the DAG run's MLflow run (or a child of it when ``nested``)."""
    uri = tracker.tracking_uri
    experiment_id = tracker.experiment_id(experiment_name)
    parent_id, _ = tracker.dag_run(experiment_id, ref, run_name)
    if nested:
        run_id, _ = tracker.task_run(experiment_id, parent_id, ref, child_run_name)
    else:
        run_id = parent_id
        tracker.set_tags(parent_id, ref.task_tags())
    try:
        tracker.set_tags(run_id, {"apportion.plan_id": record["plan_id"], "apportion.artifact_uri": stored,
                                  "apportion.plan_schema": PLAN_SCHEMA,
                                  "apportion.reused_result": str(record.get("reused", False)).lower(),
                                  "apportion.warm_start": record["params"].get("warm_start/enabled", "false"),
                                  "apportion.warm_start_source": record["params"].get("warm_start/source"),
                                  "apportion.calibration_revision": record["params"].get(
                                      "calibration/planned_revision")})
        tracker.log_params(run_id, record["params"])
        tracker.log_metrics(run_id, record["metrics"], history_steps(record.get("history", [])))
        tracker.log_artifacts(run_id, folder)
        tracker.log_spec_datasets(run_id, _spec_datasets(record, folder))
    except Exception:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id, "FINISHED")
    return {
        "mlflow_run_id": run_id,
        "mlflow_parent_run_id": parent_id if nested else None,
        "mlflow_experiment_id": experiment_id,
        "mlflow_run_url": run_url(uri, experiment_id, run_id),
        "mlflow_plan_url": artifact_url(uri, experiment_id, run_id, PLAN_FILE),
        "tracking_uri": without_credentials(uri),
    }

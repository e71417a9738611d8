"""The island_search DAG's steps: plan the islands, search one island, merge a round, record.

Each step writes its files into its own run folder (``operators.paths``) with
``core.atomic``, stores them in the storage root (``operators.storage``, layout
``<root>/<dag_id>/<run_id>/<task_id>[.<map_index>]``, the summary last) and returns a small
summary whose file entries are URIs (``front_uri``, ``migrants_uri``, ``plan_uri``,
``artifact_uri``), so XComs stay small and any worker can read them. Only ``record_islands``
talks to MLflow: one run per DAG run, found again on a retry (``Tracker.dag_run``), so a
retried step never makes a second run. An island's search is reused on a retry when its
stored folder already holds the result for the same job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from apportion.operators.paths import FRONT_FILE, PLAN_FILE, current_context
from apportion.operators.storage import as_path, is_folder, local_files_in, read_json, save_folder, task_folders
from apportion.operators.tracking import AirflowRef, artifact_url, run_url, without_credentials

ISLAND_FILE = "island.json"  # an island's summary, written last: its presence marks a complete search
MERGED_FILE = "merged.json"
MIGRANTS_FILE = "migrants.json"


def _settings(population, generations, seed, objectives, select, workload=None):
    """The run's settings; no objectives named: the workload's default ones
    (``core.defaults.objectives_for``), as ``allocate`` picks them."""
    from apportion.operators.inputs import make_settings

    if not objectives and workload is not None:
        from apportion.core.defaults import objectives_for

        objectives = objectives_for(workload)

    return make_settings(algorithm="nsga2", population=population, generations=generations, seed=seed,
                         objectives=objectives, select=select)


def _instance(workload: str, cluster: str):
    from apportion.core.model import Instance
    from apportion.operators.inputs import resolve_inputs

    w, c = resolve_inputs(workload, cluster)
    return Instance.build(w, c)


def _ref(context: Mapping[str, Any] | None, ref: AirflowRef | None) -> AirflowRef:
    return ref or AirflowRef.from_context(current_context(context))


def worker_hostname() -> str:
    """The name Airflow records for this worker (``task_instance.hostname``): the task SDK's
    ``get_hostname``, which honours ``[core] hostname_callable`` (``stack.worker_name`` on the
    cluster, so two workers on one machine have names of their own)."""
    from airflow.sdk.api.client import get_hostname

    return get_hostname()


def island_jobs(workload: str, cluster: str, *, islands: int, seed: int, objectives: Sequence[str],
                emphasis: bool = True, round: int = 1, migrants: str | None = None) -> list[dict]:
    """One job per island of ``round`` (what the search step is mapped over): the island's
    config (``core.islands.island_configs``), the spec files' and the migrants file's URIs.

    :param workload: URI of the run's workload.json (``build_workload``'s; a local path is taken too).
    :param cluster: URI of the run's cluster.json.
    :param islands: K, how many islands.
    :param seed: the run's seed; every island's seed derives from it.
    :param objectives: the run's objectives (emphasis islands search all but one).
    :param emphasis: give islands 1..K-1 one objective less each, in turn.
    :param round: which round (1 for the first).
    :param migrants: URI of the previous round's migrants file (front.json format), or None.
    """
    from apportion.core.islands import island_configs
    from apportion.operators.inputs import check_flag

    if not objectives:  # none named: the workload's default (``core.defaults.objectives_for``)
        from apportion.core.defaults import objectives_for
        from apportion.operators.inputs import resolve_inputs

        objectives = objectives_for(resolve_inputs(workload, cluster)[0])
    configs = island_configs(seed, islands, objectives, round=round, emphasis=check_flag(emphasis, "emphasis"))
    return [{**config.as_dict(), "workload": str(workload), "cluster": str(cluster), "migrants_uri": migrants}
            for config in configs]


def _job_key(job: Mapping[str, Any], settings) -> str:
    """What an island's result depends on: the job, the settings, the specs' and migrants' bytes."""
    from dataclasses import asdict

    files = [job["workload"], job["cluster"]] + ([job["migrants_uri"]] if job.get("migrants_uri") else [])
    digests = [hashlib.sha256(as_path(f).read_bytes()).hexdigest() for f in files]
    blob = json.dumps({"job": dict(job), "settings": asdict(settings), "files": digests}, sort_keys=True,
                      default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def search_island(job: Mapping[str, Any], *, population: int, generations: int, seed: int,
                  objectives: Sequence[str], select: str = "knee", context: Mapping[str, Any] | None = None,
                  ref: AirflowRef | None = None, output_root: str | Path | None = None) -> dict:
    """Run one island (``core.islands.run_island``), write its front (front.json) and its
    summary (island.json) into the task's run folder and store them, island.json last. Returns
    the summary: the island, its seed, the worker it ran on (``worker_hostname``), its front's
    size and hypervolume (in the instance's fixed box, on the run's objectives), evaluations,
    seconds, the front's URI (``front_uri``) and the stored folder's (``artifact_uri``). A
    retry finds the stored summary of an earlier try for the same job and returns it.

    :param job: one of ``island_jobs``.
    :param population: NSGA-II population of each island.
    :param generations: NSGA-II generations of each island in each round.
    :param seed: the run's seed (the reference box's baselines use it).
    :param objectives: the run's objectives.
    :param select: selection policy (checked here, so bad input fails the first step it reaches).
    """
    from apportion.core.atomic import write_json
    from apportion.core.islands import IslandConfig, carry_migrants, reference_box, run_island
    from apportion.core.pareto import hypervolume, objective_matrix
    from apportion.operators.warm_start import front_record

    folder, store = task_folders(_ref(context, ref), output_root=output_root)
    _settings(population, generations, seed, objectives, select)  # bad input fails before any work
    instance = _instance(job["workload"], job["cluster"])
    run_settings = _settings(population, generations, seed, objectives, select, instance.workload)
    key = _job_key(job, run_settings)
    done = _complete(store, ISLAND_FILE, key)
    if done is not None:
        return {**done, "reused": True, "hostname": worker_hostname()}

    config = IslandConfig(island=int(job["island"]), round=int(job["round"]), seed=int(job["seed"]),
                          objectives=tuple(job["objectives"]))
    _start(folder, store, ISLAND_FILE)
    seeds = carry_migrants(read_json(job["migrants_uri"]) if job.get("migrants_uri") else None, instance)
    result = run_island(instance, run_settings, config, seeds)
    box = reference_box(instance, run_settings.objectives)
    hv = hypervolume(objective_matrix(result.front_stats, run_settings.objectives), *box)
    write_json(folder / FRONT_FILE, front_record(result, f"island-{config.island}"), indent=None)
    summary = {
        "key": key, "island": config.island, "round": config.round, "seed": config.seed,
        "objectives": list(config.objectives), "hostname": worker_hostname(),
        "pareto_size": len(result.front), "hypervolume": float(hv), "evaluations": int(result.evaluations),
        "seconds": float(result.seconds), "front_uri": str(store / FRONT_FILE), "artifact_uri": str(store),
        "workload": job["workload"], "cluster": job["cluster"], "migrants": len(seeds),
    }
    _store(folder, store, [FRONT_FILE], ISLAND_FILE, summary)
    return {**summary, "reused": False}


def _store(folder: Path, store, names: Sequence[str], last: str, summary: Mapping[str, Any]) -> None:
    """Write ``summary`` as ``last`` into the local ``folder``, then store ``names`` and, last,
    ``last`` under ``store`` (a reader that finds ``last`` finds every file)."""
    from apportion.core.atomic import write_json

    write_json(folder / last, summary, sort_keys=True)
    save_folder(folder, store, [*names, last], last=last)


def _start(folder: Path, store, last: str) -> None:
    """Forget an earlier try's summary (for other inputs), locally and stored, before writing
    new files: a folder without its summary is not complete."""
    (folder / last).unlink(missing_ok=True)
    if not is_folder(store, folder) and (store / last).exists():
        (store / last).unlink()


def _complete(store, name: str, key: str) -> dict | None:
    """The stored summary ``store / name`` when it was written for ``key`` and the files it
    names are stored, else None."""
    target = store / name
    try:
        if not target.exists():
            return None
        record = read_json(target)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    files = [record.get(k) for k in ("front_uri", "migrants_uri") if record.get(k)]
    return record if all(as_path(f).exists() for f in files) else None


def _front_plans(front: Mapping[str, Any], instance) -> list:
    """A front.json's plans, which must be for exactly ``instance``'s tasks and nodes."""
    import numpy as np

    from apportion.core.errors import SpecError
    from apportion.core.evaluate import Plan

    if front["tasks"] != list(instance.task_ids) or front["nodes"] != list(instance.node_ids):
        raise SpecError("islands", "an island's front is for another workload or cluster than the run's")
    return [Plan(np.array(p["assignment"], dtype=np.int32), np.array(p["order"], dtype=np.int32))
            for p in front["plans"]]


def _read_front(uri: str, instance, config) -> Any:
    """An island's stored front (or the previous merge's) as a ``core.islands.IslandFront``,
    its statistics re-computed from its plans (bit for bit what the island computed)."""
    import numpy as np

    from apportion.core.evaluate import Evaluator
    from apportion.core.islands import IslandFront

    plans = _front_plans(read_json(uri), instance)
    stats = Evaluator(instance).stats(np.array([p.assignment for p in plans]), np.array([p.order for p in plans]))
    return IslandFront(config=config, plans=tuple(plans), stats=stats, evaluations=0, seconds=0.0)


def merge_round(previous: Mapping[str, Any] | None, islands: Sequence[Mapping[str, Any]], *, round: int,
                rounds: int, population: int, generations: int, seed: int, objectives: Sequence[str],
                select: str = "knee", emphasis: bool = True, context: Mapping[str, Any] | None = None,
                ref: AirflowRef | None = None, output_root: str | Path | None = None) -> dict:
    """Merge a round's island fronts, and the previous round's merged front, into one
    non-dominated front without duplicates (``core.islands.merge_islands``); check that it is
    non-dominated and weakly dominates every island's front; write it (front.json), the
    migrants for the next round (migrants.json) and merged.json, and store them (merged.json
    last). Returns the summary (files as URIs: ``front_uri``, ``migrants_uri``), with the
    next round's ``jobs`` (empty after the last round) and every round's island figures in
    ``history``. A round past ``rounds`` has no islands: the previous summary passes through.

    :param previous: the previous round's summary, or None in round 1.
    :param islands: the round's ``search_island`` summaries.
    :param round: this round's number (1 for the first).
    :param rounds: how many rounds the run has.
    :param population: the islands' population: at most this many migrants.
    :param generations: the islands' generations (the run's settings, logged with the front).
    :param seed: the run's seed.
    :param objectives: the run's objectives, which the merge compares on.
    :param select: selection policy (applied by ``record_islands``).
    :param emphasis: whether the next round's islands get objective emphasis.
    """
    import numpy as np

    from apportion.core.atomic import write_json
    from apportion.core.errors import SpecError
    from apportion.core.islands import (
        IslandConfig,
        covers,
        is_non_dominated,
        merge_islands,
        migrant_indices,
        reference_box,
        violation_of,
    )
    from apportion.core.pareto import objective_matrix
    from apportion.operators.warm_start import front_record

    islands = sorted((dict(i) for i in islands), key=lambda i: i["island"])
    if not islands:
        if previous is None:
            raise SpecError("islands", f"round {round} has no island results and there is no earlier round")
        return {**previous, "jobs": []}
    folder, store = task_folders(_ref(context, ref), output_root=output_root)
    _start(folder, store, MERGED_FILE)
    workload, cluster = islands[0]["workload"], islands[0]["cluster"]
    instance = _instance(workload, cluster)
    settings = _settings(population, generations, seed, objectives, select, instance.workload)
    fronts = [_read_front(i["front_uri"], instance, IslandConfig(i["island"], round, i["seed"], tuple(i["objectives"])))
              for i in islands]
    pool = fronts + ([_read_front(previous["front_uri"], instance, None)] if previous else [])
    plans, stats, merged = merge_islands(instance, settings.objectives, pool)

    covered = [covers(merged.F, merged.violation, objective_matrix(f.stats, settings.objectives),
                      violation_of(instance, f.stats)) for f in pool]
    box = reference_box(instance, settings.objectives)
    result = _front_result(instance, settings, plans, stats, box, islands, previous)
    write_json(folder / FRONT_FILE, front_record(result, f"merged-round-{round}"), indent=None)
    migrant_front = {**front_record(result, f"migrants-round-{round}"), "chosen": 0}
    migrant_front["plans"] = [migrant_front["plans"][i] for i in migrant_indices(merged.F, population)]
    write_json(folder / MIGRANTS_FILE, migrant_front, indent=None)
    migrants_uri = str(store / MIGRANTS_FILE)

    round_figures = {
        "round": round, "pareto_size": len(merged), "hypervolume": float(result.hypervolume),
        "islands": [{k: i[k] for k in ("island", "seed", "objectives", "hostname", "pareto_size", "hypervolume",
                                       "evaluations", "seconds")} for i in islands],
        "from_islands": np.bincount(merged.island, minlength=len(pool)).tolist()[:len(islands)],
    }
    history = [*(previous or {}).get("history", []), round_figures]
    summary = {
        "round": round, "rounds": rounds, "pareto_size": len(merged), "hypervolume": float(result.hypervolume),
        "non_dominated": bool(is_non_dominated(merged.F)),
        "weakly_dominates_islands": bool(all(covered[:len(islands)])),
        "weakly_dominates_each_island": [bool(c) for c in covered[:len(islands)]],
        "weakly_dominates_previous": bool(covered[len(islands)]) if previous else None,
        "evaluations": int(result.evaluations), "seconds": float(result.seconds),
        "hostnames": sorted({i["hostname"] for i in islands}),
        "front_uri": str(store / FRONT_FILE), "migrants_uri": migrants_uri, "artifact_uri": str(store),
        "workload": workload, "cluster": cluster,
        "history": history,
    }
    summary["jobs"] = island_jobs(workload, cluster, islands=len(islands), seed=seed, objectives=settings.objectives,
                                  emphasis=emphasis, round=round + 1, migrants=migrants_uri) \
        if round < rounds else []
    _store(folder, store, [FRONT_FILE, MIGRANTS_FILE], MERGED_FILE, summary)
    return summary


def _front_result(instance, settings, plans, stats, box, islands, previous):
    from apportion.core.islands import merged_result

    return merged_result(instance, settings, plans, stats, box=box,
                         evaluations=sum(i["evaluations"] for i in islands) + (previous or {}).get("evaluations", 0),
                         seconds=sum(i["seconds"] for i in islands) + (previous or {}).get("seconds", 0.0))


def record_islands(merged: Mapping[str, Any], *, population: int, generations: int, seed: int,
                   objectives: Sequence[str], select: str = "knee", islands: int, rounds: int,
                   scenario_params: Mapping[str, Any] | None = None, tracking_uri: str | None = None,
                   mlflow_conn_id: str | None = None, context: Mapping[str, Any] | None = None,
                   ref: AirflowRef | None = None, output_root: str | Path | None = None) -> dict:
    """Pick the plan from the final merged front and write plan.json, pareto.csv,
    schedule.csv and front.json into the run folder and store them (``artifact_uri``,
    ``plan_uri``); then log them, the settings, the merged front's and every
    island's figures (``island/<i>/hypervolume`` and ``island/<i>/pareto_size``, one step per
    round; ``merged/...`` likewise) to the DAG run's one MLflow run, and finish it.

    :param merged: the last ``merge_round`` summary.
    :param islands: K. :param rounds: the number of rounds.
    :param scenario_params: how the scenario was built (logged as ``scenario/<name>``).
    :param tracking_uri: MLflow tracking URI (else the connection or ``MLFLOW_TRACKING_URI``).
    :param mlflow_conn_id: Airflow connection naming the MLflow server.
    """
    from apportion.core.api import write_outputs
    from apportion.core.atomic import write_json
    from apportion.core.islands import reference_box
    from apportion.operators.hooks import DEFAULT_CONN_ID, ApportionMlflowHook
    from apportion.operators.reuse import plan_id
    from apportion.operators.warm_start import front_record

    ref = _ref(context, ref)
    folder, store = task_folders(ref, output_root=output_root)
    instance = _instance(merged["workload"], merged["cluster"])
    settings = _settings(population, generations, seed, objectives, select, instance.workload)
    front = _read_front(merged["front_uri"], instance, None)
    box = reference_box(instance, settings.objectives)
    result = _front_result(instance, settings, list(front.plans), front.stats, box, [], merged)
    paths = write_outputs(result, folder)
    chosen_id = plan_id(json.loads(paths["plan"].read_text()))
    write_json(folder / FRONT_FILE, front_record(result, chosen_id), indent=None)
    save_folder(folder, store, local_files_in(folder), last=PLAN_FILE)
    params, metrics, steps = _tracked_figures(result, merged, islands=islands, rounds=rounds,
                                              scenario_params=scenario_params)
    hook = ApportionMlflowHook(mlflow_conn_id or DEFAULT_CONN_ID, tracking_uri)
    with hook.upload_from(str(store)) as tracker:
        experiment_id = tracker.experiment_id(ref.dag_id)
        run_id, _ = tracker.dag_run(experiment_id, ref)
        try:
            tracker.set_tags(run_id, {**ref.task_tags(), "apportion.plan_id": chosen_id,
                                      "apportion.artifact_uri": str(store),
                                      "apportion.non_dominated": str(merged["non_dominated"]).lower(),
                                      "apportion.weakly_dominates_islands":
                                          str(merged["weakly_dominates_islands"]).lower()})
            tracker.log_params(run_id, params)
            tracker.log_metrics(run_id, metrics, steps)
            tracker.log_artifacts(run_id, folder)
        except Exception:
            tracker.finish(run_id, "FAILED")
            raise
        tracker.finish(run_id, "FINISHED")
        uri = tracker.tracking_uri
    return {
        "plan_id": chosen_id, "makespan": result.metrics["makespan"], "utilization": result.metrics["utilization"],
        "imbalance": result.metrics["imbalance"], "hypervolume": result.hypervolume,
        "pareto_size": result.pareto_size, "plan_uri": str(store / PLAN_FILE), "artifact_uri": str(store),
        "mlflow_run_id": run_id, "mlflow_experiment_id": experiment_id,
        "mlflow_run_url": run_url(uri, experiment_id, run_id),
        "mlflow_plan_url": artifact_url(uri, experiment_id, run_id, PLAN_FILE),
        "tracking_uri": without_credentials(uri),
    }


def _tracked_figures(result, merged: Mapping[str, Any], *, islands: int, rounds: int,
                     scenario_params: Mapping[str, Any] | None) -> tuple[dict, dict, list]:
    """(params, scalar metrics, step metrics) of an island search's MLflow run."""
    s, inst = result.settings, result.instance
    params = {
        "search/algorithm": "nsga2-islands", "search/islands": islands, "search/rounds": rounds,
        "search/population": s.population, "search/generations": s.generations, "search/seed": s.seed,
        "search/objectives": ",".join(s.objectives), "search/select": s.select,
        "instance/workload": inst.workload.name, "instance/cluster": inst.cluster.name,
        "instance/tasks": inst.n_tasks, "instance/nodes": inst.n_nodes,
        **{f"scenario/{k}": v for k, v in (scenario_params or {}).items() if v is not None},
    }
    metrics = {
        **{f"plan/{name}": value for name, value in result.metrics.items()},
        "search/hypervolume": result.hypervolume, "search/pareto_size": result.pareto_size,
        "search/evaluations": result.evaluations, "search/seconds": result.seconds,
        "merged/non_dominated": float(merged["non_dominated"]),
        "merged/weakly_dominates_islands": float(merged["weakly_dominates_islands"]),
    }
    steps = []
    for entry in merged["history"]:
        r = entry["round"]
        steps += [("merged/hypervolume", entry["hypervolume"], r), ("merged/pareto_size", entry["pareto_size"], r)]
        for i in entry["islands"]:
            steps += [(f"island/{i['island']}/hypervolume", i["hypervolume"], r),
                      (f"island/{i['island']}/pareto_size", i["pareto_size"], r),
                      (f"island/{i['island']}/seconds", i["seconds"], r)]
    return params, metrics, steps

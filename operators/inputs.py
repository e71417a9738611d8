"""Scenario inputs: the workload and cluster an allocation runs on, and its settings.

``build_workload`` builds the scenario once and writes workload.json (and the cluster as
built); ``snapshot_cluster`` writes the cluster the run allocates on, nodes down marked; ``resolve_inputs`` turns spec paths, spec dicts, upstream results or a scenario
name into (Workload, Cluster); ``make_settings`` turns operator arguments into
``core.api.Settings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from apportion.operators.storage import is_uri, put_file, task_folders

SCENARIO_KEYS = ("size", "nodes", "seed", "logical_date")


def _unwrap(value, key: str):
    """An upstream XCom dict ``{"workload": ..., "cluster": ...}`` -> its ``key`` entry."""
    if isinstance(value, Mapping) and key in value:
        return value[key]
    return value


def _load(kind: str, value):
    """A workload or cluster from a spec URI (an upstream result's, read through the storage
    root), a spec path or a spec dict."""
    from apportion.core import io

    loader = io.load_workload if kind == "workload" else io.load_cluster
    if is_uri(value):
        import tempfile

        from apportion.operators.storage import fetch

        with tempfile.TemporaryDirectory(prefix="apportion-spec-") as scratch:
            return loader(fetch(value, scratch))
    if isinstance(value, (str, os.PathLike)):
        return loader(Path(value))
    if isinstance(value, Mapping):
        return loader(value)
    from apportion.core.errors import SpecError

    raise SpecError(kind, f"give a spec path, a spec dict or an upstream result, got {type(value).__name__}")


def scenario_instance(scenario: str, params: Mapping[str, Any] | None = None):
    """(Workload, Cluster) of a built-in scenario; ``params``: size, nodes, seed, logical_date."""
    from apportion.core import scenarios

    return scenarios.build(scenario, **scenario_kwargs(params))


def scenario_kwargs(params: Mapping[str, Any] | None) -> dict:
    """The keyword arguments of ``core.scenarios.build`` in ``params`` (unset ones left out);
    ``core.scenarios`` checks their types and ranges."""
    from apportion.core.errors import SpecError

    kwargs = {key: value for key, value in dict(params or {}).items() if value not in (None, "")}
    unknown = set(kwargs) - set(SCENARIO_KEYS)
    if unknown:
        raise SpecError("scenario_params", f"unknown keys {sorted(unknown)}; use size, nodes, seed, logical_date")
    return kwargs


def check_flag(value, field: str) -> bool:
    """``value`` when it is a bool; a one-line ``SpecError`` naming ``field`` otherwise."""
    from apportion.core.errors import SpecError

    if not isinstance(value, bool):
        raise SpecError(field, f"must be true or false, got {value!r}")
    return value


def _node_names(value, field: str) -> tuple[str, ...]:
    """A list of node ids (empty when ``None``)."""
    from apportion.core.errors import SpecError

    if value is None:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(n, str) for n in value):
        return tuple(value)
    raise SpecError(field, f"give a list of node ids, got {value!r}")


def resolve_inputs(workload=None, cluster=None, *, scenario: str | None = None,
                   scenario_params: Mapping[str, Any] | None = None):
    """(Workload, Cluster) from specs, upstream results or a scenario; explicit specs win."""
    from apportion.core.errors import SpecError

    if isinstance(workload, Mapping) and "workload" in workload and cluster is None:
        cluster = workload.get("cluster")
    workload, cluster = _unwrap(workload, "workload"), _unwrap(cluster, "cluster")
    built = scenario_instance(scenario, scenario_params) if scenario and (workload is None or cluster is None) else None
    if workload is None and built is None:
        raise SpecError("workload", "give a workload spec, an upstream result or a scenario name")
    if cluster is None and built is None:
        raise SpecError("cluster", "give a cluster spec, an upstream result or a scenario name")
    w = _load("workload", workload) if workload is not None else built[0]
    c = _load("cluster", cluster) if cluster is not None else built[1]
    return w, c


def make_settings(*, algorithm=None, population=None, generations=None, seed=None, objectives=None, select=None,
                  robust_scenarios=0, noise_sigma=None):
    """``core.api.Settings`` (which checks every value) from operator arguments; ``None`` takes
    ``apportion.core.defaults``."""
    from apportion.core import defaults
    from apportion.core.api import Settings
    from apportion.core.errors import SpecError

    if isinstance(objectives, str):
        raise SpecError("objectives", f"give a list of objective names, got the string {objectives!r}")

    def given(value, default):
        return default if value is None else value

    return Settings(
        algorithm=given(algorithm, defaults.ALGORITHM), population=given(population, defaults.POPULATION),
        generations=given(generations, defaults.GENERATIONS), seed=given(seed, defaults.SEED),
        objectives=tuple(objectives) if objectives else defaults.DEFAULT_OBJECTIVES,
        select=given(select, defaults.SELECT), robust_scenarios=robust_scenarios,
        noise_sigma=given(noise_sigma, defaults.NOISE_SIGMA),
    )


def cluster_summary(cluster) -> dict[str, int]:
    """Node counts by kind, e.g. ``{"nodes": 12, "nodes_gpu": 4, "nodes_cpu": 8}``, and
    ``nodes_failed`` when nodes are down."""
    counts: dict[str, int] = {"nodes": len(cluster.nodes)}
    for node in cluster.nodes:
        counts[f"nodes_{node.kind}"] = counts.get(f"nodes_{node.kind}", 0) + 1
    failed = sum(node.failed for node in cluster.nodes)
    if failed:
        counts["nodes_failed"] = failed
    return counts


def build_workload(scenario: str, *, size: int | None = None, nodes: int | None = None, seed: int = 0,
                   logical_date: str | None = None, out_dir: str | Path | None = None,
                   context: Mapping[str, Any] | None = None) -> dict:
    """Build a scenario instance and write its workload as ``workload.json`` and its cluster,
    as built, as ``cluster.json`` (``snapshot_cluster`` starts from it, so a DAG run builds its
    scenario once).

    ``out_dir`` (a local folder) defaults to the current task's run folder, stored in the
    storage root. Returns ``{"workload": URI, "cluster": URI, "scenario", "tasks", "requests",
    "edges"}``.
    """
    from apportion.core.atomic import write_json
    from apportion.core.io import cluster_to_dict, workload_to_dict

    folder, store = _output_folders(out_dir, context)
    params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
    workload, cluster = scenario_instance(scenario, params)
    workload_uri = put_file(write_json(folder / "workload.json", workload_to_dict(workload), sort_keys=True),
                            store / "workload.json")
    cluster_uri = put_file(write_json(folder / "cluster.json", cluster_to_dict(cluster), sort_keys=True),
                           store / "cluster.json")
    return {"workload": workload_uri, "cluster": cluster_uri, "scenario": scenario, "tasks": len(workload.tasks),
            "requests": len(workload.requests), "edges": len(workload.edges)}


def _output_folders(out_dir: str | Path | None, context):
    """(local folder, stored folder): ``out_dir`` is both when given, else the task's folders."""
    from apportion.operators.storage import as_path

    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return Path(out_dir), as_path(out_dir)
    return task_folders(context=context)


def snapshot_cluster(cluster=None, *, scenario: str | None = None, nodes: int | None = None, seed: int = 0,
                     size: int | None = None, logical_date: str | None = None, nodes_down: Sequence[str] = (),
                     out_dir: str | Path | None = None, context: Mapping[str, Any] | None = None) -> dict:
    """Freeze the cluster this run allocates on as ``cluster.json``: a spec path, a spec dict
    or ``build_workload``'s result if given, else the scenario's cluster; the nodes named in ``nodes_down`` are marked failed
    (they take no work). Returns ``{"cluster": URI, "nodes", "nodes_<kind>"..., "nodes_down"}``."""
    from dataclasses import replace

    from apportion.core.atomic import write_json
    from apportion.core.errors import SpecError
    from apportion.core.io import cluster_to_dict

    folder, store = _output_folders(out_dir, context)
    cluster = _unwrap(cluster, "cluster")
    if cluster is not None:
        snapshot = _load("cluster", cluster)
    elif scenario:
        params = {"size": size, "nodes": nodes, "seed": seed, "logical_date": logical_date}
        snapshot = scenario_instance(scenario, params)[1]
    else:
        raise SpecError("cluster", "give a cluster spec or a scenario name")
    down = _node_names(nodes_down, "nodes_down")
    known = {node.id for node in snapshot.nodes}
    unknown = [name for name in down if name not in known]
    if unknown:
        raise SpecError("nodes_down", f"unknown nodes {unknown}; the cluster has {sorted(known)}")
    if down:
        snapshot = replace(snapshot, nodes=tuple(replace(n, failed=True) if n.id in down else n for n in snapshot.nodes))
    uri = put_file(write_json(folder / "cluster.json", cluster_to_dict(snapshot), sort_keys=True),
                   store / "cluster.json")
    return {"cluster": uri, **cluster_summary(snapshot), "nodes_down": sorted(set(down))}

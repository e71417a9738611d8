"""The ``apportion`` command line: optimise a plan, simulate it, re-plan it after a change,
validate a spec, write a scenario.

Commands that drive Airflow and MLflow (``demo``, ``compare``) are plug-ins: installed packages
publish them under the entry-point group ``apportion.commands``, so the core imports nothing
of Airflow, MLflow or ``apportion.operators``. Bad input ends a command with one readable line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

from apportion.core import defaults
from apportion.core.algorithms.registry import algorithm_names
from apportion.core.errors import SpecError, excerpt

COMMANDS_GROUP = "apportion.commands"
# Exit statuses: bad input; Ctrl-C (128 + SIGINT); stdout closed by its reader (128 + SIGPIPE).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# ``replan``'s search budget: smaller than a first plan's, the work left is smaller and time presses.
REPLAN_POPULATION = 50
REPLAN_GENERATIONS = 40


def _objectives(values: list[str]) -> tuple[str, ...]:
    """Accept ``--objectives makespan utilization`` and ``--objectives makespan,utilization``."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _check_select(settings) -> None:
    """The selection policy against the objectives (``weights:`` needs one weight each), before
    the search: ``pareto.select`` on a one-plan front runs the same checks the real choice does."""
    import numpy as np

    from apportion.core.evaluate import STAT_INDEX
    from apportion.core.pareto import select

    select(np.zeros((1, len(STAT_INDEX))), settings.objectives, settings.select)


def _output_set(args: argparse.Namespace):
    """The ``--out`` folder's ``OutputSet``: checked (and its staging folder made) before any work.
    The command's input files are never removed as stale outputs."""
    from apportion.core.outputs import OutputSet

    inputs = [getattr(args, name, None) for name in ("workload", "cluster", "plan", "calibration")]
    inputs += [*(getattr(args, "join", None) or ()), *(getattr(args, "urgent", None) or ())]
    return OutputSet(args.out, ["apportion", *args.argv], inputs=[path for path in inputs if path])


def _optimize(args: argparse.Namespace) -> int:
    from apportion.core.api import Settings, write_outputs
    from apportion.core.io import load_instance

    settings = Settings(algorithm=args.algorithm, population=args.population, generations=args.generations,
                        seed=args.seed, objectives=_objectives(args.objectives or defaults.DEFAULT_OBJECTIVES),
                        select=args.select, robust_scenarios=args.robust, robust_statistic=args.robust_statistic,
                        noise_sigma=args.noise_sigma, robust_validation=args.robust_validation)
    _check_select(settings)
    with _output_set(args) as outputs:
        instance = load_instance(args.workload, args.cluster)
        if args.calibration:
            instance = _calibrated(instance, args.calibration)
        if not args.objectives:  # every default list has three objectives: the checks above hold
            settings = replace(settings, objectives=defaults.objectives_for(instance.workload))
        result = _search(instance, settings, args)
        staged = write_outputs(result, outputs.staging)
        outputs.commit()
    return _print_optimized(result, {key: outputs.target(path.name) for key, path in staged.items()}, args)


def _calibrated(instance, path: str):
    """``instance`` on its cluster with the speeds and overheads of the calibration file at ``path``."""
    from apportion.core.calibrate import apply_calibration, load
    from apportion.core.model import Instance

    if not Path(path).is_file():
        raise SpecError("calibration", f"no such file: {excerpt(path)}")
    return Instance.build(instance.workload, apply_calibration(instance.cluster, load(path)))


def _search(instance, settings, args: argparse.Namespace):
    """``optimize`` with a progress bar of the generations on a terminal."""
    from apportion.core.api import optimize

    bar = None
    if sys.stderr.isatty() and not args.json and settings.algorithm in ("nsga2", "nsga3"):
        from tqdm import tqdm

        bar = tqdm(total=settings.generations, unit="gen", desc=settings.algorithm, file=sys.stderr)

    def progress(generation: int, record: dict) -> None:
        bar.update(generation - bar.n)
        bar.set_postfix(hv=f"{record.get('hypervolume', float('nan')):.3f}", refresh=False)

    try:
        return optimize(instance, settings, progress=progress if bar else None)
    finally:
        if bar:
            bar.close()


def _print_optimized(result, paths, args: argparse.Namespace) -> int:
    settings, instance, summary = result.settings, result.instance, result.summary()
    if args.json:
        print(json.dumps(_standard_json({**summary, "outputs": {k: str(v) for k, v in paths.items()}})))
        return 0
    from apportion.core.io import count_noun

    m = result.metrics
    print(f"{settings.algorithm} on {count_noun(instance.n_tasks, 'task')} / {count_noun(instance.n_nodes, 'node')}, "
          f"seed {settings.seed}: {count_noun(summary['pareto_size'], 'plan')} on the front, "
          f"{summary['evaluations']:,} evaluations in {summary['seconds']:.2f} s")
    print(f"chosen ({settings.select}): makespan {m['makespan']:.2f} s, utilization {m['utilization']:.3f}, "
          f"imbalance {m['imbalance']:.3f}, p95 response {m['p95_response']:.2f} s, "
          f"deadline misses {m['deadline_misses']}, hypervolume {summary['hypervolume']:.4f}")
    if result.robust_metrics is not None:
        r = result.robust_metrics
        validated = result.nominal_choice_robust_metrics is not None
        scenarios = settings.robust_validation if validated else settings.robust_scenarios
        print(f"robust ({settings.robust_statistic} over {scenarios} {'validation ' if validated else ''}scenarios, noise sigma "
              f"{settings.noise_sigma:g}): makespan {r['makespan']:.2f} s, utilization {r['utilization']:.3f}, "
              f"imbalance {r['imbalance']:.3f}")
        if validated:
            print(f"  the plan a nominal run picks: makespan {result.nominal_choice_robust_metrics['makespan']:.2f} s "
                  f"under the same noise")
    _print_outputs(summary["unroutable_edges"], paths)
    return 0


def _print_outputs(unroutable_edges: int, paths) -> None:
    """The warning for a plan that cannot run, then the files written."""
    if unroutable_edges:
        print(f"warning: this plan cannot run: {unroutable_edges} edges join nodes with no link between them",
              file=sys.stderr)
    for name, path in paths.items():
        print(f"  {name:<9} {path}")


def _validate(args: argparse.Namespace) -> int:
    """What the file holds; when it is wrong, every error found, each with its field path."""
    from apportion.core.io import describe
    from apportion.core.spec import SpecErrors

    try:
        print(describe(args.file))
    except SpecErrors as errors:
        _print_error(SpecError(args.file, f"{len(errors.errors)} errors"))
        for error in errors.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from datetime import datetime

    from apportion.core.io import dump
    from apportion.core.scenarios import build
    from apportion.core.spec import cluster_to_dict, workload_to_dict

    logical_date = None
    if args.logical_date:
        try:
            logical_date = datetime.fromisoformat(args.logical_date)
        except ValueError:
            raise SpecError("logical_date", f"not an ISO date-time: {excerpt(args.logical_date)}") from None
    with _output_set(args) as outputs:
        workload, cluster = build(args.name, size=args.size, nodes=args.nodes, seed=args.seed,
                                  logical_date=logical_date)
        dump(workload_to_dict(workload), outputs.path("workload.yaml"))
        dump(cluster_to_dict(cluster), outputs.path("cluster.yaml"))
        outputs.commit()
    print(f"{args.name}: {len(workload.tasks)} tasks, {len(workload.edges)} edges, {len(cluster.nodes)} nodes "
          f"-> {outputs.target('workload.yaml')}, {outputs.target('cluster.yaml')}")
    return 0


def _standard_json(value):
    """``api.standard_json``, imported when needed (``api`` brings NumPy in; the CLI starts without it)."""
    from apportion.core.api import standard_json

    return standard_json(value)


def _predicted(instance, plan) -> dict[str, float]:
    """The evaluator's value of each simulator metric for ``plan`` (everything goes to plan)."""
    import numpy as np

    from apportion.core.evaluate import Evaluator
    from apportion.core.metrics import plan_metrics
    from apportion.core.simulate import METRICS

    schedule = Evaluator(instance).schedule(plan)
    metrics = plan_metrics(instance, schedule)
    request_end = np.zeros(len(instance.request_ids))
    np.maximum.at(request_end, instance.request_of, schedule.end)
    response = request_end - instance.request_release
    predicted = {name: metrics[name] for name in METRICS if name in metrics}
    predicted.update(p99_response=float(np.percentile(response, 99)), completion_rate=1.0, stability=1.0,
                     failed_tasks=0.0, retried_tasks=0.0, moved_tasks=0.0)
    return {name: float(predicted[name]) for name in METRICS}


def _simulate(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from apportion.core.io import load_instance
    from apportion.core.outputs import csv_text
    from apportion.core.plan_file import read_plan
    from apportion.core.simulate import METRICS, Uncertainty, simulate

    uncertainty = Uncertainty(duration_sigma=args.noise_sigma, transfer_sigma=args.noise_sigma, mtbf=args.mtbf,
                              repair_mean=args.repair, failure_rule=args.failure_rule)
    outputs = {}
    with _output_set(args) if args.out else nullcontext() as output_set:
        instance = load_instance(args.workload, args.cluster)
        plan, _, _ = read_plan(args.plan, instance)
        predicted = _predicted(instance, plan)
        started = time.perf_counter()
        result = simulate(instance, plan, uncertainty, samples=args.samples, seed=args.seed)
        seconds = time.perf_counter() - started
        if output_set is not None:
            outputs["simulation"] = output_set.write_text("simulation.csv", csv_text(
                [["sample", *METRICS], *([s, *(repr(float(x)) for x in row)] for s, row in enumerate(result.values))]))
            output_set.commit()
    summary = result.summary()
    if args.json:
        print(json.dumps(_standard_json({
            "tasks": instance.n_tasks, "nodes": instance.n_nodes, "samples": result.samples, "seed": args.seed,
            "noise_sigma": args.noise_sigma, "mtbf": args.mtbf, "repair": args.repair,
            "failure_rule": args.failure_rule, "predicted": predicted, "realised": summary, "seconds": seconds,
            "outputs": {k: str(v) for k, v in outputs.items()},
        })))
        return 0
    print(f"{result.samples:,} samples of {args.plan} ({instance.n_tasks} tasks / {instance.n_nodes} nodes), "
          f"seed {args.seed}: noise sigma {args.noise_sigma:g}, mtbf {args.mtbf:g} s, repair {args.repair:g} s, "
          f"rule {args.failure_rule}; {seconds:.2f} s")
    print(f"{'metric':<16} {'predicted':>11} {'mean':>11} {'p5':>11} {'p50':>11} {'p95':>11}")
    for name in METRICS:
        row = summary[name]
        print(f"{name:<16} {predicted[name]:>11.4g} " + " ".join(f"{row[k]:>11.4g}" for k in ("mean", "p5", "p50", "p95")))
    for name, path in outputs.items():
        print(f"  {name:<10} {path}")
    return 0


class _FailAction(argparse.Action):
    """``--fail NODE`` and ``--repair SECONDS`` in command-line order: a repair belongs to the
    ``--fail`` before it."""

    def __call__(self, parser, namespace, values, option_string=None):
        events = list(getattr(namespace, self.dest) or [])
        events.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, events)


def _failures(events, instance) -> list:
    from apportion.core.replan import NodeFailure

    failures: list[NodeFailure] = []
    for option, value in events or ():
        if option == "fail":
            if value not in instance.node_ids:
                raise SpecError("fail", f"unknown node {excerpt(value)}; the cluster has {excerpt(list(instance.node_ids))}")
            if any(f.node == value for f in failures):
                raise SpecError("fail", f"node {excerpt(value)} named twice")
            failures.append(NodeFailure(value))
        else:
            if not failures or failures[-1].repair is not None:
                raise SpecError("repair", "give it after the --fail NODE it repairs (one per --fail)")
            if not math.isfinite(value) or value < 0:
                raise SpecError("repair", f"must be a finite number of seconds >= 0, got {excerpt(value)}")
            failures[-1] = NodeFailure(failures[-1].node, repair=value)
    return failures


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        return False


def _document(text: str, option: str):
    """A JSON/YAML document given as a file path or inline (read as a spec file is)."""
    from apportion.core.io import parse_yaml, read_document

    if _is_file(text):
        return read_document(text)
    try:
        doc = parse_yaml(text, option)
    except SpecError as error:
        raise SpecError(option, f"neither a file nor inline JSON/YAML: {error.reason}") from None
    if not isinstance(doc, dict):
        raise SpecError(option, f"neither a file nor an inline mapping: {excerpt(text)}")
    return doc


def _joins(values, cluster) -> list:
    """``--join`` values as ``NodeJoin`` changes. Each is a node mapping (``{id: gpu9, kind: gpu,
    ...}``), or ``{nodes: [...], links: [...]}``, as a file or inline; checked together with the
    cluster so that links may name its zones and nodes."""
    from apportion.core.replan import NodeJoin
    from apportion.core.spec import cluster_from_dict, cluster_to_dict

    joins = []
    for value in values or ():
        doc = _document(value, "join")
        doc = doc.get("cluster", doc)
        if not isinstance(doc, dict):
            raise SpecError("join", "must be a node mapping or a mapping with 'nodes' (and 'links')")
        nodes = doc.get("nodes", [doc])
        links = doc.get("links", [])
        if not isinstance(nodes, list) or not isinstance(links, list):
            raise SpecError("join", "'nodes' and 'links' must be lists")
        merged = cluster_to_dict(cluster)
        merged["nodes"] = merged["nodes"] + nodes
        merged["links"] = merged.get("links", []) + links
        joined = cluster_from_dict(merged)
        new_nodes = joined.nodes[len(cluster.nodes):]
        new_links = joined.links[len(cluster.links):]
        # residual_instance adds every link of every join; they travel with the first node.
        joins.extend(NodeJoin(node, new_links if i == 0 else ()) for i, node in enumerate(new_nodes))
        cluster = joined
    return joins


def _urgent(values, workload) -> list:
    """``--urgent`` workload files as ``UrgentRequests``. A JSON/YAML spec is checked together with
    the workload, so its edges may start at existing tasks; other formats are loaded alone."""
    from apportion.core.io import is_folder, load_workload, read_document
    from apportion.core.model import Workload
    from apportion.core.replan import UrgentRequests
    from apportion.core.spec import workload_from_dict, workload_to_dict

    changes = []
    for value in values or ():
        doc = None if is_folder(value) else read_document(value)
        if isinstance(doc, dict) and isinstance(doc.get("workload", doc), dict) and "tasks" in doc.get("workload", doc):
            doc = doc.get("workload", doc)
            merged = {**doc, "name": workload.name}
            base = workload_to_dict(workload)
            for key in ("tasks", "edges", "requests"):
                extra = doc.get(key, [])
                if not isinstance(extra, list):
                    raise SpecError(f"urgent.{key}", "must be a list")
                merged[key] = base.get(key, []) + extra
            combined = workload_from_dict(merged)
            urgent = Workload(tasks=combined.tasks[len(workload.tasks):], edges=combined.edges[len(workload.edges):],
                              requests=combined.requests[len(workload.requests):],
                              name=str(doc.get("name", "urgent")))
        else:
            urgent = load_workload(value)
        changes.append(UrgentRequests(urgent))
        workload = Workload(tasks=workload.tasks + urgent.tasks, edges=workload.edges + urgent.edges,
                            requests=workload.requests + urgent.requests, name=workload.name)
    return changes


def _describe_changes(changes) -> list[str]:
    from apportion.core.replan import NodeFailure, NodeJoin

    words = []
    for change in changes:
        if isinstance(change, NodeFailure):
            words.append(f"{change.node} fails" + ("" if change.repair is None else f" (back after {change.repair:g} s)"))
        elif isinstance(change, NodeJoin):
            words.append(f"{change.node.id} joins")
        else:
            words.append(f"{len(change.workload.tasks)} urgent tasks arrive")
    return words


def _replan(args: argparse.Namespace) -> int:
    from apportion.core.api import Settings, write_outputs
    from apportion.core.io import load_instance
    from apportion.core.plan_file import read_plan
    from apportion.core.replan import replan

    at = args.at
    if not math.isfinite(at) or at < 0:
        raise SpecError("at", f"must be a finite time >= 0 (seconds since the plan started), got {excerpt(at)}")
    settings = Settings(population=args.population, generations=args.generations, seed=args.seed,
                        objectives=_objectives(args.objectives or (*defaults.DEFAULT_OBJECTIVES, "migrations")),
                        select=args.select)
    _check_select(settings)
    with _output_set(args) as outputs:
        instance = load_instance(args.workload, args.cluster)
        if not args.objectives:
            settings = replace(settings, objectives=(*defaults.objectives_for(instance.workload), "migrations"))
        plan, start, end = read_plan(args.plan, instance)
        failures = _failures(args.fail, instance)
        changes = [*failures, *_joins(args.join, instance.cluster), *_urgent(args.urgent, instance.workload)]
        _check_work_left(instance, plan, at, start, end, failures, changes)
        started = time.perf_counter()
        residual, result = replan(instance, plan, at, changes, settings=settings, start=start, end=end)
        seconds = time.perf_counter() - started
        progress = _ReplanProgress(instance, plan, residual, result, failures, at, start, end)
        staged = write_outputs(result, outputs.staging)
        _stage_replan_files(outputs, result, progress, changes, args)
        outputs.commit()
    paths = {key: outputs.target(path.name) for key, path in staged.items()} | {"changes": outputs.target("changes.csv")}
    return _print_replanned(result, progress, changes, seconds, paths, args)


def _check_work_left(instance, plan, at, start, end, failures, changes) -> None:
    """Refuse a re-plan with nothing to place: every task started by ``at``, none lost, no new work."""
    import numpy as np

    from apportion.core.replan import UrgentRequests

    failed_nodes = np.isin(np.array(instance.node_ids)[plan.assignment], [f.node for f in failures])
    left = ((start >= at) | (failed_nodes & (at < end))).sum() + sum(
        len(c.workload.tasks) for c in changes if isinstance(c, UrgentRequests))
    if not left:
        raise SpecError("at", f"every task of the plan has started by {at:g} s and none is lost: nothing to re-plan")


class _ReplanProgress:
    """What happened to each task of the old plan (finished, running, lost, moved, kept, new),
    and the old plan carried over unchanged, for the report and changes.csv."""

    def __init__(self, instance, plan, residual, result, failures, at, start, end):
        import numpy as np

        from apportion.core.algorithms.heft import HeftAllocator
        from apportion.core.evaluate import Evaluator
        from apportion.core.replan import carry_over

        failed = {f.node for f in failures}
        n_old = self.n_old = instance.n_tasks
        self.residual, self.start = residual, start
        self.old_node = np.array(instance.node_ids)[plan.assignment]
        self.new = new = result.chosen
        self.new_node = np.array(residual.node_ids)[new.plan.assignment]
        self.pinned = pinned = residual.pinned_node >= 0
        finished = pinned & (residual.pinned_end <= at)
        lost = np.zeros(residual.n_tasks, dtype=bool)
        lost[:n_old] = np.isin(self.old_node, list(failed)) & (start < at) & (at < end)
        moved = np.zeros(residual.n_tasks, dtype=bool)
        moved[:n_old] = ~pinned[:n_old] & (self.new_node[:n_old] != self.old_node)
        status = np.full(residual.n_tasks, "new", dtype=object)
        status[:n_old] = "kept"
        status[moved] = "moved"
        status[lost] = "lost"
        status[pinned] = "running"
        status[finished] = "finished"
        self.status = status
        carried = carry_over(plan, instance, residual, HeftAllocator().build(residual))
        self.carried_makespan = Evaluator(residual).schedule(carried).stat("makespan")
        self.previous_makespan = float(end.max())
        self.at = at

    def changes_rows(self):
        """changes.csv: each task's status, old and new node, old and new times."""
        yield ["task", "status", "previous_node", "node", "previous_start", "start", "end"]
        for t in range(self.residual.n_tasks):
            old = t < self.n_old
            yield [self.residual.task_ids[t], self.status[t], self.old_node[t] if old else "", self.new_node[t],
                   repr(float(self.start[t])) if old else "", repr(float(self.new.start[t])),
                   repr(float(self.new.end[t]))]


def _stage_replan_files(outputs, result, progress: _ReplanProgress, changes, args: argparse.Namespace) -> None:
    """plan.json with what was re-planned, and changes.csv, beside write_outputs' files."""
    from apportion.core.api import plan_record
    from apportion.core.outputs import csv_text

    record = plan_record(result)
    record["replan"] = {"at": progress.at, "changes": _describe_changes(changes), "previous_plan": str(args.plan),
                        "previous_makespan": progress.previous_makespan,
                        "carried_over_makespan": progress.carried_makespan}
    outputs.write_text("plan.json", json.dumps(_standard_json(record), indent=2, allow_nan=False) + "\n")
    outputs.write_text("changes.csv", csv_text(progress.changes_rows()))


def _print_replanned(result, progress: _ReplanProgress, changes, seconds: float, paths, args) -> int:
    import numpy as np

    from apportion.core.evaluate import STAT_INDEX

    settings, at, status, pinned, new = result.settings, progress.at, progress.status, progress.pinned, progress.new
    previous_makespan, carried_makespan = progress.previous_makespan, progress.carried_makespan
    counts = {name: int(np.count_nonzero(status == name)) for name in ("finished", "running", "lost", "moved", "new")}
    report = {
        **result.summary(),
        "at": at,
        "changes": _describe_changes(changes),
        "previous_makespan": previous_makespan,
        "carried_over_makespan": carried_makespan,
        "pinned_tasks": int(pinned.sum()),
        "finished_tasks": counts["finished"],
        "running_tasks": counts["running"],
        "lost_tasks": counts["lost"],
        "new_tasks": counts["new"],
        "remaining_tasks": int((~pinned).sum()),
        "moved_tasks": counts["moved"],
        "migrations": int(new.stats[STAT_INDEX["moved"]]),
        "seconds": seconds,
        "search_seconds": result.seconds,
    }
    if args.json:
        print(json.dumps(_standard_json({**report, "outputs": {k: str(v) for k, v in paths.items()}})))
        return 0
    print(f"re-planned at {at:g} s: " + ("; ".join(report["changes"]) or "no change"))
    print(f"  tasks: {counts['finished']} finished and {counts['running']} running stay where they are; "
          f"{counts['lost']} lost on a failed node; {report['remaining_tasks']} placed again "
          f"({counts['new']} new); {counts['moved']} moved off their planned node "
          f"({report['migrations']} of them from a node that did not fail)")
    print(f"  makespan {report['makespan']:.2f} s (the old plan: {previous_makespan:.2f} s; carried over "
          f"unchanged: {carried_makespan:.2f} s), utilization {report['utilization']:.3f}, "
          f"imbalance {report['imbalance']:.3f}")
    print(f"  {settings.algorithm} {settings.population} x {settings.generations}: {report['pareto_size']} plans on "
          f"the front, {report['evaluations']:,} evaluations; re-planning took {seconds:.2f} s")
    _print_outputs(report["unroutable_edges"], paths)
    return 0


def _add_plugin_commands(subparsers) -> None:
    """Every command published under the entry-point group ``apportion.commands`` (a callable
    ``register(subparsers)``), in name order. One that fails to load or register is skipped with
    one warning line: the other commands keep working."""
    for entry_point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name):
        try:
            entry_point.load()(subparsers)
        except Exception as error:  # a broken plug-in must not take the core's commands down with it
            reason = (str(error).strip().splitlines() or [""])[0]
            print(f"apportion: warning: command {entry_point.name!r} ({entry_point.value}) skipped: "
                  f"{type(error).__name__}: {reason}", file=sys.stderr)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (a flag's is "off"); an option without one says
    what happens instead in its own words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if action.default is None:
            return f"{text} (default: none)"
        value = action.default
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    """The command line's parsers, plug-ins' included: defaults shown in every help, and a bad
    option reported as every bad input is, on one line (its value cut short)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        field, _, reason = message.removeprefix("argument ").partition(": ")
        error = SpecError(field, f"{reason} (see '{self.prog} --help')") if reason else SpecError(self.prog, message)
        _print_error(error)
        self.exit(EXIT_BAD_INPUT)


def _version() -> str:
    try:
        return version("apportion")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _add_search_options(parser: argparse.ArgumentParser, *, population: int, generations: int,
                        objectives_help: str) -> None:
    """The options ``optimize`` and ``replan`` share: budget, seed, objectives, how to pick a plan."""
    parser.add_argument("--population", type=int, default=population, metavar="N", help="NSGA-II population size")
    parser.add_argument("--generations", type=int, default=generations, metavar="N", help="NSGA-II generations")
    parser.add_argument("--seed", type=int, default=defaults.SEED, metavar="N",
                        help="random seed: the same seed on the same inputs gives the same plan, bit for bit")
    parser.add_argument("--objectives", nargs="+", metavar="NAME", help=objectives_help)
    parser.add_argument("--select", default=defaults.SELECT, metavar="POLICY",
                        help="how to pick one plan from the front: compromise (nearest the ideal point) | "
                             "knee (largest trade-off) | weights:a,b,c | sla:SECONDS")


def _add_optimize(sub) -> None:
    opt = sub.add_parser("optimize", help="find the trade-offs and pick a plan")
    opt.add_argument("workload", help="workload spec: JSON/YAML, WfFormat JSON, or a folder of CSV tables")
    opt.add_argument("cluster", help="cluster spec: JSON/YAML or a folder of CSV tables")
    algorithms = algorithm_names()
    opt.add_argument("--algorithm", default=defaults.ALGORITHM, choices=algorithms, metavar="NAME",
                     help="search or baseline that makes the plan: " + " ".join(algorithms))
    _add_search_options(opt, population=defaults.POPULATION, generations=defaults.GENERATIONS,
                        objectives_help="what to minimise (utilization is maximised), space or comma separated: "
                                        + " ".join(o for o in defaults.OBJECTIVES if o != "migrations")
                                        + "; default " + " ".join(defaults.DEFAULT_OBJECTIVES) + ", or "
                                        + " ".join(defaults.STREAMING_OBJECTIVES)
                                        + " when the workload's requests arrive over time (docs/metrics.md)")
    opt.add_argument("--robust", type=int, default=0, metavar="K",
                     help="score plans over K sampled noise scenarios (0: nominal; docs/robust.md)")
    opt.add_argument("--robust-statistic", default="p95", choices=("mean", "p95"),
                     help="aggregate over the scenarios: p95 of the time-like objectives, or the mean")
    opt.add_argument("--noise-sigma", type=float, default=defaults.NOISE_SIGMA, metavar="S",
                     help="lognormal sigma of task durations and transfers in the scenarios")
    opt.add_argument("--robust-validation", type=int, default=1000, metavar="N",
                     help="fresh scenarios the front is re-scored on before a plan is picked (robust mode)")
    opt.add_argument("--calibration", metavar="FILE",
                     help="plan with the node speeds and overheads of this calibration file (docs/calibration.md)")
    opt.add_argument("--out", default="out", metavar="DIR", help="folder for plan.json, pareto.csv, schedule.csv")
    opt.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    opt.set_defaults(run=_optimize)


def _add_simulate(sub) -> None:
    sim = sub.add_parser("simulate", help="enact a plan many times under noise and failures (docs/simulation.md)")
    sim.add_argument("workload", help="the workload the plan was made for")
    sim.add_argument("cluster", help="the cluster the plan was made for")
    sim.add_argument("plan", help="plan.json written by 'apportion optimize' or 'apportion replan'")
    sim.add_argument("--samples", type=int, default=defaults.SAMPLES, metavar="N", help="Monte Carlo samples")
    sim.add_argument("--seed", type=int, default=defaults.SEED, metavar="N", help="random seed of the samples")
    sim.add_argument("--noise-sigma", type=float, default=defaults.NOISE_SIGMA, metavar="S",
                     help="lognormal sigma (mean 1) on task durations and on transfers; 0: exact")
    sim.add_argument("--mtbf", type=float, default=math.inf, metavar="SECONDS",
                     help="mean time between failures of every node (default: inf, never fails)")
    sim.add_argument("--repair", type=float, default=60.0, metavar="SECONDS", help="mean repair time")
    sim.add_argument("--failure-rule", default="retry", choices=("retry", "backup"),
                     help="retry a lost task on its node once repaired, or move it to a backup node")
    sim.add_argument("--out", metavar="DIR",
                     help="write simulation.csv (one row per sample) into this folder (default: write nothing)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    sim.set_defaults(run=_simulate)


def _add_replan(sub) -> None:
    rep = sub.add_parser("replan", help="re-plan a plan in progress after a node fails or joins or urgent work "
                                        "arrives (docs/replanning.md)")
    rep.add_argument("workload", help="the workload the plan was made for")
    rep.add_argument("cluster", help="the cluster the plan was made for")
    rep.add_argument("plan", help="plan.json written by 'apportion optimize' (its start/end are the progress)")
    rep.add_argument("--at", type=float, required=True, metavar="SECONDS",
                     help="now, in seconds since the plan started: tasks started before it stay where they are")
    rep.add_argument("--fail", action=_FailAction, dest="fail", metavar="NODE",
                     help="this node fails at --at (repeatable); its running task is lost (default: no failure)")
    rep.add_argument("--repair", action=_FailAction, dest="fail", type=float, metavar="SECONDS",
                     help="the node of the --fail before it is back after this many seconds (default: never)")
    rep.add_argument("--join", action="append", metavar="NODE_SPEC",
                     help="a node joins at --at: a JSON/YAML file or inline mapping, e.g. "
                          "'{id: gpu9, kind: gpu, speed: 40, memory: 40, zone: cloud}', or "
                          "'{nodes: [...], links: [...]}' (repeatable; default: none)")
    rep.add_argument("--urgent", action="append", metavar="WORKLOAD_FILE",
                     help="urgent requests: a workload spec whose edges may start at existing tasks "
                          "(repeatable; default: none)")
    _add_search_options(rep, population=REPLAN_POPULATION, generations=REPLAN_GENERATIONS,
                        objectives_help="as for optimize; 'migrations' counts tasks moved off a node that still "
                                        "works; default optimize's default plus migrations")
    rep.add_argument("--out", default="replanned", metavar="DIR",
                     help="folder for plan.json, pareto.csv, schedule.csv, changes.csv")
    rep.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    rep.set_defaults(run=_replan)


def _add_validate_and_scenario(sub) -> None:
    val = sub.add_parser("validate", help="check a spec file and explain what is wrong")
    val.add_argument("file", help="workload and/or cluster spec (JSON/YAML), WfFormat JSON, or a folder of CSV tables")
    val.set_defaults(run=_validate)

    scn = sub.add_parser("scenario", help="write a generated scenario's workload and cluster specs")
    scn.add_argument("name", help="medical_diagnosis | traffic_prediction | multimodal_speech")
    scn.add_argument("--size", type=int, metavar="N", help="cases / regions / streams (default: the scenario's own)")
    scn.add_argument("--nodes", type=int, metavar="N", help="cluster nodes (default: the scenario's own)")
    scn.add_argument("--seed", type=int, default=defaults.SEED, metavar="N", help="random seed of the generator")
    scn.add_argument("--logical-date", metavar="ISO",
                     help="ISO date-time; traffic load follows the time of day (default: a Monday, 08:00)")
    scn.add_argument("--out", default="scenario", metavar="DIR", help="folder for workload.yaml and cluster.yaml")
    scn.set_defaults(run=_scenario)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="apportion", description="Decide where the steps of AI workflows run.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_optimize(sub)
    _add_simulate(sub)
    _add_replan(sub)
    _add_validate_and_scenario(sub)
    _add_plugin_commands(sub)
    return parser


def _print_error(error: SpecError) -> None:
    print(f"apportion: error: {error}", file=sys.stderr)


def _run(argv: list[str] | None) -> int:
    """Parse and run one command; bad input and Ctrl-C each end it with one line on stderr."""
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        return args.run(args)
    except SpecError as error:
        _print_error(error)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("apportion: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sys.stdout.flush()  # here, so that a closed stdout is met while main can still answer it


def main(argv: list[str] | None = None) -> int:
    """The ``apportion`` console script. A reader that closes stdout early (``| head``) ends the
    command quietly with the status a shell gives a process killed by SIGPIPE."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # Python flushes stdout once more on exit: point it at /dev/null so that it cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # a second Ctrl-C while the first was reported
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""Charts logged with each allocation: the Pareto front (plotly HTML + matplotlib PNG), a
Gantt chart of the chosen plan (with a failure drill's failure marked), the realised metrics of
simulated runs against the predicted ones, and the evolution of a workflow's runs over time.

Inputs are the CSV files the run folder already holds, so a chart can be redrawn from the
folder alone. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

MAX_LEGEND = 12


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, png_path: str | Path) -> Path:
    """Lay out ``fig``, write it as a PNG at ``png_path`` (its folder created) and close it."""
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    _pyplot().close(fig)
    return png_path


def _read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def pareto_charts(pareto_csv: str | Path, objectives: Sequence[str], html_path: str | Path,
                  png_path: str | Path, *, title: str = "Pareto front") -> tuple[Path, Path]:
    """The front over the first two objectives (colour: the third if any), chosen plan marked.
    An objective is read from its statistic's column (``migrations`` from ``moved``).

    The HTML is interactive (hover shows every objective) and embeds plotly.js (about 4.7 MB), so
    it opens offline, from a downloaded artifact or a server without internet access; the PNG is
    for quick looks in the MLflow artifact view.
    """
    import plotly.graph_objects as go

    from apportion.core.pareto import OBJECTIVES

    rows = _read_csv(pareto_csv)
    column = {n: OBJECTIVES[n][0] if n in OBJECTIVES else n for n in objectives}  # migrations -> moved
    names = list(objectives)[:3]
    x_name, y_name = names[0], names[1] if len(names) > 1 else names[0]
    colour = names[2] if len(names) > 2 else None
    values = {n: [float(r[column[n]]) for r in rows] for n in names}
    chosen = [int(r["chosen"]) == 1 for r in rows]
    hover = [", ".join(f"{n}={float(r[column[n]]):.4g}" for n in objectives) + f" (plan {r['plan']})" for r in rows]

    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=values[x_name], y=values[y_name], mode="markers", name="front", text=hover, hoverinfo="text",
        marker=dict(size=9, color=values[colour] if colour else None, colorscale="Viridis",
                    showscale=bool(colour), colorbar=dict(title=colour) if colour else None),
    ))
    picked = [i for i, c in enumerate(chosen) if c]
    fig.add_trace(go.Scatter(
        x=[values[x_name][i] for i in picked], y=[values[y_name][i] for i in picked], mode="markers",
        name="chosen plan", text=[hover[i] for i in picked], hoverinfo="text",
        marker=dict(size=16, symbol="star", color="red", line=dict(width=1, color="black")),
    ))
    fig.update_layout(title=title, xaxis_title=x_name, yaxis_title=y_name, template="plotly_white")
    html_path, png_path = Path(html_path), Path(png_path)
    fig.write_html(html_path, include_plotlyjs=True, full_html=True)

    plt = _pyplot()
    fig2, ax = plt.subplots(figsize=(6.4, 4.8))
    points = ax.scatter(values[x_name], values[y_name], c=values[colour] if colour else "tab:blue",
                        cmap="viridis", s=30, label="front")
    if colour:
        fig2.colorbar(points, ax=ax, label=colour)
    ax.scatter([values[x_name][i] for i in picked], [values[y_name][i] for i in picked], marker="*", s=250,
               c="red", edgecolors="black", label="chosen plan", zorder=3)
    ax.set(xlabel=x_name, ylabel=y_name, title=f"{title} ({len(rows)} plans)")
    ax.legend(loc="best")
    return html_path, _save_png(fig2, png_path)


def gantt_chart(schedule_csv: str | Path, png_path: str | Path, *, colour_by: str = "kind",
                title: str = "Chosen plan", failed_node: str | None = None, failure_time: float | None = None,
                back_at: float | None = None) -> Path:
    """One row per node, one bar per task from start to end, coloured by task ``kind``
    (or ``request``); with more than a dozen colours the legend is left out.

    A failure drill marks ``failure_time`` with a vertical line and shades ``failed_node``'s
    row from then until ``back_at`` (to the end of the chart when it never comes back)."""
    rows = _read_csv(schedule_csv)
    kinds = {r["node"]: r["node_kind"] for r in rows}
    if failed_node is not None:
        kinds.setdefault(failed_node, "")  # keep the failed node's row even when it runs nothing
    nodes = sorted(kinds, key=lambda n: (kinds[n], n))
    row_of = {n: i for i, n in enumerate(nodes)}
    groups = sorted({r[colour_by] for r in rows})
    plt = _pyplot()
    from matplotlib.patches import Patch

    cmap = plt.get_cmap("tab20" if len(groups) > 10 else "tab10")
    colour = {g: cmap(i % cmap.N) for i, g in enumerate(groups)}

    height = min(0.3 * len(nodes) + 1.5, 40)
    fig, ax = plt.subplots(figsize=(10, height))
    legend = []
    for group in groups:
        bars = [(float(r["start"]), float(r["duration"]), row_of[r["node"]]) for r in rows if r[colour_by] == group]
        for start, duration, y in bars:
            ax.barh(y, duration, left=start, height=0.8, color=colour[group], edgecolor="white", linewidth=0.3)
        legend.append(Patch(color=colour[group], label=group))
    legend = legend if len(groups) <= MAX_LEGEND else []
    if failure_time is not None:
        end = max([float(r["end"]) for r in rows] + [failure_time, back_at or 0.0])
        legend.append(ax.axvline(failure_time, color="red", linestyle="--", linewidth=1.2, label="failure"))
        if failed_node is not None:
            down_for = (back_at if back_at is not None else end) - failure_time
            ax.barh(row_of[failed_node], down_for, left=failure_time, height=1.0, color="red", alpha=0.18,
                    hatch="//", edgecolor="red", linewidth=0)
            legend.append(Patch(facecolor="red", alpha=0.18, hatch="//", edgecolor="red", label=f"{failed_node} down"))
    ax.set_yticks(range(len(nodes)))
    ax.set_yticklabels(nodes, fontsize=7 if len(nodes) > 30 else 9)
    ax.invert_yaxis()
    ax.set(xlabel="time (s)", ylabel="node", title=f"{title}: {len(rows)} tasks on {len(nodes)} nodes")
    if legend:
        ax.legend(handles=legend, title=colour_by, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return _save_png(fig, png_path)


def evolution_chart(table, columns: Sequence[str], png_path: str | Path, *, title: str, by: str) -> Path:
    """One panel per column against ``table["when"]`` (the logical date each run planned for), one
    marker series per value of ``by`` (the algorithm)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(columns), 1, figsize=(9, 2.0 * len(columns) + 0.8), sharex=True, squeeze=False)
    for ax, column in zip(axes[:, 0], columns, strict=True):
        for algorithm, runs in table.groupby(by, sort=True) if len(table) else []:
            ax.plot(runs["when"], runs[column], marker="o", linestyle="-", label=algorithm or "?")
        ax.set_ylabel(column.replace("_", " "), fontsize=9)
        ax.grid(alpha=0.3)
    if len(table):
        axes[0, 0].legend(title="algorithm", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        axes[0, 0].text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("logical date, else run start (UTC)")
    fig.autofmt_xdate()
    return _save_png(fig, png_path)


def simulation_chart(realised, predicted, png_path: str | Path, *, title: str) -> Path:
    """One histogram per metric of ``realised`` (name -> per-sample values; NaN samples left
    out) with the plan's ``predicted`` value as a vertical line and the realised p95 dotted."""
    import numpy as np

    plt = _pyplot()
    names = list(realised)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = np.asarray(realised[name], dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=min(40, max(5, values.size // 10)), color="tab:blue", alpha=0.75,
                    label=f"realised ({values.size} samples)")
            ax.axvline(np.percentile(values, 95), color="tab:blue", linestyle=":", linewidth=1.5, label="realised p95")
        if predicted.get(name) is not None:
            ax.axvline(float(predicted[name]), color="red", linewidth=2, label="predicted")
        ax.set(xlabel=f"{name.replace('_', ' ')} (s)", ylabel="samples")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save_png(fig, png_path)


def enactment_chart(rows: list[dict], png_path: str | Path, *, title: str) -> Path:
    """Left: each step instance's realised duration (executor overhead included) against the
    plan's predicted one, log-log, by step. Right: each unit's predicted and realised response."""
    plt = _pyplot()
    fig, (scatter, bars) = plt.subplots(1, 2, figsize=(11, 4.2))
    for step in dict.fromkeys(row["step"] for row in rows):
        mine = [row for row in rows if row["step"] == step]
        scatter.scatter([max(r["predicted_duration"], 1e-6) for r in mine], [r["realised_duration"] for r in mine],
                        label=step, s=28)
    scatter.set(xscale="log", yscale="log", xlabel="predicted duration (s, plan)",
                ylabel="realised duration (s, wall, overhead included)", title="per step instance")
    scatter.legend(fontsize=7)
    units = list(dict.fromkeys(row["unit"] for row in rows))
    predicted = [max(r["predicted_end"] for r in rows if r["unit"] == u)
                 - next(r["unit_release"] for r in rows if r["unit"] == u) for u in units]
    realised = [max(r["realised_end"] for r in rows if r["unit"] == u) for u in units]
    x = range(len(units))
    bars.bar([i - 0.2 for i in x], predicted, width=0.4, label="predicted (plan)", color="tab:red")
    bars.bar([i + 0.2 for i in x], realised, width=0.4, label="realised", color="tab:blue")
    bars.set(xticks=list(x), xticklabels=units, ylabel="response (s)", title="per unit")
    bars.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save_png(fig, png_path)

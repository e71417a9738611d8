"""The charts logged with each allocation: drawn from the run folder's CSV files alone."""

from __future__ import annotations

import numpy as np

from apportion.operators.charts import pareto_charts
from tests.operators.conftest import local


def test_the_gantt_marks_the_failure(allocation, tmp_path):
    """The chart is drawn from schedule.csv alone, the failed node's row kept even if empty."""
    from apportion.operators.charts import gantt_chart

    schedule = local(allocation["artifact_uri"]) / "schedule.csv"
    plain = gantt_chart(schedule, tmp_path / "plain.png")
    marked = gantt_chart(schedule, tmp_path / "marked.png", failed_node="spare/node-9", failure_time=100.0)
    import matplotlib.image as mpimg

    plain_px, marked_px = mpimg.imread(plain), mpimg.imread(marked)
    assert marked_px.shape[0] > plain_px.shape[0]  # one more node row
    red = (marked_px[..., 0] > 0.8) & (marked_px[..., 1] < 0.3) & (marked_px[..., 2] < 0.3)
    assert np.count_nonzero(red) > 50  # the dashed failure line


def test_the_pareto_html_works_offline(allocation, tmp_path):
    """plotly.js is embedded: no script is fetched from a CDN."""
    folder = local(allocation["artifact_uri"])
    html, png = pareto_charts(f"{folder}/pareto.csv", ["makespan", "utilization", "imbalance"], tmp_path / "p.html",
                              tmp_path / "p.png")
    text = html.read_text()
    assert "<script src=" not in text  # nothing loaded from elsewhere (the CDN before)
    assert "Plotly.newPlot" in text and len(text) > 1_000_000  # the library itself
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

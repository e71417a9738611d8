"""CSV files for people: cells a spreadsheet would run as a formula are written as text.

An id that starts with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is a formula to
Excel, LibreOffice and Google Sheets when the file is opened; a leading single quote makes it
text. Numbers stay numbers. Core writes its own CSVs (pareto.csv, schedule.csv); this is for
the ones the Airflow side writes (the benchmark's comparison.csv).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is a string a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` under a header of ``columns``, every cell through ``text_cell``, atomically."""
    from apportion.core.atomic import write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows({key: text_cell(value) for key, value in row.items()} for row in rows)
    return write_text(path, buffer.getvalue())

"""CSV cells a spreadsheet would run as formulas are written as text (core.outputs)."""

from __future__ import annotations

import csv

from apportion.core.outputs import spreadsheet_safe, write_csv_table


def test_formula_like_strings_get_a_quote_and_numbers_stay_numbers():
    cells = ("=HYPERLINK(\"x\")", "-cmd", "@SUM(A1)", "\tx", "+1", "-0.5", "nsga2", "", -5, 1.5)
    assert [spreadsheet_safe(cell) for cell in cells] == \
        ["'=HYPERLINK(\"x\")", "'-cmd", "'@SUM(A1)", "'\tx", "+1", "-0.5", "nsga2", "", -5, 1.5]


def test_a_written_table_reads_back_with_every_formula_neutralised(tmp_path):
    rows = [{"algorithm": "=1+1", "makespan": -2.5, "plan_id": "@abc"},
            {"algorithm": "heft", "makespan": 3}]
    path = write_csv_table(tmp_path / "t.csv", ("algorithm", "makespan", "plan_id"), rows)
    read = list(csv.DictReader(path.open(newline="")))
    assert read == [{"algorithm": "'=1+1", "makespan": "-2.5", "plan_id": "'@abc"},
                    {"algorithm": "heft", "makespan": "3", "plan_id": ""}]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left beside it

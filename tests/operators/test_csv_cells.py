"""CSV cells a spreadsheet would run as formulas are written as text."""

from __future__ import annotations

import csv

from apportion.operators.csv_cells import text_cell, write_csv


def test_formula_like_strings_get_a_quote_and_numbers_stay_numbers():
    assert [text_cell(v) for v in ("=HYPERLINK(\"x\")", "+1", "-cmd", "@SUM(A1)", "\tx", "nsga2", "", -5, 1.5)] == \
        ["'=HYPERLINK(\"x\")", "'+1", "'-cmd", "'@SUM(A1)", "'\tx", "nsga2", "", -5, 1.5]


def test_a_written_table_reads_back_with_every_formula_neutralised(tmp_path):
    rows = [{"algorithm": "=1+1", "makespan": -2.5, "plan_id": "@abc"}, {"algorithm": "heft", "makespan": 3,
                                                                         "plan_id": "b"}]
    path = write_csv(tmp_path / "t.csv", ("algorithm", "makespan", "plan_id"), rows)
    read = list(csv.DictReader(path.open(newline="")))
    assert read == [{"algorithm": "'=1+1", "makespan": "-2.5", "plan_id": "'@abc"},
                    {"algorithm": "heft", "makespan": "3", "plan_id": "b"}]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left beside it

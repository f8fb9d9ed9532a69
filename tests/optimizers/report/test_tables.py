"""optimizers.report.tables: the Markdown table and the JSON a report writes."""

from __future__ import annotations

import json

import pytest

from optimizers.report import COLUMNS, SET_COLUMN, SET_RIVAL


@pytest.mark.parametrize("parsing", ["lamp", "lenient"])
def test_table_and_json_say_how_answers_were_parsed(tmp_path, parsing):
    from optimizers.report import Report, SplitReport, write_report
    from persona_rag.tasks import PARSING_NOTES

    metrics = {column: {"MAE": 1.0, "RMSE": 1.5, "score": 0.5} for column in COLUMNS}
    split = SplitReport("test", 4, metrics, {"RSPG-Pre": 0.5}, {"MAE": 2.0, "RMSE": 2.5}, "Dense", {})
    protocol = {"val_rule": "latest"}
    write_report(Report("LaMP-3", {"test": split}, protocol, {}, {}, parsing=parsing), tmp_path)
    assert f"Parsing: {parsing} ({PARSING_NOTES[parsing]})." in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["parsing"] == parsing


def test_table_shows_the_set_row_and_its_differences_from_ropg_kd(tmp_path):
    from optimizers.report import Report, SplitReport, markdown_table

    metrics = {column: {"accuracy": 0.5, "F1": 0.4, "score": 0.5} for column in COLUMNS}
    difference = {"system": 0.6, "baseline": 0.5, "difference": 0.1, "low": 0.0, "high": 0.2,
                  "p_value": 0.04, "better": True}  # fmt: skip
    rival = {SET_COLUMN: {"accuracy": difference, "F1": difference}}
    split = SplitReport("test", 4, metrics, {}, {"accuracy": 0.1, "F1": 0.1}, "Dense", {}, {}, rival)
    table = markdown_table(Report("key-item", {"test": split}, {"val_rule": "latest"}, {}, {}))
    assert f"| {SET_COLUMN} |" in table.split(f"| vs {SET_RIVAL} (items scored one by one) |")[1]
    header = next(line for line in table.splitlines() if line.startswith("| metric |"))
    assert f"| {SET_COLUMN} |" in header  # a column of Table 3

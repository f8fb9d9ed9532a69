"""persona-rag report: the paper's Table 3 layout, Tables 4-5, a chart, and a resumable run."""

from __future__ import annotations

import json

import pytest

from optimizers.report import COLUMNS, ReportConfig, run_report
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.encoders import TextEncoder
from tests.optimizers.key_item_task import TASK, make_examples, reply


@pytest.mark.slow
def test_report_writes_table_3_and_repeats_nothing_when_run_again(scripted_lm, tmp_path):
    lm = scripted_lm(reply)
    program = PersonalizedRAG(
        task=TASK, retriever=DenseRetriever(encoder=TextEncoder()), generator=Generator(lm=lm), k=2
    )
    config = ReportConfig(
        output_dir=tmp_path / "report",
        train_examples=24,
        val_examples=8,
        candidates=6,
        ropg_epochs=1,
        rspg_epochs=1,
        gradient_accumulation_steps=1,
    )
    train, dev = make_examples(32, seed=1), make_examples(12, seed=2)
    report = run_report(program, trainset=train, devset=dev, config=config)

    assert list(report.metrics) == [*COLUMNS[:6], "RSPG-Pre", "RSPG-Post", "Oracle"]
    accuracy = {column: values["accuracy"] for column, values in report.metrics.items()}
    assert accuracy["NoPers"] == 0.0  # without the key item the scripted LLM never answers
    assert all(accuracy["Oracle"] >= value for value in accuracy.values())
    assert report.oracle_worst["accuracy"] <= min(accuracy.values())
    assert set(report.success_rate) == {"RSPG-Pre", "RSPG-Post"}
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| metric | " + " | ".join(COLUMNS) + " |" in table
    assert "| accuracy |" in table and "selection success rate" in table and "worst member" in table
    assert (tmp_path / "report" / "table.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report" / "report.json").read_text())["n"] == 12
    for stage in ("ropg-rl", "ropg-kd", "rspg-pre", "rspg-post"):
        assert (tmp_path / "report" / stage / "best").is_dir()

    # Run again (as after an interruption): trained stages resume finished, answers come from the
    # cache, so the LLM is not called once and the table is the same.
    requests = len(lm.engine.requests)
    again = run_report(program, trainset=train, devset=dev, config=config)
    assert len(lm.engine.requests) == requests
    assert again.metrics == report.metrics


@pytest.mark.parametrize("parsing", ["lamp", "lenient"])
def test_table_and_json_say_how_answers_were_parsed(tmp_path, parsing):
    import json

    from optimizers.report import COLUMNS, Report, write_report
    from persona_rag.tasks import PARSING_NOTES

    metrics = {column: {"MAE": 1.0, "RMSE": 1.5, "score": 0.5} for column in COLUMNS}
    success = {"RSPG-Pre": 0.5, "RSPG-Post": 0.25}
    report = Report("LaMP-3", 4, metrics, success, {"MAE": 2.0, "RMSE": 2.5}, {}, parsing=parsing)
    write_report(report, tmp_path)
    assert f"Parsing: {parsing} ({PARSING_NOTES[parsing]})." in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["parsing"] == parsing

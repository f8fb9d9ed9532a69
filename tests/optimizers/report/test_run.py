"""optimizers.report.run: Table 3 from every trained row, a resumable run, and the protocol's checks."""

from __future__ import annotations

import json

import pytest

from optimizers.report import (
    COLUMNS,
    FIXED_COLUMNS,
    ROPG_START,
    SET_COLUMN,
    SET_RIVAL,
    ReportConfig,
    run_report,
)
from optimizers.training import config_dict
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.encoders import TextEncoder
from persona_rag.errors import ConfigError
from tests.optimizers.key_item_task import TASK, make_examples, reply


@pytest.mark.slow
def test_report_writes_table_3_and_repeats_nothing_when_run_again(scripted_lm, tmp_path):
    lm = scripted_lm(reply)
    program = PersonalizedRAG(
        task=TASK, retriever=DenseRetriever(encoder=TextEncoder()), generator=Generator(lm=lm), k=2
    )
    config = ReportConfig(
        output_dir=tmp_path / "report",
        val_examples=8,
        candidates=6,
        ropg_epochs=1,
        rspg_epochs=1,
        gradient_accumulation_steps=1,
        resamples=200,
    )
    train = make_examples(32, seed=1)
    evalsets = {"test": make_examples(12, seed=2), "dev": make_examples(6, seed=3)}
    for split, examples in evalsets.items():  # distinct ids per split, as in LaMP files
        for example in examples:
            example["id"] = f"{split}-{example.id}"
    report = run_report(program, trainset=train, evalsets=evalsets, config=config)

    assert list(report.splits) == ["test", "dev"]
    test = report.splits["test"]
    assert test.n == 12 and list(test.metrics) == [*COLUMNS[:8], "RSPG-Pre", "RSPG-Post", "Oracle"]
    accuracy = {column: values["accuracy"] for column, values in test.metrics.items()}
    assert accuracy["NoPers"] == 0.0  # without the key item the scripted LLM never answers
    assert all(accuracy["Oracle"] >= value for value in accuracy.values())
    assert test.oracle_worst["accuracy"] <= min(accuracy.values())
    assert set(test.success_rate) == {"RSPG-Pre", "RSPG-Post"}
    assert test.baseline in FIXED_COLUMNS and test.baseline not in test.significance
    for tested in test.significance.values():
        accuracy_diff = tested["accuracy"]
        assert accuracy_diff["low"] <= accuracy_diff["difference"] <= accuracy_diff["high"]
        assert 0 < accuracy_diff["p_value"] <= 1
    assert set(test.against_start) == {"ROPG-RL", "ROPG-KD", SET_COLUMN}  # each against what it tuned
    assert set(test.against_rival) == {SET_COLUMN}  # the set against items scored one by one
    for column, tested in test.against_start.items():
        diff = tested["accuracy"]
        assert (diff["system"], diff["baseline"]) == (accuracy[column], accuracy[ROPG_START])
    assert report.protocol["ropg_train_questions"] == report.protocol["rspg_train_questions"] == 24
    assert report.protocol["val_questions"] == 8
    assert set(report.training) == {"ropg-rl", "ropg-kd", "set-pl", "rspg-pre", "rspg-post"}
    assert report.training["ropg-kd"]["steps"] > 0
    stages = ("ropg-rl", "ropg-kd", "set-pl", "rspg-pre", "rspg-post")
    rss = [report.training[stage]["peak_rss_gib"] for stage in stages]
    assert rss[0] > 0 and rss == sorted(rss)  # the process's peak so far: it only grows
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| metric | " + " | ".join(COLUMNS) + " |" in table
    assert "| accuracy |" in table and "selection success rate" in table and "worst member" in table
    assert f"| vs {ROPG_START} (ROPG's untuned start) |" in table
    assert f"| vs {SET_RIVAL} (items scored one by one) |" in table
    assert "### test: 12 questions" in table and "### dev: 6 questions" in table
    assert (tmp_path / "report" / "table.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report" / "report.json").read_text())["splits"]["dev"]["n"] == 6
    for stage in stages:
        assert (tmp_path / "report" / stage / "best").is_dir()
    # Every column's predictions name the member that answered and the items it retrieved.
    predictions = json.loads((tmp_path / "report" / "predictions-test.json").read_text())
    assert set(predictions) == set(test.metrics) - {"Oracle"}
    profiles = {ex.id: {str(item["id"]) for item in ex.profile} for ex in evalsets["test"]}
    for column, rows in predictions.items():
        assert [row["id"] for row in rows] == [ex.id for ex in evalsets["test"]]
        for row in rows:
            if row["retriever"] == "none":
                assert row["retrieved"] == []
            else:
                assert row["retrieved"] and set(row["retrieved"]) <= profiles[row["id"]], column
    column_of = {rows[0]["retriever"]: c for c, rows in predictions.items() if not c.startswith("RSPG")}
    for i, row in enumerate(predictions["RSPG-Post"]):  # the selector's answer is its member's
        assert row["retrieved"] == predictions[column_of[row["retriever"]]][i]["retrieved"]

    # Run again (as after an interruption): trained stages resume finished, answers come from the
    # cache, so the LLM is not called once and the table is the same.
    requests = len(lm.engine.requests)
    again = run_report(program, trainset=train, evalsets=evalsets, config=config)
    assert len(lm.engine.requests) == requests
    assert again.splits["test"].metrics == test.metrics
    # The cost table still shows what each stage cost when it ran, not zero calls and steps.
    for stage in stages:
        for key in ("feedback_calls", "feedback_calls_per_second", "steps", "steps_per_second"):
            assert again.training[stage][key] == report.training[stage][key], (stage, key)

    # Without the Set-PL row (its sets are the costliest stage on generation tasks) every other
    # column is the same, from the same cache, and the table leaves the row and its comparison out.
    config.set_pl = False
    without = run_report(program, trainset=train, evalsets=evalsets, config=config)
    assert len(lm.engine.requests) == requests
    assert list(without.splits["test"].metrics) == [c for c in test.metrics if c != SET_COLUMN]
    assert all(without.splits["test"].metrics[c] == test.metrics[c] for c in without.splits["test"].metrics)
    assert SET_COLUMN not in without.splits["test"].against_start and not without.splits["test"].against_rival
    assert "set-pl" not in without.training
    assert SET_COLUMN not in (tmp_path / "report" / "table.md").read_text()


def test_report_refuses_to_report_a_question_it_trained_or_validated_on(scripted_lm, tmp_path):
    program = PersonalizedRAG(
        task=TASK, retriever=DenseRetriever(), generator=Generator(lm=scripted_lm(reply))
    )
    train = make_examples(16, seed=1)
    with pytest.raises(ValueError, match="also in the reported split"):
        run_report(
            program,
            trainset=train,
            evalsets={"dev": train[-4:]},
            config=ReportConfig(output_dir=tmp_path / "r", val_examples=4),
        )
    assert not (tmp_path / "r" / "ropg-rl").exists()  # refused before any training


def test_set_pl_trains_on_ropgs_questions_and_validation(scripted_lm, tmp_path, monkeypatch):
    """The Set-PL row is trained on exactly the questions and validation ROPG's rows are (the
    selectors come after; the run is stopped there)."""
    from optimizers.report import run as report_module

    seen = {}

    def recorder(name):
        def compile(self, student, *, trainset, valset):
            seen[name] = ([e.id for e in trainset], [e.id for e in valset], type(self.config).__name__)
            return student

        return compile

    for name, optimizer_class in (("ropg-rl", report_module.ROPG_RL), ("ropg-kd", report_module.ROPG_KD),
                                  ("set-pl", report_module.SetPL)):  # fmt: skip
        monkeypatch.setattr(optimizer_class, "compile", recorder(name))
    monkeypatch.setattr(
        report_module.RSPG, "compile", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    program = PersonalizedRAG(
        task=TASK, retriever=DenseRetriever(), generator=Generator(lm=scripted_lm(reply))
    )
    test = make_examples(4, seed=2)
    for example in test:
        example["id"] = f"test-{example.id}"
    config = ReportConfig(output_dir=tmp_path / "r", val_examples=4, train_examples=10, candidates=6)
    with pytest.raises(KeyboardInterrupt):
        run_report(program, trainset=make_examples(16, seed=1), evalsets={"test": test}, config=config)
    assert seen["set-pl"][:2] == seen["ropg-kd"][:2] == seen["ropg-rl"][:2]
    assert len(seen["set-pl"][0]) == 10 and len(seen["set-pl"][1]) == 4
    assert seen["set-pl"][2] == "SetPLConfig"


@pytest.mark.parametrize(
    "bad", [{"candidates": 1}, {"val_examples": 0}, {"kd_signal": "eval"}, {"rspg_learning_rate": 0}]
)
def test_report_settings_are_checked_before_any_stage_runs(bad):
    [name] = bad
    with pytest.raises(ConfigError, match=f"^ReportConfig: {name}="):
        ReportConfig(**bad)


def test_a_report_given_trained_encoders_writes_its_settings_as_json(tmp_path):
    """``--ropg-kd DIR`` puts paths inside a dict of the settings, which ``config.json`` must hold."""
    config = ReportConfig(output_dir=tmp_path, ropg_checkpoints={"ropg-kd": tmp_path / "kd" / "best"})
    written = json.loads(json.dumps(config_dict(config)))
    assert written["ropg_checkpoints"] == {"ropg-kd": str(tmp_path / "kd" / "best")}

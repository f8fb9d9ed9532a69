"""The persona-rag command: evaluate, index, demo, and clear errors."""

from __future__ import annotations

import json

import pytest

from persona_rag.cli import main
from persona_rag.store import ProfileStore


@pytest.mark.slow
def test_evaluate_writes_a_results_file(sample_task, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(
        [
            "evaluate",
            "--data",
            str(sample_task),
            "--split",
            "dev",
            "--limit",
            "6",
            "--retriever",
            "none,bm25",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = json.loads(out.read_text())
    names = [r["name"] for r in saved["results"]]
    assert names == ["none", "bm25", "oracle (best member)", "oracle (worst member)"]
    assert saved["answer_extraction"] == "first-line" and saved["label_normalization"] in ("sum", "mean")
    members, (best, worst) = saved["results"][:2], saved["results"][2:]
    for result in members:
        assert result["n"] == 6 and set(result["metrics"]) == {"MAE", "RMSE"}
        assert all(p["output"] in {"1", "2", "3", "4", "5"} for p in result["predictions"])
    # Picking per question the better (worse) member's answer bounds every selector over the pool.
    assert best["metrics"]["MAE"] <= min(r["metrics"]["MAE"] for r in members)
    assert worst["metrics"]["MAE"] >= max(r["metrics"]["MAE"] for r in members)
    assert "MAE" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_with_a_selector_reports_success_rate_and_bounds(sample_task, tmp_path):
    from persona_rag.selector import Selector

    state = tmp_path / "selector.json"
    state.write_text(json.dumps(Selector(pool=["recency", "bm25"], mode="post").dump_state()))
    out = tmp_path / "results.json"
    args = [
        "evaluate",
        "--data",
        str(sample_task),
        "--limit",
        "6",
        "--selector",
        str(state),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert list(results) == [
        "recency",
        "bm25",
        "selector (post)",
        "oracle (best member)",
        "oracle (worst member)",
    ]
    selected = results["selector (post)"]
    # Untrained, the selector takes the first member: its answers are recency's.
    assert [p["retriever"] for p in selected["predictions"]] == ["recency"] * 6
    assert [p["output"] for p in selected["predictions"]] == [
        p["output"] for p in results["recency"]["predictions"]
    ]
    assert 0.0 <= selected["metrics"]["success_rate"] <= 1.0
    assert results["oracle (best member)"]["metrics"]["success_rate"] == 1.0


def test_answer_reading_options_reach_the_generator():
    from persona_rag.cli import _generator, build_parser

    args = build_parser().parse_args(
        ["evaluate", "--data", "d", "--label-normalization", "mean", "--answer-extraction", "none"]
    )
    generator = _generator(args)
    assert (generator.label_normalization, generator.answer_extraction) == ("mean", "none")
    args = build_parser().parse_args(["evaluate", "--data", "d", "--label-normalization", "sum"])
    assert (_generator(args).label_normalization, _generator(args).answer_extraction) == ("sum", "first-line")


def test_retriever_specs_are_checked(tmp_path):
    import argparse

    from persona_rag.cli import retriever_list

    assert retriever_list(f"BM25, tuned={tmp_path}") == ["bm25", f"tuned={tmp_path}"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown"):
        retriever_list("bm25,colbert")
    with pytest.raises(argparse.ArgumentTypeError, match="no encoder checkpoint"):
        retriever_list(f"tuned={tmp_path / 'missing'}")
    with pytest.raises(argparse.ArgumentTypeError, match="distinct"):
        retriever_list(f"dense,dense={tmp_path}")


def test_index_loads_profiles_into_the_store(sample_task, tmp_path):
    assert main(["index", "--data", str(sample_task), "--split", "dev", "--store", str(tmp_path / "s")]) == 0
    store = ProfileStore(tmp_path / "s", task="LaMP-3")
    assert len(store.users()) == 12
    # Each user holds the union of their questions' profiles.
    assert all(store.count(user) > 0 for user in store.users())


def test_unknown_task_is_a_clear_error(sample_task, capsys):
    assert main(["index", "--data", str(sample_task), "--task", "LaMP-9", "--store", "/tmp/x"]) == 2
    assert "unknown task 'LaMP-9'" in capsys.readouterr().err


def test_malformed_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "dev_questions.json").write_text('[{"id": "1", "input": "x", "profile": [}]')
    assert main(["index", "--data", str(tmp_path), "--task", "LaMP-3", "--store", str(tmp_path / "s")]) == 2
    assert "dev_questions.json" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_compares_all_retrievers(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--users", "2"]) == 0
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    names = [r["name"] for r in saved["results"]]
    assert names == [
        "none",
        "random",
        "recency",
        "bm25",
        "dense",
        "dense (Chroma store)",
        "dense + ROPG-KD (2 epochs)",
    ]
    assert (tmp_path / "ropg-kd" / "best" / "model.safetensors").exists()
    assert all(r["n"] == 6 and "MAE" in r["metrics"] for r in saved["results"])

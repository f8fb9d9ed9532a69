"""The persona-rag command: evaluate, index, demo, and clear errors."""

from __future__ import annotations

import json

import pytest

from persona_rag.cli import main
from persona_rag.data import load_lamp
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


def test_index_stores_each_users_history_and_reads_back_each_questions_profile(sample_task, tmp_path):
    assert main(["index", "--data", str(sample_task), "--split", "dev", "--store", str(tmp_path / "s")]) == 0
    store = ProfileStore(tmp_path / "s", task="LaMP-3")
    split = load_lamp(sample_task, "dev")
    history = {}
    for question in split.questions:
        history.setdefault(question.user_id, set()).update(item.id for item in question.profile)
    assert sorted(store.users()) == sorted(history)
    assert all(store.count(user) == len(ids) for user, ids in history.items())
    for question in split.questions:
        # A user's later questions hold this question's answer; reading by its own ids never shows it.
        profile = [item.model_dump(exclude_none=True) for item in question.profile]
        docs = store.documents(question.user_id, ids=[item["id"] for item in profile])
        assert [dict(doc.item) for doc in docs] == profile


@pytest.mark.slow
def test_evaluate_through_the_store_equals_evaluate_with_profiles(sample_task, tmp_path):
    # The first 6 questions are 2 users' 3 questions each: each later profile holds the earlier gold.
    store = str(tmp_path / "store")
    assert main(["index", "--data", str(sample_task), "--limit", "6", "--store", store]) == 0
    evaluate = ["evaluate", "--data", str(sample_task), "--limit", "6", "--retriever", "bm25,dense,recency"]
    assert main([*evaluate, "--out", str(tmp_path / "memory.json")]) == 0
    assert main([*evaluate, "--store", store, "--out", str(tmp_path / "store.json")]) == 0
    memory, stored = (
        json.loads((tmp_path / f"{run}.json").read_text())["results"] for run in ("memory", "store")
    )
    assert [r["name"] for r in stored] == [r["name"] for r in memory]
    for by_memory, by_store in zip(memory, stored):
        assert by_store["predictions"] == by_memory["predictions"]
        assert by_store["metrics"] == by_memory["metrics"]


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

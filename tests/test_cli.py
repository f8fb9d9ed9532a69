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
    assert [r["name"] for r in saved["results"]] == ["none", "bm25"]
    for result in saved["results"]:
        assert result["n"] == 6 and set(result["metrics"]) == {"MAE", "RMSE"}
        assert all(p["output"] in {"1", "2", "3", "4", "5"} for p in result["predictions"])
    assert "MAE" in capsys.readouterr().out


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

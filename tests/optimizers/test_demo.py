"""``persona-rag demo`` at toy size: one row per method on held-out questions, the chart, the JSON,
the printed table equal to the JSON, and a second run that reuses every trained stage."""

from __future__ import annotations

import http.server
import json
import re
import threading

import pytest

from optimizers.demo.config import ROW_NAMES
from optimizers.feedback import Feedback
from optimizers.training import Trainer
from persona_rag.cli import main
from persona_rag.data import load_lamp


@pytest.mark.slow
def test_tiny_demo_rows_chart_json_and_cached_rerun(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # table rows on one line each
    out = tmp_path / "first"
    assert main(["demo", "--tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "demo_results.json").read_text())
    names = [r["name"] for r in saved["results"]]
    assert names == [*ROW_NAMES.values(), "oracle (best member)"]
    test_ids = {q.id for q in load_lamp(out / "data", "test")}
    train_ids = {q.id for q in load_lamp(out / "data", "train")}
    for result in saved["results"][:-1]:
        assert {p["id"] for p in result["predictions"]} == test_ids  # held-out questions only
    assert test_ids.isdisjoint(train_ids)
    # Every personalised row names the items it retrieved, from the question's own profile; the
    # store row the same items as Dense (it holds whole histories, limited per question); the
    # selector's row the member it chose and that member's items.
    rows = {r["name"]: {p["id"]: p for p in r["predictions"]} for r in saved["results"][:-1]}
    profiles = {q.id: {str(item.id) for item in q.profile} for q in load_lamp(out / "data", "test")}
    for name, predictions in rows.items():
        for question, prediction in predictions.items():
            if prediction["retriever"] == "none":  # NoPers, or the selector choosing it
                assert prediction["retrieved"] == []
            else:
                assert prediction["retrieved"] and set(prediction["retrieved"]) <= profiles[question], name
    store, dense = rows[ROW_NAMES["store"]], rows[ROW_NAMES["dense"]]
    assert all(set(store[q]["retrieved"]) == set(dense[q]["retrieved"]) for q in test_ids)
    for question, prediction in rows[ROW_NAMES["rspg-post"]].items():
        member = rows[ROW_NAMES[prediction["retriever"]]][question]
        assert prediction["retrieved"] == member["retrieved"]
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out / "demo.png") in printed.replace("\n", "") or "demo.png" in printed
    assert saved["summary"] in " ".join(printed.split())
    # The claim against Dense is the paired test's, printed as its own table.
    tested = {name: saved["against_dense"][name]["MAE"] for name in ("ROPG-KD", "RSPG-Post")}
    assert all(0 < t["p_value"] <= 1 and t["low"] <= t["difference"] <= t["high"] for t in tested.values())
    claimed = [name for name, t in tested.items() if t["better"]]
    assert f"better than untuned Dense (paired, p < 0.05): {', '.join(claimed) or 'none'}" in saved["summary"]
    assert "paired differences from Dense" in printed
    assert saved["wall_seconds"] > 0 and saved["peak_rss_gib"] > 0
    assert f"peak memory {saved['peak_rss_gib']:.2f} GiB" in printed
    assert set(saved["stage_seconds"]) == {"reader", "ROPG-KD", "RSPG-Post", "test answers"}
    assert 0 < sum(saved["stage_seconds"].values()) <= saved["wall_seconds"]
    for result in saved["results"]:  # the printed table shows the JSON's numbers
        rows = [line.strip() for line in printed.splitlines() if re.search(r"\d+\.\d{4}", line)]
        row = next(line for line in rows if line.startswith(result["name"]))
        shown = [float(x) for x in re.findall(r"\d+\.\d{4}", row)]
        assert shown[:2] == [round(result["metrics"]["MAE"], 4), round(result["metrics"]["RMSE"], 4)]

    # A second run, in a renamed folder (the stages are keyed by what they are made from, and
    # selector.json names its checkpoints relative to itself), trains nothing and asks the LLM
    # for nothing new.
    out = out.rename(tmp_path / "second")

    def no_training(*args, **kwargs):
        raise AssertionError("a second run trained again")

    monkeypatch.setattr(Trainer, "fit", no_training)
    monkeypatch.setattr(Feedback, "_answer", no_training)  # every LLM answer is cached
    assert main(["demo", "--tiny", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "reusing the fine-tuned checkpoint" in again
    assert "tuned the dense retriever" not in again and "trained the selector" not in again
    rerun = json.loads((out / "demo_results.json").read_text())
    assert [r["metrics"] for r in rerun["results"]] == [r["metrics"] for r in saved["results"]]


class _ReadingServer(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible chat server whose 'model' answers the most common score in its prompt's
    profile items (3 without items): a reader that reads, so the feedback has signal."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        scores = re.findall(r"(\d) is the score for", prompt)
        answer = max(set(scores), key=scores.count) if scores else "3"
        message = {"role": "assistant", "content": answer}
        reply = json.dumps({
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        """Quiet."""


@pytest.mark.slow
def test_tiny_demo_against_an_openai_compatible_server(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-cache"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ReadingServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        code = main(["demo", "--tiny", "--out", str(tmp_path), "--lm", "openai/reader", "--api-base", url,
                     "--api-key", "none"])  # fmt: skip
    finally:
        server.shutdown()
    assert code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "applies to local models only" in printed
    assert not (tmp_path / "reader").exists()
    saved = json.loads((tmp_path / "demo_results.json").read_text())
    assert [r["name"] for r in saved["results"]] == [*ROW_NAMES.values(), "oracle (best member)"]
    assert saved["model"] == "openai/reader"

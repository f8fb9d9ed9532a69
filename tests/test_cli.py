"""The persona-rag command: evaluate, index, and clear errors (the demo: tests/optimizers/test_demo.py)."""

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
    from persona_rag.cli import build_parser
    from persona_rag.cli_options import build_generator as _generator

    args = build_parser().parse_args(
        ["evaluate", "--data", "d", "--label-normalization", "mean", "--answer-extraction", "none"]
    )
    generator = _generator(args)
    assert (generator.label_normalization, generator.answer_extraction) == ("mean", "none")
    args = build_parser().parse_args(["evaluate", "--data", "d", "--label-normalization", "sum"])
    assert (_generator(args).label_normalization, _generator(args).answer_extraction) == ("sum", "first-line")


def test_retriever_specs_are_checked(tmp_path):
    import argparse

    from persona_rag.cli_types import retriever_list

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


# ------------------------------------------------------------------ errors a user sees: one line
def scripted_reader(monkeypatch, scripted_lm, reply):
    """Every command's generator answers ``reply`` (a server-style LM; no model is loaded)."""
    from persona_rag import cli_options
    from persona_rag.generator import Generator

    monkeypatch.setattr(cli_options, "build_generator", lambda args: Generator(lm=scripted_lm(reply)))


def assert_one_line_error(capsys, *fragments) -> str:
    """The one line of the error on stderr, holding every fragment."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("persona-rag")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--limit", "-34", "must be 1 or more, got -34"),
        ("--limit", "0", "must be 1 or more, got 0"),
        ("--k", "0", "must be 1 or more, got 0"),
        ("--k", "-1", "must be 1 or more, got -1"),
        ("--batch-size", "two", "'two' is not a whole number"),
        ("--timeout", "-5", "must be above 0"),
    ],
)
def test_bad_counts_are_refused_before_any_model_loads(
    sample_task, monkeypatch, capsys, option, value, message
):
    from persona_rag import cli_options

    monkeypatch.setattr(cli_options, "build_generator", lambda args: pytest.fail("a model was loaded"))
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--data", str(sample_task), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("persona-rag evaluate: error: ")  # one line
    assert f"argument {option}: {message}" in err and "persona-rag evaluate --help" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--method", "kd", "--epochs", "0"],
        ["train", "--method", "rl", "--max-examples", "-1"],
        ["train", "--method", "kd", "--patience", "-1"],
        ["train", "--method", "set", "--entropy-weight", "-1"],
        ["select", "--mode", "pre", "--lr", "0"],
        ["report", "--splits", "test:-34"],
        ["finetune", "--k", "0"],
    ],
)
def test_training_commands_refuse_bad_counts(sample_task, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--data", str(sample_task)])
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err


def evaluate_args(data, out, *extra):
    return ["evaluate", "--data", str(data), "--limit", "4", "--retriever", "none", "--out", str(out), *extra]


def test_results_say_how_answers_were_parsed(sample_task, tmp_path, monkeypatch, scripted_lm, capsys):
    scripted_reader(monkeypatch, scripted_lm, "I think 3")
    assert main(evaluate_args(sample_task, tmp_path / "lamp.json")) == 0
    assert "parsing=lamp" in capsys.readouterr().out  # the table's caption
    assert main(evaluate_args(sample_task, tmp_path / "lenient.json", "--lenient-parsing")) == 0
    assert "parsing=lenient" in capsys.readouterr().out
    lamp = json.loads((tmp_path / "lamp.json").read_text())
    lenient = json.loads((tmp_path / "lenient.json").read_text())
    assert (lamp["parsing"], lenient["parsing"]) == ("lamp", "lenient")
    assert lamp["results"][0]["parsing"] == "lamp"
    # LaMP reads "I think 3" as no number (the farther end of the scale); leniently it is 3.
    assert {p["output"] for p in lamp["results"][0]["predictions"]} == {"I think 3"}
    assert {p["output"] for p in lenient["results"][0]["predictions"]} == {"3"}
    golds = [float(p["gold"]) for p in lamp["results"][0]["predictions"]]
    farther = [5.0 if abs(1 - g) <= abs(5 - g) else 1.0 for g in golds]
    assert lamp["results"][0]["metrics"]["MAE"] == pytest.approx(
        sum(abs(f - g) for f, g in zip(farther, golds)) / 4
    )
    assert lenient["results"][0]["metrics"]["MAE"] == pytest.approx(sum(abs(3 - g) for g in golds) / 4)


def training_args(command, data, tmp_path, *extra):
    return [
        command,
        *extra,
        "--data",
        str(data),
        "--max-examples",
        "4",
        "--max-val-examples",
        "2",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--feedback-cache",
        str(tmp_path / "feedback.sqlite"),
    ]


def test_ropg_without_a_signal_is_one_line_with_what_to_do(
    sample_task, tmp_path, monkeypatch, scripted_lm, capsys
):
    # A reader that answers "3" whatever it reads: every candidate document ties.
    scripted_reader(monkeypatch, scripted_lm, "3")
    argv = training_args("train", sample_task, tmp_path, "--method", "kd", "--candidates", "2")
    assert main(argv) == 2
    # With a server-style reader the default signal is the metric alone, which ties everywhere here;
    # the server gives no log-probabilities, so the advice does not offer the likelihood signals.
    line = assert_one_line_error(
        capsys, "persona-rag: error: ROPG_KD: no training example", "--model", "no log-probabilities"
    )
    assert "--signal" not in line


def test_rspg_without_a_preference_is_one_line_with_what_to_do(
    sample_task, tmp_path, monkeypatch, scripted_lm, capsys
):
    scripted_reader(monkeypatch, scripted_lm, "3")
    argv = training_args("select", sample_task, tmp_path, "--mode", "pre", "--pool", "none,recency")
    assert main(argv) == 2
    line = assert_one_line_error(capsys, "persona-rag: error: RSPG: on every training example", "--model")
    assert "--signal" not in line and "no log-probabilities" in line


def test_corrupt_feedback_cache_is_one_line_naming_the_file(
    sample_task, tmp_path, monkeypatch, scripted_lm, capsys
):
    scripted_reader(monkeypatch, scripted_lm, "3")
    (tmp_path / "feedback.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    argv = training_args("train", sample_task, tmp_path, "--method", "kd", "--candidates", "2")
    assert main(argv) == 2
    cache = str(tmp_path / "feedback.sqlite")
    assert_one_line_error(capsys, cache, f"delete or move the cache file {cache}")


def test_results_on_a_full_disk_are_one_line_naming_the_file(
    sample_task, tmp_path, monkeypatch, scripted_lm, capsys
):
    import errno
    import os

    scripted_reader(monkeypatch, scripted_lm, "3")
    out = tmp_path / "results.json"
    out.write_text("earlier results")

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    assert main(evaluate_args(sample_task, out)) == 2
    assert_one_line_error(capsys, f"{out}: no space left on the device", "already there is kept")
    assert out.read_text() == "earlier results"


def test_a_missing_data_folder_is_not_found_and_the_task_flag_is_named(tmp_path, write_split, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "nope")]) == 2
    assert_one_line_error(capsys, f"{tmp_path / 'nope'}: data folder not found")
    (tmp_path / "bare").mkdir()
    assert main(["evaluate", "--data", str(tmp_path / "bare")]) == 2
    line = assert_one_line_error(capsys, "names the task", "--task")
    assert "pass task=" not in line


def test_bad_gold_is_one_line_naming_file_id_and_field(tmp_path, write_split, rating_question, capsys):
    write_split(
        tmp_path, "dev", [rating_question("q1", "fine", [])], golds=[{"id": "q1", "output": "banana"}]
    )
    assert main(["evaluate", "--data", str(tmp_path)]) == 2
    assert_one_line_error(capsys, "dev_outputs.json", "'q1'", "'output'", "banana")


@pytest.fixture
def openai_server():
    """A loopback OpenAI-compatible server answering "3", recording each request's Authorization."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({
                "id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "3"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def test_api_keys_come_from_the_environment_or_a_file_and_are_never_logged_or_saved(
    sample_task, tmp_path, monkeypatch, capsys, caplog, openai_server
):
    import uuid

    from persona_rag.cli import build_parser
    from persona_rag.cli_options import build_program

    url, seen = openai_server

    def evaluate(out, *extra):  # a new model name each time: DSPy's cache would answer otherwise
        model = ["--lm", f"openai/test-{uuid.uuid4().hex}", "--api-base", url]
        return main(
            ["-v", "evaluate", "--data", str(sample_task), "--limit", "2", *model, "--out", str(out), *extra]
        )

    (tmp_path / "key").write_text("sk-from-file\n")
    monkeypatch.setenv("PERSONA_RAG_API_KEY", "sk-from-env")
    assert evaluate(tmp_path / "env.json") == 0
    assert evaluate(tmp_path / "file.json", "--api-key-file", str(tmp_path / "key")) == 0
    assert evaluate(tmp_path / "flag.json", "--api-key", "sk-from-flag") == 0
    # Per run: one probe (does the server return log-probabilities?) and two questions.
    assert seen == ["Bearer sk-from-env"] * 3 + ["Bearer sk-from-file"] * 3 + ["Bearer sk-from-flag"] * 3
    assert "--api-key puts the key in the process list" in caplog.text

    args = build_parser().parse_args(
        ["evaluate", "--data", str(sample_task), "--lm", "openai/m", "--api-base", url]
    )
    build_program(args, "LaMP-3", "bm25").save(str(tmp_path / "program.json"))
    captured = capsys.readouterr()
    written = "".join(p.read_text() for p in tmp_path.glob("*.json"))
    for secret in ("sk-from-env", "sk-from-file", "sk-from-flag"):
        assert secret not in written + captured.out + captured.err + caplog.text
    assert evaluate(tmp_path / "never.json", "--api-key-file", str(tmp_path / "missing")) == 2
    assert "missing: cannot read the API key file" in capsys.readouterr().err


def test_select_trains_only_the_selectors_last_layers_when_asked(sample_task, tmp_path, monkeypatch):
    from optimizers import rspg

    seen = {}

    def capture(self, *, config):
        seen["config"] = config
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(rspg.RSPG, "__init__", capture)
    argv = ["select", "--mode", "post", "--data", str(sample_task), "--out", str(tmp_path / "s")]
    for extra, layers, checkpointing in (([], None, True), (["--trainable-layers", "2"], 2, False)):
        with pytest.raises(KeyboardInterrupt):
            main([*argv, *extra])
        assert (seen["config"].trainable_layers, seen["config"].gradient_checkpointing) == (
            layers,
            checkpointing,
        )


def test_train_method_set_builds_set_pl_with_its_options(sample_task, tmp_path, monkeypatch):
    from optimizers import set_pl

    seen = {}

    def capture(self, *, config, metric=None):
        seen["config"] = config
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(set_pl.SetPL, "__init__", capture)
    argv = ["train", "--method", "set", "--data", str(sample_task), "--candidates", "8"]
    with pytest.raises(KeyboardInterrupt):
        main([*argv, "--samples", "6", "--baseline", "greedy", "--entropy-weight", "0"])
    config = seen["config"]
    assert isinstance(config, set_pl.SetPLConfig) and str(config.output_dir) == "runs/set-pl"
    assert (config.samples, config.baseline, config.entropy_weight, config.candidates) == (
        6,
        "greedy",
        0.0,
        8,
    )


def test_evaluate_against_a_row_gives_paired_differences(
    sample_task, tmp_path, monkeypatch, scripted_lm, capsys
):
    calls = []

    def reply(messages):  # "5" with profile items in the prompt, "1" without
        calls.append(1)
        return "5" if "is the score for" in json.dumps(messages) else "1"

    scripted_reader(monkeypatch, scripted_lm, reply)
    argv = ["evaluate", "--data", str(sample_task), "--limit", "6", "--retriever", "none,bm25"]
    assert main([*argv, "--against", "dense", "--out", str(tmp_path / "x.json")]) == 2
    assert_one_line_error(capsys, "--against 'dense': no such row", "none, bm25")
    assert calls == []  # refused before any answer

    assert main([*argv, "--against", "none", "--out", str(tmp_path / "r.json")]) == 0
    assert "paired differences from none" in capsys.readouterr().out
    saved = json.loads((tmp_path / "r.json").read_text())
    metrics = {r["name"]: r["metrics"] for r in saved["results"]}
    assert saved["paired_against"] == "none" and set(saved["paired"]) == {"bm25"}
    mae = saved["paired"]["bm25"]["MAE"]
    assert mae["difference"] == pytest.approx(metrics["bm25"]["MAE"] - metrics["none"]["MAE"])
    assert mae["low"] <= mae["difference"] <= mae["high"] and 0 < mae["p_value"] <= 1


def test_select_builds_the_papers_selector_with_no_name_members(sample_task, tmp_path, monkeypatch):
    from optimizers import rspg

    seen = []

    def capture(self, student, **kwargs):
        seen.append(student.selector.name_members)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(rspg.RSPG, "compile", capture)
    argv = ["select", "--mode", "pre", "--data", str(sample_task), "--out", str(tmp_path / "s")]
    for extra in ([], ["--no-name-members"]):
        with pytest.raises(KeyboardInterrupt):
            main([*argv, *extra])
    assert seen == [True, False]

"""The server path (persona_rag/server.py): retries, bounded concurrency and a clear error when the
server is down, against scripted loopback servers; and the whole path against a real
``transformers serve`` over the local SmolLM2 weights (slow)."""

from __future__ import annotations

import itertools
import json
import logging
import math
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from persona_rag.errors import ConfigError, GenerationError, ServerError
from persona_rag.server import server_lm


class ScriptedServer(ThreadingHTTPServer):
    """A loopback OpenAI-compatible server: answers each request with the next status of ``script``
    (then 200 with ``reply``), after ``delay`` seconds; counts requests and the most in flight."""

    daemon_threads = True

    def __init__(self, *, script=(), reply="3", delay=0.0, retry_after=None, log_probs=None) -> None:
        self.script, self.reply, self.delay, self.retry_after = list(script), reply, delay, retry_after
        self.log_probs = log_probs  # messages -> {token: log-prob}: first-token alternatives, on request
        self.requests = self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def lm(self, **options):
        """A ``dspy.LM`` for this server; a new model name each time, so DSPy's cache never answers."""
        return server_lm(f"openai/test-{uuid.uuid4().hex}", api_base=self.url, api_key="k", **options)


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        server = self.server
        with server.lock:
            server.requests += 1
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
            status = server.script.pop(0) if server.script else 200
        time.sleep(server.delay)
        with server.lock:
            server.in_flight -= 1
        if status == 200:
            message = {"role": "assistant", "content": server.reply}
            body = {
                "id": "c", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }  # fmt: skip
            if request.get("logprobs") and server.log_probs is not None:
                top = [{"token": t, "logprob": v} for t, v in server.log_probs(request["messages"]).items()]
                first = {"token": top[0]["token"], "logprob": top[0]["logprob"], "top_logprobs": top}
                body["choices"][0]["logprobs"] = {"content": [first]}
        else:
            body = {"error": {"message": f"scripted {status}", "type": "server_error"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429 and server.retry_after is not None:
            self.send_header("Retry-After", str(server.retry_after))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted_server():
    servers = []

    def make(**options) -> ScriptedServer:
        servers.append(ScriptedServer(**options))
        return servers[-1]

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _program(sample_task, lm, *, limit=2, k=1, max_input_tokens=512, **generator_options):
    from persona_rag.data import load_lamp
    from persona_rag.generator import Generator
    from persona_rag.program import PersonalizedRAG
    from persona_rag.retrievers import make_retriever

    split = load_lamp(sample_task, "dev", limit=limit)
    generator = Generator(lm=lm, **generator_options)
    program = PersonalizedRAG(
        task=split.task,
        retriever=make_retriever("bm25"),
        generator=generator,
        k=k,
        max_input_tokens=max_input_tokens,
    )
    return program, split.examples()


def test_5xx_and_429_are_retried_with_backoff(scripted_server):
    from persona_rag.generator import Generator

    server = scripted_server(script=[503, 429], retry_after=0)
    generator = Generator(lm=server.lm(num_retries=2))
    started = time.perf_counter()
    answer = generator(prompt="rate it").output
    assert answer == "3"
    assert server.requests == 3
    # The 503 waits DSPy's first backoff step (1 s); the 429 waits its Retry-After (0 s).
    assert 1.0 <= time.perf_counter() - started < 10


def test_a_request_that_keeps_failing_costs_its_example_not_the_run(scripted_server, sample_task):
    from persona_rag.evaluation import evaluate_program

    # The first example's two attempts in its batch and its two when evaluation retries it alone.
    server = scripted_server(script=[500] * 4)
    program, examples = _program(sample_task, server.lm(num_retries=1), concurrency=1)
    result = evaluate_program(program, examples, progress=False, batch_size=1)
    assert result.failed == [str(examples[0].id)]
    assert result.predictions[1]["raw_output"] == "3"
    with pytest.raises(GenerationError, match="scripted 500"):
        server.script = [500, 500]
        program.generator(prompt="p")


def test_concurrency_bounds_the_requests_in_flight(scripted_server):
    from persona_rag.generator import Generator

    server = scripted_server(delay=0.3)
    answers = Generator(lm=server.lm(), concurrency=2).generate_batch([f"q{i}" for i in range(6)])
    assert [a.output for a in answers] == ["3"] * 6
    assert server.requests == 6
    assert server.most_in_flight == 2


def test_a_down_server_stops_evaluate_and_feedback_with_one_clear_error(closed_url, sample_task, tmp_path):
    from optimizers.feedback import Feedback
    from persona_rag.evaluation import evaluate_program

    program, examples = _program(
        sample_task, server_lm("openai/m", api_base=closed_url, api_key="k", num_retries=0)
    )
    port = closed_url.split(":")[-1].split("/")[0]
    with pytest.raises(ServerError) as caught:
        evaluate_program(program, examples, progress=False)  # not empty answers for every example
    message = str(caught.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "cannot be reached" in message and "--api-base" in message
    with pytest.raises(ServerError, match="cannot be reached"):
        Feedback(program=program, candidates=2, cache=tmp_path / "f.sqlite", progress=False).compute(examples)


def test_a_server_gone_during_a_run_is_one_line_from_the_cli(
    closed_url, sample_task, tmp_path, monkeypatch, capsys
):
    import persona_rag.cli as cli
    from persona_rag.cli_options import MODEL_FLAGS
    from tests.test_cli import assert_one_line_error

    # The start-up check passes: the server goes away later.
    monkeypatch.setitem(MODEL_FLAGS.flags["api_base"].options, "type", str)
    monkeypatch.setenv("PERSONA_RAG_API_KEY", "k")
    argv = ["evaluate", "--data", str(sample_task), "--limit", "2", "--out", str(tmp_path / "r.json")]
    assert cli.main([*argv, "--lm", "openai/m", "--api-base", closed_url, "--retries", "0"]) == 2
    assert_one_line_error(capsys, "cannot be reached after 0 retries", "is it running?")
    assert not (tmp_path / "r.json").exists()


def test_settings_that_need_label_probabilities_are_refused_before_any_request(scripted_server):
    from persona_rag.generator import Generator

    server = scripted_server()
    for options in ({"calibrate": True}, {"label_decision": "mean"}):
        generator = Generator(lm=server.lm(), **options)
        with pytest.raises(ConfigError, match="need label probabilities"):
            generator.generate_batch(["rate it"], [["1", "2"]], ["N/A"])
    assert server.requests == 0


def test_a_server_with_log_probabilities_scores_one_character_labels(scripted_server):
    from persona_rag.generator import Generator

    alternatives = {"Sure": -0.1, "4": -1.0, " 4": -1.5, "2": -2.0, "5": -3.0}
    server = scripted_server(reply="2", log_probs=lambda messages: alternatives)
    generator = Generator(lm=server.lm())
    ratings = ["1", "2", "3", "4", "5"]
    scored, tags = generator.generate_batch(["rate it", "tag it"], [ratings, ["[1]", "[2]"]])
    assert scored.output == "4"  # the most likely label, not the free reply ("2")
    both = math.log(math.exp(-1.0) + math.exp(-1.5))  # "4" and " 4" are the same answer
    assert scored.label_scores == pytest.approx({"1": -3.0, "2": -2.0, "3": -3.0, "4": both, "5": -3.0})
    assert tags.output == "2" and tags.label_scores is None  # several tokens: parsed free answer
    assert server.requests == 3  # the probe, one scoring request, one generation


def test_a_server_without_log_probabilities_answers_labels_by_generation(scripted_server, caplog):
    from persona_rag.generator import Generator

    server = scripted_server(reply="2")
    generator = Generator(lm=server.lm())
    with caplog.at_level(logging.WARNING, logger="persona_rag.server"):
        answers = generator.generate_batch(["a", "b"], [["1", "2", "3"]] * 2)
    assert [(a.output, a.label_scores) for a in answers] == [("2", None), ("2", None)]
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1  # logged once
    assert "returns no log-probabilities" in caplog.records[0].message
    assert server.requests == 3  # one probe, then free answers


def _varied_log_probs(messages):
    """First-token alternatives that depend on the prompt, as a real model's do."""
    seed = sum(map(ord, json.dumps(messages)))
    return {str(label): -((seed * label) % 7) / 2 - 0.1 for label in range(1, 6)}


def test_likelihood_signals_through_a_server_use_the_gold_labels_score(
    scripted_server, sample_task, tmp_path
):
    from optimizers.feedback import TIE_BREAK, Feedback

    server = scripted_server(log_probs=_varied_log_probs)
    program, examples = _program(sample_task, server.lm(), limit=3)
    mixed = Feedback(
        program=program, candidates=3, cache=tmp_path / "a.sqlite", signal="auto", progress=False
    )
    assert mixed.signal == "metric+likelihood"
    rows = mixed.compute(examples)
    likelihood = Feedback(
        program=program, candidates=3, cache=tmp_path / "b.sqlite", signal="likelihood", progress=False
    )
    again = likelihood.compute(examples)
    for row, other, example in zip(rows, again, examples):
        evals = [
            program.task.eval(str(example.output), program.task.parse(o, example.input)) for o in row.outputs
        ]
        assert all(e <= s <= e + TIE_BREAK for e, s in zip(evals, row.scores))
        assert all(score < 0 for score in other.scores)  # log p(gold)
        for a, b in itertools.combinations(range(len(evals)), 2):  # Eval ties ordered by log p(gold)
            if evals[a] == evals[b] and other.scores[a] != other.scores[b]:
                assert (row.scores[a] > row.scores[b]) == (other.scores[a] > other.scores[b])
    assert len(set(s for row in again for s in row.scores)) > 1


def test_likelihood_signals_a_server_cannot_give_are_refused_up_front(scripted_server, sample_task, tmp_path):
    from optimizers.feedback import Feedback
    from persona_rag.generator import Generator
    from persona_rag.program import PersonalizedRAG
    from persona_rag.retrievers import make_retriever

    tagging = scripted_server(log_probs=_varied_log_probs)
    program = PersonalizedRAG(
        task="LaMP-2", retriever=make_retriever("bm25"), generator=Generator(lm=tagging.lm())
    )
    with pytest.raises(ConfigError, match="not one-character labels"):
        Feedback(program=program, cache=tmp_path / "f.sqlite", signal="likelihood")
    assert Feedback(program=program, cache=tmp_path / "f.sqlite", signal="auto").signal == "metric"
    assert tagging.requests == 0
    plain = scripted_server()
    program, _ = _program(sample_task, plain.lm())
    with pytest.raises(ConfigError, match="returns no log-probabilities"):
        Feedback(program=program, cache=tmp_path / "g.sqlite", signal="metric+likelihood")
    assert plain.requests == 1  # the probe


def test_a_missing_key_stops_the_run_instead_of_failing_every_example(scripted_server, sample_task):
    from persona_rag.evaluation import evaluate_program

    server = scripted_server()
    program, examples = _program(sample_task, server_lm("openai/m", api_base=server.url, api_key=None))
    with pytest.raises(ConfigError, match="PERSONA_RAG_API_KEY"):
        evaluate_program(program, examples, progress=False)
    assert server.requests == 0


def test_retries_and_concurrency_options_reach_the_server_lm(scripted_server, sample_task):
    from persona_rag.cli import build_parser
    from persona_rag.cli_options import build_program

    url = scripted_server().url
    args = build_parser().parse_args(
        ["evaluate", "--data", str(sample_task), "--lm", "openai/m", "--api-base", url,
         "--retries", "5", "--concurrency", "3", "--timeout", "7"]
    )  # fmt: skip
    generator = build_program(args, "LaMP-3", "bm25").generator
    assert (generator.lm.num_retries, generator.concurrency, generator.lm.kwargs["timeout"]) == (5, 3, 7.0)


# ------------------------------------------------------------------ a real transformers serve
@pytest.fixture(scope="module")
def transformers_server(tmp_path_factory):
    """``transformers serve`` over the local SmolLM2 weights on a free loopback port; yields the
    ``dspy.LM`` model string and the ``api_base``. Skips when the ``serving`` extra is missing."""
    from persona_rag.lm import resolve_model
    from persona_rag.server import serving_missing, transformers_serve

    reason = serving_missing()
    if reason:
        pytest.skip(reason)
    model = resolve_model("default")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(model, timeout=600, log=log) as api_base:  # 4-20 s on 2 cores
        yield f"openai/{model}", api_base


def _real_lm(transformers_server):
    model, api_base = transformers_server
    lm = server_lm(model, api_base=api_base, api_key="none", max_tokens=4, timeout=300, num_retries=1)
    lm.cache = False  # each run asks the server
    return lm


@pytest.mark.slow
@pytest.mark.serve
def test_evaluate_runs_through_a_real_server(transformers_server, sample_task):
    from persona_rag.evaluation import evaluate_program

    program, examples = _program(
        sample_task, _real_lm(transformers_server), concurrency=2, max_input_tokens=192
    )
    result = evaluate_program(program, examples, progress=False)
    assert result.failed == []
    assert all(p["raw_output"].strip() for p in result.predictions)
    assert set(result.metrics) == {"MAE", "RMSE"}


@pytest.mark.slow
@pytest.mark.serve
def test_feedback_runs_through_a_real_server(transformers_server, sample_task, tmp_path):
    from optimizers.feedback import Feedback

    program, examples = _program(
        sample_task, _real_lm(transformers_server), concurrency=2, max_input_tokens=192
    )
    with pytest.raises(ConfigError, match="log-probabilities"):
        Feedback(program=program, cache=tmp_path / "f.sqlite", signal="likelihood")
    feedback = Feedback(
        program=program, candidates=2, cache=tmp_path / "f.sqlite", signal="auto", progress=False
    )
    assert feedback.signal == "metric"
    rows = feedback.compute(examples)
    assert feedback.computed == len(feedback.cache) == sum(len(row.candidates.hits) for row in rows) > 0
    assert all(output.strip() for row in rows for output in row.outputs)
    assert all(0.0 <= score <= 1.0 for row in rows for score in row.scores)


def _server_cli_options(transformers_server, out):
    model, api_base = transformers_server
    return ["--lm", model, "--api-base", api_base, "--api-key", "none", "--timeout", "300", "--retries", "1",
            "--concurrency", "2", "--k", "1", "--max-input-tokens", "192", "--max-new-tokens", "4",
            "--out", str(out)]  # fmt: skip


@pytest.mark.slow  # 7-12 s on 2 cores
@pytest.mark.serve
def test_train_runs_through_a_real_server(transformers_server, sample_task, tmp_path):
    """ROPG-RL through the server: its answers are the feedback (the signal the server allows)."""
    from persona_rag.cli import main

    argv = ["train", "--method", "rl", "--data", str(sample_task), "--max-examples", "4",
            "--max-val-examples", "2", "--epochs", "1", "--candidates", "2",
            "--feedback-cache", str(tmp_path / "f.sqlite"),
            *_server_cli_options(transformers_server, tmp_path / "rl")]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "rl" / "best").is_dir() and (tmp_path / "rl" / "history.json").is_file()


def _as_subject_task(sample_task, dest):
    """The sample task rewritten in LaMP-6's format (a subject line per question, ROUGE): the
    zero-shot SmolLM2 behind the server rates every movie "1", so on ratings every candidate ties
    on the metric, the one signal this server allows, while a generated line changes with the item
    in the prompt."""

    def subject(item):
        return f"{item['score']} stars for {item['text'].split(',')[0]}"

    dest.mkdir()
    for split in ("train", "dev", "test"):
        questions = json.loads((sample_task / f"{split}_questions.json").read_text())
        golds = json.loads((sample_task / f"{split}_outputs.json").read_text())["golds"]
        for question, gold in zip(questions, golds):
            movie = question["input"].split("movie: ")[1]
            question["input"] = f"Generate a subject for the following email: I watched {movie}"
            question["profile"] = [{**item, "title": subject(item)} for item in question["profile"]]
            gold["output"] = subject({"score": gold["output"], "text": movie})
        (dest / f"{split}_questions.json").write_text(json.dumps(questions))
        (dest / f"{split}_outputs.json").write_text(json.dumps({"task": "LaMP_6", "golds": golds}))
    return dest


@pytest.mark.slow  # 15-41 s on 2 cores
@pytest.mark.serve
def test_report_runs_through_a_real_server(transformers_server, sample_task, tmp_path):
    """The whole Table 3 through the server: every column's answers come from it."""
    from persona_rag.cli import main

    data = _as_subject_task(sample_task, tmp_path / "subjects")
    argv = ["report", "--data", str(data), "--splits", "test:3", "--train-examples", "8",
            "--rspg-train-examples", "8", "--val-examples", "2", "--candidates", "3",
            "--ropg-epochs", "1", "--rspg-epochs", "1", "--rspg-trainable-layers", "1",
            *_server_cli_options(transformers_server, tmp_path / "report")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["splits"]["test"]["n"] == 3
    assert set(report["splits"]["test"]["metrics"]) >= {"Dense", "ROPG-RL", "ROPG-KD", "RSPG-Post"}
    assert (
        report["training"]["ropg-kd"]["feedback_calls"] + report["training"]["ropg-rl"]["feedback_calls"] > 0
    )

"""Shared fixtures: small LaMP-format directories and the real LaMP-format data, when present."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # parallel workers share the cores, not each take all
    _cores_each = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_cores_each))

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMP_REAL = REPO_ROOT.parent / "shared" / "lamp-real"

RATING_PREFIX = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. review: "
)


def _write_split(
    directory: Path,
    split: str,
    questions: Any,
    *,
    task: str | None = "LaMP_3",
    golds: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``{split}_questions.json`` (and ``{split}_outputs.json`` unless ``task`` is None).

    ``questions`` is written as JSON unless it is a ``str`` (raw file text, for malformed files).
    Without ``golds``, each question gets the gold ``"3"``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{split}_questions.json"
    path.write_text(questions if isinstance(questions, str) else json.dumps(questions), encoding="utf-8")
    if task is not None:
        if golds is None:
            golds = [{"id": q["id"], "output": "3"} for q in questions]
        (directory / f"{split}_outputs.json").write_text(json.dumps({"task": task, "golds": golds}))
    return path


def _rating_question(
    qid: str, review: str, profile: list[dict[str, Any]], user_id: str = "u1"
) -> dict[str, Any]:
    return {"id": qid, "input": RATING_PREFIX + review, "profile": profile, "user_id": user_id}


@pytest.fixture
def lamp_real() -> Path:
    """``../shared/lamp-real`` (real LaMP-format data built from MovieLens); skips when absent."""
    if not LAMP_REAL.is_dir():
        pytest.skip(f"real LaMP-format data not found at {LAMP_REAL}")
    return LAMP_REAL


@pytest.fixture
def write_split():
    """The :func:`_write_split` helper: writes a LaMP-format split into a directory."""
    return _write_split


@pytest.fixture
def rating_question():
    """The :func:`_rating_question` helper: one LaMP-3 question."""
    return _rating_question


@pytest.fixture(scope="session")
def local_generator():
    """The offline default generator (SmolLM2-135M-Instruct), loaded once per test session."""
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm

    return Generator(lm=local_lm(), batch_size=8)


@pytest.fixture(scope="session")
def sample_task(tmp_path_factory) -> Path:
    """The project's own sample task (12 users, LaMP-3 format)."""
    from persona_rag.data import make_sample_task

    return make_sample_task(tmp_path_factory.mktemp("sample"))


class ScriptedEngine:
    """A dspy 3.4 engine answering with ``reply(messages) -> str``: a stand-in for a server LM."""

    def __init__(self, reply) -> None:
        self.reply = reply
        self.requests: list[list[dict[str, str]]] = []

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        messages = [{"role": m.role, "content": m.text or ""} for m in request.messages]
        self.requests.append(messages)
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(self.reply(messages))]),
            finish_reason="stop",
            usage=Usage(input_tokens=0, output_tokens=0),
        )


@pytest.fixture
def scripted_lm():
    """``scripted_lm(reply)``: a ``dspy.LM`` (cache off) whose engine answers with ``reply``."""
    import dspy

    def make(reply):
        reply_fn = reply if callable(reply) else (lambda messages: reply)
        return dspy.LM("scripted/test", engine=ScriptedEngine(reply_fn), cache=False, num_retries=0)

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """``tiny_checkpoint(directory, seed)``: a random-weight one-layer Llama with the default
    model's tokenizer, saved with ``save_pretrained`` (a few MB; different seeds answer differently)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from persona_rag.lm import DEFAULT_LM, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_LM))

    def make(directory: Path, seed: int) -> Path:
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        )  # fmt: skip
        LlamaForCausalLM(config).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return Path(directory)

    return make

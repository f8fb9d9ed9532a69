"""The generator behind an OpenAI-compatible server (vLLM, SGLang, Ollama, ``transformers serve``).

A server model is a ``dspy.LM("openai/MODEL", api_base=URL)``. DSPy already retries a failed
request with exponential backoff (1, 2, 4 ... s, or the server's ``Retry-After``) when the failure
is transient: a 429, a 5xx, a timeout or a connection that could not be made. This module sets
that retry count and the per-request timeout in one place, and turns a server that still cannot be
reached after the retries into one :class:`~persona_rag.errors.ServerError` that stops the run:
an evaluation would otherwise record an empty answer for every question.

How many requests are in flight at once is the generator's ``concurrency`` (``--concurrency``).

Log-probabilities. The OpenAI chat API returns, on request, the log-probabilities of the most
likely first answer tokens (``logprobs``/``top_logprobs``; vLLM and SGLang do, ``transformers
serve`` ignores the field). Where a server returns them, they score labels of one character (LaMP-3's
ratings): a label's score is log p(first answer token = label), so a server model is constrained to
the label set like the in-process one, and log p(gold) feeds the ``likelihood`` and
``metric+likelihood`` feedback signals (:func:`label_log_probs`, :func:`gives_log_probs`). What
stays unavailable through any server, refused up front with a
:class:`~persona_rag.errors.ConfigError` rather than approximated: scoring longer labels (LaMP-1's
``[1]``/``[2]``, LaMP-2's tags span several tokens, and the chat API scores only the first), hence
the likelihood signals on those tasks; log p(gold) of free-text outputs (LaMP-4..7: it needs the
log-probabilities of given tokens, which the chat API does not return); and ``calibrate`` and
``label_decision="mean"``, settings of the in-process model. Without log-probabilities, labelled
prompts are answered by free generation read by the task's parser (a documented fallback, logged
once) and ``auto`` resolves to the ``metric`` signal.

:func:`transformers_serve` runs a real server (``transformers serve``, its ``serving`` extra:
``pip install 'persona-rag[serve]'``) over local weights on loopback, for the tests and benchmarks
of this path.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persona_rag.errors import ConfigError, GenerationError, PersonaRAGError, ServerError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RETRIES",
    "TOP_LOG_PROBS",
    "call_error",
    "gives_log_probs",
    "label_log_probs",
    "scorable_labels",
    "server_lm",
    "serving_missing",
    "transformers_serve",
]

DEFAULT_RETRIES = 3  # DSPy's own default: 1 + 2 + 4 s of backoff before a request fails
DEFAULT_CONCURRENCY = 8
TOP_LOG_PROBS = 20  # the most first-token alternatives the OpenAI API returns

logger = logging.getLogger(__name__)


def server_lm(
    model: str,
    *,
    api_base: str | None = None,
    api_key: str | None = None,
    max_tokens: int = 32,
    timeout: float = 60.0,
    num_retries: int = DEFAULT_RETRIES,
) -> Any:
    """A greedy ``dspy.LM`` for ``model`` (``provider/name``) at ``api_base``.

    Args:
        model: a dspy.LM model string, e.g. ``openai/meta-llama/Llama-3.1-8B``.
        api_base: the OpenAI-compatible server's URL (``http://host:port/v1``); ``None`` for the
            provider's own endpoint.
        api_key: the key, handed to the LM only (never logged or saved).
        max_tokens: longest answer.
        timeout: seconds per request before it counts as failed (and is retried).
        num_retries: retries of a request that failed transiently (429, 5xx, timeout, no connection).
    """
    import dspy

    return dspy.LM(
        model,
        api_base=api_base,
        api_key=api_key,
        max_tokens=max_tokens,
        temperature=0.0,
        timeout=timeout,
        num_retries=num_retries,
    )


def scorable_labels(labels: Sequence[str]) -> bool:
    """Whether a server's first-token log-probabilities score ``labels`` exactly: each label one
    character (every tokenizer has a token for it), so first token = label means answer = label."""
    return bool(labels) and all(len(label) == 1 for label in labels)


def label_log_probs(lm: Any, messages: list[dict[str, Any]], labels: Sequence[str]) -> list[float] | None:
    """Per label, log p(first answer token = label) from the server's top log-probabilities;
    ``None`` when the server returns none.

    Tokens that read as the same label (``"3"``, ``" 3"``) add up. A label outside the top
    :data:`TOP_LOG_PROBS` gets the smallest returned log-probability: a bound its own cannot exceed.
    """
    from dspy import lm15

    request = lm15.request_from_openai_chat({"model": lm.model, "messages": messages})
    config = lm15.Config(max_tokens=1, temperature=0.0, logprobs=TOP_LOG_PROBS)
    response = lm(
        lm15.Request(model=lm.model, messages=request.messages, system=request.system, config=config)
    )
    alternatives = response.logprobs[0].top if response.logprobs else ()
    if not alternatives:
        return None
    seen: dict[str, float] = {}
    for alternative in alternatives:
        token, value = alternative.token.strip(), float(alternative.logprob)
        seen[token] = math.log(math.exp(seen[token]) + math.exp(value)) if token in seen else value
    floor = min(seen.values())
    return [seen.get(label, floor) for label in labels]


_PROBE = [{"role": "user", "content": "Answer with one digit: how many sides has a triangle?"}]
_probed: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
_probe_lock = threading.Lock()


def gives_log_probs(lm: Any) -> bool:
    """Whether the server behind ``lm`` returns log-probabilities: asked once per LM with a
    one-token request (a failure to reach it is the run's :func:`call_error`)."""
    with _probe_lock:
        if lm not in _probed:
            try:
                _probed[lm] = label_log_probs(lm, _PROBE, ["3"]) is not None
            except Exception as error:
                raise call_error(error, lm) from error
            if not _probed[lm]:
                where = (getattr(lm, "kwargs", None) or {}).get("api_base") or getattr(lm, "model", "")
                logger.warning(
                    "the LLM server at %s returns no log-probabilities: labelled prompts are answered "
                    "by free generation read by the task's parser, and the likelihood signals are "
                    "unavailable", where,
                )  # fmt: skip
        return _probed[lm]


# What a failed connection attempt is called in the exception chain, whichever client made it
# (DSPy's lm15 transport, httpx under LiteLLM): a read timeout or a 5xx is not one of them.
_CONNECT_FAILURES = frozenset({"ConnectError", "ConnectTimeout", "ConnectionRefusedError", "gaierror"})


def _unreachable(error: BaseException | None) -> bool:
    """Whether ``error`` (or an error it was raised from) is a failed attempt to connect."""
    seen = set()
    while error is not None and id(error) not in seen:
        if type(error).__name__ in _CONNECT_FAILURES:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def call_error(error: Exception, lm: Any) -> PersonaRAGError:
    """The library error for a failed LLM call.

    :class:`ServerError` when the last attempt could not even connect (the server is down or the
    URL is wrong) and :class:`ConfigError` when the key is missing or refused: every later call
    would fail the same way, so the run stops. Otherwise :class:`GenerationError`: this call failed
    (it timed out or kept getting 5xx after its retries); an evaluation records the example as
    failed and goes on."""
    if _unreachable(error):
        where = getattr(lm, "kwargs", {}).get("api_base") or getattr(lm, "model", "the LLM server")
        retries = getattr(lm, "num_retries", 0)
        reason = " ".join(str(error).split())  # one line, whatever the transport's message holds
        return ServerError(
            f"the LLM server at {where} cannot be reached after {retries} retries ({reason}); "
            "is it running? Check --api-base"
        )
    from dspy.utils.exceptions import LMAuthError, LMConfigurationError

    if isinstance(error, (LMConfigurationError, LMAuthError)):
        reason = " ".join(str(error).split())
        return ConfigError(
            f"the LM {getattr(lm, 'model', '')} refuses every request ({type(error).__name__}: {reason}); "
            "give its key with $PERSONA_RAG_API_KEY or --api-key-file (any non-empty key for a server "
            "that checks none)"
        )
    return GenerationError(f"LLM call failed ({type(error).__name__}: {error})")


def serving_missing() -> str | None:
    """Why ``transformers serve`` cannot start here (its ``serving`` extra is not installed), or
    ``None`` when it can."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        return f"transformers serve needs {', '.join(missing)}: pip install 'persona-rag[serve]'"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def transformers_serve(
    model: str | Path, *, port: int | None = None, timeout: float = 300.0, log: str | Path | None = None
) -> Iterator[str]:
    """Run ``transformers serve MODEL`` on loopback while the block runs; yields its ``api_base``.

    A real OpenAI-compatible server over local weights (the dequantized SmolLM2 folder of
    :func:`persona_rag.lm.resolve_model` works offline), for tests and benchmarks of the server
    path. The request model string is ``openai/`` followed by ``model``.

    Args:
        model: the model directory the server preloads.
        port: the loopback port (default: a free one).
        timeout: seconds to wait for ``/health`` to answer before giving up.
        log: file for the server's output (default: discarded).

    Raises:
        ConfigError: the ``serving`` extra is missing.
        ServerError: the server exited or was not ready within ``timeout``.
    """
    reason = serving_missing()
    if reason:
        raise ConfigError(reason)
    port = port or _free_port()
    command = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [command, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise ServerError(f"transformers serve exited with code {process.returncode} (log: {log})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"transformers serve was not ready within {timeout:.0f} s (log: {log})")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            out.close()  # type: ignore[union-attr]

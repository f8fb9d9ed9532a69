"""The generator behind an OpenAI-compatible server (vLLM, SGLang, Ollama, ``transformers serve``).

A server model is a ``dspy.LM("openai/MODEL", api_base=URL)``. DSPy already retries a failed
request with exponential backoff (1, 2, 4 ... s, or the server's ``Retry-After``) when the failure
is transient: a 429, a 5xx, a timeout or a connection that could not be made. This module sets
that retry count and the per-request timeout in one place, and turns a server that still cannot be
reached after the retries into one :class:`~persona_rag.errors.ServerError` that stops the run:
an evaluation would otherwise record an empty answer for every question.

How many requests are in flight at once is the generator's ``concurrency`` (``--concurrency``).

What a server model cannot do here: the generator reads no log-probabilities from a server, so
label scoring becomes free generation read by the task's parser (a documented fallback), and the
settings that need label probabilities (``calibrate``, ``label_decision="mean"``) and the feedback
signals ``likelihood`` and ``metric+likelihood`` are refused up front with a
:class:`~persona_rag.errors.ConfigError` (``auto`` resolves to ``metric``). ``transformers serve``
ignores the ``logprobs`` request field altogether.

:func:`transformers_serve` runs a real server (``transformers serve``, its ``serving`` extra:
``pip install 'persona-rag[serve]'``) over local weights on loopback, for the tests and benchmarks
of this path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persona_rag.errors import ConfigError, GenerationError, PersonaRAGError, ServerError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_RETRIES",
    "call_error",
    "server_lm",
    "serving_missing",
    "transformers_serve",
]

DEFAULT_RETRIES = 3  # DSPy's own default: 1 + 2 + 4 s of backoff before a request fails
DEFAULT_CONCURRENCY = 8


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

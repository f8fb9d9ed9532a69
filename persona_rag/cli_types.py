"""The types of command-line values: each checks a value as it is parsed, so a bad one (``--k 0``, a
model that is not there, a server that does not answer) fails before any model loads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = [
    "MIXED_PRECISIONS",
    "encoder_name",
    "lm_string",
    "local_model_name",
    "mixed_precision_name",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "retriever_list",
    "retry_count",
    "server_url",
    "spec_name",
]


def _model_option(text: str, aliases: frozenset[str], default: str) -> str:
    """A model option: the packaged default, a local checkpoint directory, or a cached (or, online,
    a hub) name; checked when the options are parsed, so a typo fails before any model loads."""
    if text.lower() in aliases or (Path(text) / "config.json").is_file():
        return text
    if not Path(text).exists() and "/" in text and not os.environ.get("HF_HUB_OFFLINE"):
        return text  # a hub name, fetched when loaded
    from huggingface_hub import try_to_load_from_cache

    if Path(text).exists() or not isinstance(try_to_load_from_cache(text, "config.json"), str):
        raise argparse.ArgumentTypeError(
            f"no model {text!r}: not the offline default {default!r}, not a directory with config.json, "
            "and not in the Hugging Face cache"
        )
    return text


def local_model_name(text: str) -> str:
    """``--model``: see :func:`_model_option`."""
    from persona_rag.defaults import DEFAULT_LM, DEFAULT_LM_ALIASES

    return _model_option(text, DEFAULT_LM_ALIASES, DEFAULT_LM)


def encoder_name(text: str) -> str:
    """``--encoder``: see :func:`_model_option`."""
    from persona_rag.defaults import DEFAULT_ENCODER, DEFAULT_ENCODER_ALIASES

    return _model_option(text, DEFAULT_ENCODER_ALIASES, DEFAULT_ENCODER)


def lm_string(text: str) -> str:
    """``--lm``: a ``dspy.LM`` model string names its provider (``openai/MODEL``)."""
    provider, slash, model = text.partition("/")
    if not (provider and slash and model):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a dspy.LM model string is provider/model, e.g. openai/MODEL"
        )
    return text


def server_url(text: str) -> str:
    """A server URL option (``--url``, ``--api-base``): it needs a scheme and a host, and something
    must answer at that host and port; checked when the options are parsed, before models load."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a server URL: give the scheme and host, e.g. http://localhost:8000"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=5).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise argparse.ArgumentTypeError(
            f"nothing answers at {parsed.hostname}:{port} ({reason}): is the server running?"
        ) from error
    return text


def spec_name(spec: str) -> str:
    """The table name of a retriever spec: the kind, or the name before ``=``."""
    return spec.split("=", 1)[0]


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
    return value


MIXED_PRECISIONS = ("auto", "no", "bf16")
"""A trainer's forward-pass precisions (``optimizers.distributed.mixed_precision`` says what
``auto`` picks on a device)."""


def mixed_precision_name(text: str) -> str:
    """An ``argparse`` type: one of :data:`MIXED_PRECISIONS`."""
    if text not in MIXED_PRECISIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(MIXED_PRECISIONS)}; got {text!r}")
    return text


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--limit -34`` or ``--k 0`` fail at once,
    before any model loads, instead of silently dropping questions or items)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 0 (``--patience 0`` stops at the first epoch
    without improvement; ``-1`` would never stop, silently)."""
    return _whole_number(text, 0)


def _finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or abs(value) == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number above 0 (learning rates, temperatures, timeouts)."""
    value = _finite_number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An ``argparse`` type: a finite number of at least 0 (a weight that 0 turns off)."""
    value = _finite_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def retriever_list(text: str) -> list[str]:
    """Comma-separated retriever specs: kinds, or ``name=DIR`` for a trained dense encoder."""
    from persona_rag.retrievers import RETRIEVERS

    specs = [
        spec.strip() if "=" in spec else spec.strip().lower() for spec in text.split(",") if spec.strip()
    ]
    unknown = [spec for spec in specs if "=" not in spec and spec not in RETRIEVERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown retriever(s) {unknown}; choose from {', '.join(RETRIEVERS)} or name=ENCODER_DIR"
        )
    missing = [spec for spec in specs if "=" in spec and not Path(spec.split("=", 1)[1]).is_dir()]
    if missing:
        raise argparse.ArgumentTypeError(f"no encoder checkpoint directory for {missing}")
    names = [spec_name(spec) for spec in specs]
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"retriever names must be distinct: {names}")
    return specs


def retry_count(text: str) -> int:
    """``--retries``: a whole number from 0 to 10 (beyond that, backoff waits over half an hour)."""
    value = non_negative_int(text)
    if value > 10:
        raise argparse.ArgumentTypeError(f"must be 10 or less, got {value}")
    return value

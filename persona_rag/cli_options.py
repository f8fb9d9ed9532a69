"""The command-line options and what they build, shared by every ``persona-rag`` command.

``persona_rag.cli`` (evaluate, index) and the commands other packages add through the
``persona_rag.commands`` entry points (the demo and the training commands of ``optimizers``) read
the same model options, argument types and program builder from here, so an option means the
same in every command. Heavy modules are imported inside the functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = [
    "add_model_options",
    "build_generator",
    "build_program",
    "encoder_name",
    "lm_string",
    "load_selector",
    "local_model_name",
    "make_console",
    "named_retriever",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "retriever_list",
    "server_url",
    "spec_name",
    "task_for",
]


def make_console() -> Any:
    """Where commands print their tables and messages."""
    from rich.console import Console

    return Console()


_API_KEY_VARIABLES = ("PERSONA_RAG_API_KEY", "OPENAI_API_KEY")


def _api_key(args: argparse.Namespace) -> str | None:
    """The key for ``--lm``: ``--api-key-file``, else ``--api-key`` (``main`` warns about it),
    else ``$PERSONA_RAG_API_KEY``, else ``$OPENAI_API_KEY``. It is handed to the ``dspy.LM``
    only: never logged, never saved (saved programs and results hold no key)."""
    from persona_rag.errors import DataError

    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise DataError(
                f"cannot read the API key file ({error.strerror})", file=str(args.api_key_file)
            ) from error
        if not key:
            raise DataError("the API key file is empty", file=str(args.api_key_file))
        return key
    if args.api_key:
        return args.api_key
    return next((os.environ[name] for name in _API_KEY_VARIABLES if os.environ.get(name)), None)


def build_generator(args: argparse.Namespace) -> Any:
    """The generator the model options describe: a server ``dspy.LM`` (``--lm``) or the in-process
    model (``--model``), with the answer-reading options."""
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm
    from persona_rag.lm.loading import resolve_dtype
    from persona_rag.server import server_lm

    if args.lm:
        lm = server_lm(
            args.lm,
            api_base=args.api_base,
            api_key=_api_key(args),
            max_tokens=args.max_new_tokens,
            timeout=args.timeout,
            num_retries=args.retries,
        )
    else:
        lm = local_lm(args.model, max_tokens=args.max_new_tokens, dtype=resolve_dtype(args.dtype))
    return Generator(
        lm=lm,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        label_scoring=not args.free_generation,
        calibrate=args.calibrate,
        label_decision=args.label_decision,
        label_normalization=args.label_normalization,
        answer_extraction=args.answer_extraction,
        concurrency=args.concurrency,
    )


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


def named_retriever(spec: str, encoder: str) -> Any:
    """A retriever from a command-line spec: a kind (``bm25``; ``dense`` uses ``encoder``) or
    ``name=DIR``, a dense retriever over a trained encoder checkpoint (e.g. ROPG's ``best``)."""
    from persona_rag.retrievers import DenseRetriever, make_retriever

    if "=" in spec:
        return DenseRetriever(encoder=spec.split("=", 1)[1])
    return make_retriever(spec, **({"encoder": encoder} if spec == "dense" else {}))


def spec_name(spec: str) -> str:
    """The table name of a retriever spec: the kind, or the name before ``=``."""
    return spec.split("=", 1)[0]


def task_for(args: argparse.Namespace, task: Any) -> Any:
    """The task (name or spec) reading answers as the options say: LaMP's evaluation, or the
    lenient reading with ``--lenient-parsing``."""
    import dataclasses

    from persona_rag.tasks import get_task

    spec = get_task(task)
    return dataclasses.replace(spec, parsing="lenient") if getattr(args, "lenient_parsing", False) else spec


def build_program(args: argparse.Namespace, task: Any, kind: str, store: Any = None) -> Any:
    """A single-retriever program over the generator the options describe (``kind``: a spec)."""
    from persona_rag.program import PersonalizedRAG

    return PersonalizedRAG(
        task=task_for(args, task),
        retriever=named_retriever(kind, args.encoder),
        generator=build_generator(args),
        k=args.k,
        store=store,
        max_input_tokens=args.max_input_tokens,
    )


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
    return value


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


def load_selector(path: Path) -> Any:
    """A trained selector from its ``selector.json`` (written by ``persona-rag select``/``report``),
    its checkpoints found beside it wherever its folder was moved (:mod:`persona_rag.portable`)."""
    from persona_rag.errors import DataError, PersonaRAGError
    from persona_rag.portable import read_portable_json
    from persona_rag.selector import Selector

    state = read_portable_json(path)
    try:
        return Selector(pool=["none", "bm25"]).load_state(state)
    except PersonaRAGError:
        raise  # says itself what is wrong and where (a model folder that asks to run code)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a selector state file ({error})") from error


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and set up the generator and the retriever's encoder: every command
    that answers questions takes them, so they mean the same everywhere."""
    from persona_rag.defaults import (
        ANSWER_EXTRACTIONS,
        DEFAULT_ENCODER,
        DEFAULT_LABEL_NORMALIZATION,
        DEFAULT_LM,
        DTYPE_CHOICES,
        LABEL_NORMALIZATIONS,
    )
    from persona_rag.server import DEFAULT_CONCURRENCY, DEFAULT_RETRIES

    group = parser.add_argument_group("models")
    group.add_argument(
        "--model",
        type=local_model_name,
        default=DEFAULT_LM,
        help="in-process Hugging Face model name or path",
    )
    group.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="float32",
        help="precision of the in-process model's answers and scores: bfloat16 is about 2.8x faster on "
        "CPUs with AVX-512 BF16 and on GPUs; auto picks it where the hardware has it (training always "
        "runs in float32)",
    )  # fmt: skip
    group.add_argument(
        "--lm", type=lm_string, help="a dspy.LM model string instead, e.g. openai/meta-llama/Llama-3.1-8B"
    )
    group.add_argument(
        "--api-base", type=server_url, help="OpenAI-compatible server URL for --lm (vLLM, SGLang, Ollama)"
    )
    group.add_argument(
        "--api-key-file", type=Path, help="file holding the API key for --lm (default: $PERSONA_RAG_API_KEY, "
        "else $OPENAI_API_KEY)",
    )  # fmt: skip
    group.add_argument("--api-key", help="API key for --lm; avoid: it shows in ps and the shell history")
    group.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per --lm request")
    group.add_argument(
        "--retries", type=int, choices=range(11), default=DEFAULT_RETRIES, metavar="{0..10}",
        help="retries of an --lm request after a 429, 5xx, timeout or refused connection "
        "(exponential backoff: 1, 2, 4 ... s)",
    )  # fmt: skip
    group.add_argument(
        "--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY, help="--lm requests in flight"
    )
    group.add_argument(
        "--encoder", type=encoder_name, default=DEFAULT_ENCODER, help="dense retriever encoder"
    )
    group.add_argument("--k", type=positive_int, default=4, help="profile items per prompt")
    group.add_argument(
        "--max-input-tokens",
        type=positive_int,
        default=512,
        help="prompt budget; profile text gives way first",
    )
    group.add_argument("--max-new-tokens", type=positive_int, default=32, help="longest generated answer")
    group.add_argument(
        "--batch-size", type=positive_int, default=16, help="prompts per forward pass or request batch"
    )
    group.add_argument(
        "--free-generation",
        action="store_true",
        help="generate answers instead of scoring the label set (a server model, --lm, always generates; "
        "its answer is read as a label)",
    )
    group.add_argument(
        "--calibrate", action="store_true", help="calibrate label scores on a content-free input"
    )
    group.add_argument(
        "--label-decision", choices=("argmax", "mean"), default="argmax",
        help="rating tasks: best label, or probability-weighted mean rating",
    )  # fmt: skip
    group.add_argument(
        "--lenient-parsing", action="store_true",
        help="find the label or number inside chatty answers and stem ROUGE, instead of LaMP's "
        "evaluation (the whole answer is the label); figures are then not comparable with LaMP's",
    )  # fmt: skip
    group.add_argument(
        "--label-normalization", choices=LABEL_NORMALIZATIONS, default=DEFAULT_LABEL_NORMALIZATION,
        help="label scoring of multi-token labels (in-process models): sum of token log-probabilities, "
        "or their mean per token",
    )  # fmt: skip
    group.add_argument(
        "--answer-extraction", choices=ANSWER_EXTRACTIONS, default="first-line",
        help="free-text tasks: the answer alone out of the reply (first-line), or the whole reply (none)",
    )  # fmt: skip

"""``persona-rag``: the command line (demo, evaluate, index; the optimizers add finetune, train,
select and report).

Other packages add commands through the ``persona_rag.commands`` entry-point group (a function
that receives the sub-parser collection); the ``optimizers`` package adds the demo and the training
commands that way, so ``persona_rag`` never imports training code. Heavy modules (torch, dspy,
transformers) are imported inside the commands, so ``persona-rag --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

__all__ = [
    "DefaultsOnceFormatter",
    "add_data_options",
    "add_model_options",
    "build_program",
    "encoder_name",
    "lm_string",
    "local_model_name",
    "main",
    "make_console",
    "named_retriever",
    "positive_float",
    "positive_int",
    "retriever_list",
    "server_url",
    "spec_name",
    "task_for",
]


def make_console() -> Any:
    from rich.console import Console

    return Console()


def _quiet_libraries() -> None:
    """Model-loading progress bars and info logs drown the results; keep warnings."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("httpx", "chromadb", "LiteLLM"):
        logging.getLogger(name).setLevel(logging.WARNING)


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


def _generator(args: argparse.Namespace) -> Any:
    import dspy

    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm

    if args.lm:
        lm = dspy.LM(
            args.lm,
            api_base=args.api_base,
            api_key=_api_key(args),
            max_tokens=args.max_new_tokens,
            temperature=0.0,
            timeout=args.timeout,
        )
    else:
        lm = local_lm(args.model, max_tokens=args.max_new_tokens)
    return Generator(
        lm=lm,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        label_scoring=not args.free_generation,
        calibrate=args.calibrate,
        label_decision=args.label_decision,
        label_normalization=args.label_normalization,
        answer_extraction=args.answer_extraction,
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
        generator=_generator(args),
        k=args.k,
        store=store,
        max_input_tokens=args.max_input_tokens,
    )


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--limit -34`` or ``--k 0`` fail at once,
    before any model loads, instead of silently dropping questions or items)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """An ``argparse`` type: a finite number above 0 (learning rates, temperatures, timeouts)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
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


def _evaluate_all(
    args: argparse.Namespace, task: Any, examples: list, kinds: Sequence[str], store: Any = None
) -> list:
    from persona_rag.evaluation import evaluate_program

    results = []
    for kind in kinds:
        program = build_program(args, task, kind, store)
        results.append(evaluate_program(program, examples, name=spec_name(kind), batch_size=args.batch_size))
    return results


def _load_selector(path: Path) -> Any:
    """A trained selector from its ``selector.json`` (written by ``persona-rag select``/``report``)."""
    import json

    from persona_rag.errors import DataError
    from persona_rag.selector import Selector

    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        return Selector(pool=["none", "bm25"]).load_state(state)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a selector state file ({error})") from error


def _evaluate_selector(args: argparse.Namespace, task: Any, examples: list, store: Any = None) -> list:
    """Each pool member, the selector over them, and the pool's oracle bounds."""
    from persona_rag.evaluation import evaluate_program, pool_bounds, scored_selection

    selector = _load_selector(args.selector)
    members = []
    for name, retriever in selector.pool.items():
        program = build_program(args, task, "none", store)
        program.retriever = retriever
        members.append(evaluate_program(program, examples, name=name, batch_size=args.batch_size))
    program = build_program(args, task, "none", store)
    program.selector = selector
    selected = evaluate_program(
        program, examples, name=f"selector ({selector.mode})", batch_size=args.batch_size
    )
    selected = scored_selection(task, examples, members, selected)
    return [*members, selected, *pool_bounds(task, examples, members)]


# ------------------------------------------------------------------------------------ commands
def cmd_evaluate(args: argparse.Namespace) -> int:
    from persona_rag.data import load_lamp
    from persona_rag.evaluation import pool_bounds, results_table, write_results

    split = load_lamp(args.data, args.split, task=args.task, limit=args.limit)
    task = task_for(args, split.task)
    examples = split.examples()
    store = None
    if args.store or args.url:
        from persona_rag.store import ProfileStore

        store = ProfileStore(args.store, url=args.url, task=task, encoder=args.encoder)
        # Retrieve from the store by user id, but only among the question's own profile items: the
        # store holds the user's whole history, later questions' answers included.
        examples = [
            ex.copy(
                profile=None,
                user_id=_store_user(ex),
                profile_ids=[item["id"] for item in ex.profile],
            ).with_inputs("input", "user_id", "profile_ids")
            for ex in examples
        ]
    if args.selector:
        results = _evaluate_selector(args, task, examples, store)
    else:
        results = _evaluate_all(args, task, examples, args.retriever, store)
        if len(results) > 1:
            results += pool_bounds(task, examples, results)
    model = args.lm or args.model
    make_console().print(
        results_table(
            results, title=f"{task.name} {args.split} ({len(examples)} questions, k={args.k}, {model})"
        )
    )
    out = args.out or Path("results") / f"{Path(args.data).name}-{args.split}.json"
    write_results(
        out,
        results,
        task=task.name,
        data=str(args.data),
        split=args.split,
        k=args.k,
        model=model,
        label_normalization=args.label_normalization,  # how the answers were read: tables state it
        answer_extraction=args.answer_extraction,
    )
    make_console().print(f"results written to {out}")
    return 0


def _store_user(question: Any) -> str:
    """The store's user for a question: its user id, or (LaMP's user-based split has none) the
    question itself, whose profile is then a user of its own."""
    return str(question.user_id or question.id)


def cmd_index(args: argparse.Namespace) -> int:
    from persona_rag.data import load_lamp
    from persona_rag.store import ProfileStore

    split = load_lamp(args.data, args.split, task=args.task, limit=args.limit)
    store = ProfileStore(args.store, url=args.url, task=split.task, encoder=args.encoder)
    profiles: dict[str, dict[str, Any]] = {}
    for question in split.questions:
        # A user's stored profile is the union of their questions' profiles: readers pass a
        # question's own item ids (evaluate --store) or a date, so no question sees a later one's.
        items = profiles.setdefault(_store_user(question), {})
        items.update({item.id: item.model_dump(exclude_none=True) for item in question.profile})
    written = store.add_many((user, list(items.values())) for user, items in profiles.items())
    make_console().print(f"{len(profiles)} users, {written} items written to {store.location}")
    return 0


# -------------------------------------------------------------------------------------- parser
def add_model_options(parser: argparse.ArgumentParser) -> None:
    from persona_rag.defaults import (
        ANSWER_EXTRACTIONS,
        DEFAULT_ENCODER,
        DEFAULT_LABEL_NORMALIZATION,
        DEFAULT_LM,
        LABEL_NORMALIZATIONS,
    )

    group = parser.add_argument_group("models")
    group.add_argument(
        "--model",
        type=local_model_name,
        default=DEFAULT_LM,
        help="in-process Hugging Face model name or path",
    )
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


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="task name (default: read from the outputs file)")
    parser.add_argument("--data", required=True, type=Path, help="directory with {split}_questions.json")
    parser.add_argument("--split", default="dev", help="train, dev or test")
    parser.add_argument("--limit", type=positive_int, help="first N questions only")


def _add_store_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--store", type=Path, help="embedded Chroma directory")
    group.add_argument("--url", type=server_url, help="Chroma server URL (chroma run)")


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default exactly once.

    argparse appends ``(default: VALUE)`` unless the help holds ``%(default)s``, so a help text
    that states its default in words (``(default: the whole train split)``) showed it twice, the
    second time as ``None``. Here a help that says ``(default: ...)`` itself is left as written,
    and a required option, which has no default, gets none.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _HelpfulParser(argparse.ArgumentParser):
    """Every command's help shows each option's default (once: :class:`DefaultsOnceFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _HelpfulParser(
        prog="persona-rag",
        description="Personalise an LLM with retrieval from each user's profile, and tune the retrieval "
        "with the LLM's own metric (LaMP; ROPG and RSPG of Salemi et al., SIGIR 2024). Start with "
        "`persona-rag demo`; `persona-rag COMMAND --help` lists a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_HelpfulParser
    )

    index = commands.add_parser(
        "index", help="load a LaMP file's profiles into a Chroma profile store (embedded or a server)"
    )
    add_data_options(index)
    _add_store_options(index, required=True)
    index.add_argument(
        "--encoder", type=encoder_name, default="all-MiniLM-L6-v2", help="the store's embedding encoder"
    )
    index.set_defaults(func=cmd_index)

    evaluate = commands.add_parser(
        "evaluate", help="score retrievers (or a trained selector) on a LaMP-format split: table and JSON"
    )
    add_data_options(evaluate)
    evaluate.add_argument(
        "--retriever",
        type=retriever_list,
        default=["bm25"],
        help="comma-separated: none,random,recency,bm25,dense, or name=DIR for a trained dense encoder",
    )
    evaluate.add_argument("--out", type=Path, help="results JSON (default: results/<data>-<split>.json)")
    evaluate.add_argument(
        "--selector",
        type=Path,
        help="a trained selector's selector.json: evaluate its pool, the selector and the oracle bounds",
    )
    _add_store_options(evaluate, required=False)
    add_model_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    for entry in entry_points(group="persona_rag.commands"):
        entry.load()(commands)  # e.g. the training commands of the optimizers package
    return parser


def _refuse_label_options_for_servers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that read the model's label scores need an in-process model; with ``--lm`` they would
    silently do nothing (a server model generates, and its answer is read as the label), so they
    are refused in one line before anything loads."""
    if not getattr(args, "lm", None):
        return
    unusable = [
        option
        for option, used in (
            ("--calibrate", args.calibrate),
            ("--label-decision mean", args.label_decision == "mean"),
        )
        if used
    ]
    if unusable:
        parser.error(
            f"{' and '.join(unusable)} need(s) label scores from an in-process model (--model); a server "
            "model (--lm) generates its answer, which is read as one of the task's labels"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _refuse_label_options_for_servers(parser, args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    _quiet_libraries()
    if getattr(args, "api_key", None):
        logging.getLogger(__name__).warning(
            "--api-key puts the key in the process list and the shell history; "
            "set $PERSONA_RAG_API_KEY or use --api-key-file instead"
        )
    from persona_rag.errors import PersonaRAGError

    try:
        return args.func(args)
    except PersonaRAGError as error:
        print(f"persona-rag: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

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
from typing import Any, NoReturn

from persona_rag.cli_options import add_model_options, build_program, load_selector, make_console, task_for
from persona_rag.cli_types import encoder_name, positive_int, retriever_list, server_url, spec_name

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

__all__ = ["DefaultsOnceFormatter", "add_data_options", "build_parser", "main"]


def _quiet_libraries() -> None:
    """Model-loading progress bars and info logs drown the results; keep warnings."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("httpx", "chromadb", "LiteLLM"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _evaluate_all(
    args: argparse.Namespace, task: Any, examples: list, kinds: Sequence[str], store: Any = None
) -> list:
    from persona_rag.evaluation import evaluate_program

    results = []
    for kind in kinds:
        program = build_program(args, task, kind, store)
        results.append(evaluate_program(program, examples, name=spec_name(kind), batch_size=args.batch_size))
    return results


def _evaluate_selector(args: argparse.Namespace, task: Any, examples: list, store: Any = None) -> list:
    """Each pool member, the selector over them, and the pool's oracle bounds."""
    from persona_rag.evaluation import evaluate_program, pool_bounds, scored_selection

    selector = load_selector(args.selector)
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
    from persona_rag.evaluation import (
        compare_rows,
        comparison_table,
        pool_bounds,
        results_table,
        write_results,
    )

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
    if args.against:
        _check_row(args, args.against)  # before any answer is computed
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
    comparison = {}
    if args.against:
        comparison = compare_rows(task, examples, results, args.against)
        make_console().print(comparison_table(comparison, args.against))
    out = args.out or Path("results") / f"{Path(args.data).name}-{args.split}.json"
    write_results(
        out,
        results,
        **({"paired_against": args.against, "paired": comparison} if comparison else {}),
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


def _check_row(args: argparse.Namespace, name: str) -> None:
    """``--against`` must name a row the table will have: a retriever of ``--retriever``, or a
    member of the selector's pool or the selector itself."""
    from persona_rag.errors import ConfigError

    if args.selector:
        selector = load_selector(args.selector)
        rows = [*selector.pool, f"selector ({selector.mode})"]
    else:
        rows = [spec_name(kind) for kind in args.retriever]
    if name not in rows:
        raise ConfigError(f"--against {name!r}: no such row; the table's rows are {', '.join(rows)}")


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
    """Every command's help shows each option's default (once: :class:`DefaultsOnceFormatter`),
    and a usage error is one line that says where the options are listed, not argparse's usage
    block followed by the error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (options: {self.prog} --help)\n")


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
        default="bm25",
        help="comma-separated: none,random,recency,bm25,dense, or name=DIR for a trained dense encoder",
    )
    evaluate.add_argument("--out", type=Path, help="results JSON (default: results/<data>-<split>.json)")
    evaluate.add_argument(
        "--selector",
        type=Path,
        help="a trained selector's selector.json: evaluate its pool, the selector and the oracle bounds",
    )
    evaluate.add_argument(
        "--against",
        help="a row to compare every other row with: paired difference, 95%% bootstrap interval and "
        "randomisation p-value per metric, printed and kept in the results JSON (default: none)",
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

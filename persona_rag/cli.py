"""``persona-rag``: demo, index and evaluate from the command line.

Other packages add commands through the ``persona_rag.commands`` entry-point group (a function
that receives the sub-parser collection) and demo rows through ``persona_rag.demo_steps``
(``step(args, task, data_dir, dev_examples) -> EvaluationResult``); the ``optimizers`` package adds
the training commands and the demo's tuning step that way, so ``persona_rag`` never imports
training code.
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
    "add_data_options",
    "add_model_options",
    "build_program",
    "main",
    "make_console",
    "named_retriever",
    "retriever_list",
    "spec_name",
]

DEMO_RETRIEVERS = ("none", "random", "recency", "bm25", "dense")


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


def _generator(args: argparse.Namespace) -> Any:
    import dspy

    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm

    if args.lm:
        lm = dspy.LM(
            args.lm,
            api_base=args.api_base,
            api_key=args.api_key or os.environ.get("OPENAI_API_KEY"),
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


def build_program(args: argparse.Namespace, task: Any, kind: str, store: Any = None) -> Any:
    """A single-retriever program over the generator the options describe (``kind``: a spec)."""
    from persona_rag.program import PersonalizedRAG

    return PersonalizedRAG(
        task=task,
        retriever=named_retriever(kind, args.encoder),
        generator=_generator(args),
        k=args.k,
        store=store,
        max_input_tokens=args.max_input_tokens,
    )


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
    examples = split.examples()
    store = None
    if args.store or args.url:
        from persona_rag.store import ProfileStore

        store = ProfileStore(args.store, url=args.url, task=split.task, encoder=args.encoder)
        examples = [ex.copy(profile=None) for ex in examples]  # retrieve from the store by user id
    if args.selector:
        results = _evaluate_selector(args, split.task, examples, store)
    else:
        results = _evaluate_all(args, split.task, examples, args.retriever, store)
        if len(results) > 1:
            results += pool_bounds(split.task, examples, results)
    model = args.lm or args.model
    make_console().print(
        results_table(
            results, title=f"{split.task.name} {args.split} ({len(examples)} questions, k={args.k}, {model})"
        )
    )
    out = args.out or Path("results") / f"{Path(args.data).name}-{args.split}.json"
    write_results(
        out,
        results,
        task=split.task.name,
        data=str(args.data),
        split=args.split,
        k=args.k,
        model=model,
        label_normalization=args.label_normalization,  # how the answers were read: tables state it
        answer_extraction=args.answer_extraction,
    )
    make_console().print(f"results written to {out}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from persona_rag.data import load_lamp
    from persona_rag.store import ProfileStore

    split = load_lamp(args.data, args.split, task=args.task, limit=args.limit)
    store = ProfileStore(args.store, url=args.url, task=split.task, encoder=args.encoder)
    profiles = {}
    for question in split.questions:
        # Without user ids (LaMP's user-based split) each question's profile is its own user.
        user = question.user_id or question.id
        items = profiles.setdefault(user, {})
        items.update({item.id: item.model_dump(exclude_none=True) for item in question.profile})
    written = store.add_many((user, list(items.values())) for user, items in profiles.items())
    make_console().print(f"{len(profiles)} users, {written} items written to {store.location}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from persona_rag.data import load_lamp, make_sample_task
    from persona_rag.evaluation import results_table, write_results
    from persona_rag.store import ProfileStore

    out = Path(args.out)
    data = make_sample_task(out / "data", n_users=args.users, seed=args.seed)
    split = load_lamp(data, "dev")
    examples = split.examples()
    console = make_console()
    console.print(f"sample task: {len(examples)} dev questions of {args.users} users in {data}")
    results = _evaluate_all(args, split.task, examples, DEMO_RETRIEVERS)

    # The same dense retrieval served by an embedded Chroma store. Each user's store holds the
    # history before their first dev question, so no question can see its own future.
    shutil.rmtree(out / "store", ignore_errors=True)
    store = ProfileStore(out / "store", task=split.task, encoder=args.encoder)
    first: dict[str, Any] = {}
    for ex in examples:
        first.setdefault(ex.user_id, ex.profile)
    store.add_many(first.items())
    stored = [ex.copy(profile=None) for ex in examples]
    [store_result] = _evaluate_all(args, split.task, stored, ["dense"], store)
    store_result.name = "dense (Chroma store)"
    results.append(store_result)
    for entry in entry_points(group="persona_rag.demo_steps"):
        # e.g. a short ROPG tuning step from the optimizers package
        results.append(entry.load()(args, split.task, data, examples))

    console.print(
        results_table(
            results, title=f"persona-rag demo: {split.task.name}-format sample, dev, k={args.k}, {args.model}"
        )
    )
    write_results(out / "demo_results.json", results, task=split.task.name, k=args.k, model=args.model)
    console.print(f"results written to {out / 'demo_results.json'}")
    return 0


# -------------------------------------------------------------------------------------- parser
def add_model_options(parser: argparse.ArgumentParser) -> None:
    from persona_rag.encoders import DEFAULT_ENCODER
    from persona_rag.generator import ANSWER_EXTRACTIONS, DEFAULT_LABEL_NORMALIZATION
    from persona_rag.lm import DEFAULT_LM, LABEL_NORMALIZATIONS

    group = parser.add_argument_group("models")
    group.add_argument("--model", default=DEFAULT_LM, help="in-process Hugging Face model name or path")
    group.add_argument("--lm", help="a dspy.LM model string instead, e.g. openai/meta-llama/Llama-3.1-8B")
    group.add_argument("--api-base", help="OpenAI-compatible server URL for --lm (vLLM, SGLang, Ollama)")
    group.add_argument("--api-key", help="API key for --lm (default: $OPENAI_API_KEY)")
    group.add_argument("--timeout", type=float, default=60.0, help="seconds per --lm request")
    group.add_argument("--encoder", default=DEFAULT_ENCODER, help="dense retriever encoder")
    group.add_argument("--k", type=int, default=4, help="profile items per prompt")
    group.add_argument("--max-input-tokens", type=int, default=512)
    group.add_argument("--max-new-tokens", type=int, default=32)
    group.add_argument("--batch-size", type=int, default=16)
    group.add_argument(
        "--free-generation", action="store_true", help="generate answers instead of scoring the label set"
    )
    group.add_argument(
        "--calibrate", action="store_true", help="calibrate label scores on a content-free input"
    )
    group.add_argument(
        "--label-decision", choices=("argmax", "mean"), default="argmax",
        help="rating tasks: best label, or probability-weighted mean rating",
    )  # fmt: skip
    group.add_argument(
        "--label-normalization", choices=LABEL_NORMALIZATIONS, default=DEFAULT_LABEL_NORMALIZATION,
        help="label scoring of multi-token labels: sum of token log-probabilities, or their mean per token",
    )  # fmt: skip
    group.add_argument(
        "--answer-extraction", choices=ANSWER_EXTRACTIONS, default="first-line",
        help="free-text tasks: the answer alone out of the reply (first-line), or the whole reply (none)",
    )  # fmt: skip


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="task name (default: read from the outputs file)")
    parser.add_argument("--data", required=True, type=Path, help="directory with {split}_questions.json")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, help="first N questions only")


def _add_store_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--store", type=Path, help="embedded Chroma directory")
    group.add_argument("--url", help="Chroma server URL (chroma run)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persona-rag", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="compare retrievers on a generated sample task (embedded defaults)"
    )
    demo.add_argument("--out", default="runs/demo", help="where the sample data, store and results go")
    demo.add_argument("--users", type=int, default=12)
    demo.add_argument("--seed", type=int, default=0)
    add_model_options(demo)
    demo.set_defaults(func=cmd_demo)

    index = commands.add_parser("index", help="load a questions file's profiles into a profile store")
    add_data_options(index)
    _add_store_options(index, required=True)
    index.add_argument("--encoder", default="all-MiniLM-L6-v2")
    index.set_defaults(func=cmd_index)

    evaluate = commands.add_parser("evaluate", help="evaluate retrievers on a LaMP-format split")
    add_data_options(evaluate)
    evaluate.add_argument(
        "--retriever",
        type=retriever_list,
        default=["bm25"],
        help="comma-separated: none,random,recency,bm25,dense, or name=DIR for a trained dense encoder",
    )
    evaluate.add_argument("--out", type=Path, help="results JSON (default results/<data>-<split>.json)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    _quiet_libraries()
    from persona_rag.errors import PersonaRAGError

    try:
        return args.func(args)
    except PersonaRAGError as error:
        print(f"persona-rag: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

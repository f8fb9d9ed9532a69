"""``persona-rag select``: train a selector over a pool of retrievers (RSPG-Pre, RSPG-Post)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import (
    SELECTOR_LAYERS_HELP,
    add_signal_option,
    add_training_options,
    print_history,
    train_and_val,
)
from persona_rag.cli_options import (
    add_model_options,
    build_program,
    named_retriever,
    positive_float,
    positive_int,
    retriever_list,
    spec_name,
)

__all__ = ["add_select", "cmd_select"]


def cmd_select(args: argparse.Namespace) -> int:
    """Train a selector over ``--pool`` on the reader's feedback; the main process of a launch
    saves the program and the selector."""
    from optimizers import distributed
    from optimizers.rspg import RSPG, RSPGConfig
    from persona_rag.portable import write_portable_json
    from persona_rag.selector import Selector

    out = args.out or Path("runs") / f"rspg-{args.mode}"
    distributed.initialize()
    train, val, task = train_and_val(args)
    config = RSPGConfig(
        output_dir=out,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        patience=args.patience,
        seed=args.seed,
        temperature=args.temperature,
        signal=args.signal,
        max_examples=args.max_examples,
        max_val_examples=args.max_val_examples,
        feedback_cache=args.feedback_cache,
        resume=not args.overwrite,
        trainable_layers=args.trainable_layers,
        gradient_checkpointing=args.trainable_layers is None,
    )
    program = build_program(args, task, "none")
    program.selector = Selector(
        pool={spec_name(spec): named_retriever(spec, args.encoder) for spec in args.pool},
        mode=args.mode,
        model=args.selector_encoder,
    )
    optimizer = RSPG(config=config)
    tuned = optimizer.compile(program, trainset=train, valset=val)
    if not distributed.is_main():  # the main process writes and reports for the whole launch
        return 0
    tuned.save(str(out / "program.json"))
    write_portable_json(out / "selector.json", tuned.selector.dump_state(), root=out)
    history = optimizer.result.history if optimizer.result else []
    print_history(
        history,
        f"RSPG-{args.mode.capitalize()} on {Path(args.data).name}",
        out,
        f"evaluate it with: persona-rag evaluate --selector {out / 'selector.json'} --data ... --model ...",
    )
    return 0


def add_select(commands: Any) -> None:
    """Register ``persona-rag select`` (RSPG-Pre / RSPG-Post)."""
    select = commands.add_parser("select", help="train a selector over a pool of retrievers (RSPG)")
    select.add_argument(
        "--mode",
        choices=("pre", "post"),
        required=True,
        help="score each prompt (pre) or prompt + answer (post)",
    )
    select.add_argument(
        "--pool",
        type=retriever_list,
        default="none,recency,bm25,dense",
        help="comma-separated retriever specs; name=DIR adds a trained dense encoder (e.g. ROPG's best)",
    )
    select.add_argument("--selector-encoder", default="all-MiniLM-L6-v2", help="the selector's encoder")
    select.add_argument(
        "--out", type=Path, help="the selector, checkpoints and history (default: runs/rspg-<mode>)"
    )
    select.add_argument(
        "--feedback-cache", type=Path, default=Path("runs/feedback.sqlite"), help="cache of the LLM's answers"
    )
    select.add_argument("--temperature", type=positive_float, default=0.1, help="target temperature")
    select.add_argument("--trainable-layers", type=positive_int, help=SELECTOR_LAYERS_HELP)
    add_training_options(select, lr=1e-5, epochs=20, grad_accum=8)
    add_signal_option(select)
    add_model_options(select)
    select.set_defaults(func=cmd_select)

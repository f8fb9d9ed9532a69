"""``persona-rag finetune``: teach the local reader to use the profile items in its prompts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import add_training_options, print_history, train_and_val
from persona_rag.cli_options import add_model_options, build_program, positive_int, retriever_list

__all__ = ["add_finetune", "cmd_finetune"]


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune the reader with each retriever filling the prompts in turn, validated on
    questions carved from train; the main process of a launch saves and reports."""
    from optimizers import distributed
    from optimizers.reader import ReaderFinetune, ReaderFinetuneConfig
    from persona_rag.retrievers import make_retriever

    distributed.initialize()  # before any model loads: under a launch, "cuda" is this rank's GPU
    train, val, task = train_and_val(args)
    config = ReaderFinetuneConfig(
        output_dir=args.out,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        trainable_layers=args.trainable_layers,
        max_examples=args.max_examples,
        max_val_examples=args.max_val_examples,
        patience=args.patience,
        k=args.k,
        seed=args.seed,
        resume=not args.overwrite,
    )
    retrievers = [
        make_retriever(kind, **({"encoder": args.encoder} if kind == "dense" else {}))
        for kind in args.retrievers
    ]
    optimizer = ReaderFinetune(config=config, retrievers=retrievers)
    program = build_program(args, task, args.retrievers[0])
    tuned = optimizer.compile(program, trainset=train, valset=val)
    if not distributed.is_main():  # the main process writes and reports for the whole launch
        return 0
    tuned.save(str(Path(args.out) / "program.json"))
    history = optimizer.result.history if optimizer.result else []
    print_history(
        history,
        f"reader fine-tuning on {Path(args.data).name}",
        Path(args.out),
        f"use it with: persona-rag evaluate --model {Path(args.out) / 'best'} ...",
    )
    return 0


def add_finetune(commands: Any) -> None:
    """Register ``persona-rag finetune``."""
    finetune = commands.add_parser(
        "finetune", help="fine-tune the local reader with retrieved items in its prompts"
    )
    finetune.add_argument(
        "--retrievers",
        type=retriever_list,
        default="none,recency,bm25,dense",
        help="retrievers filling the training prompts, in turn",
    )
    finetune.add_argument("--out", type=Path, default=Path("runs/reader"), help="checkpoints and history")
    finetune.add_argument(
        "--max-length",
        type=positive_int,
        help="cap on prompt + answer tokens (default: none; prompts already fit --max-input-tokens, "
        "as at inference)",
    )
    finetune.add_argument(
        "--trainable-layers",
        type=positive_int,
        help="train only the last N decoder layers and the final norm, embeddings frozen: less memory "
        "and faster steps (default: every weight)",
    )
    add_training_options(finetune, lr=5e-5, epochs=2, grad_accum=1, max_examples=512, patience=1)
    add_model_options(finetune)
    finetune.set_defaults(func=cmd_finetune)

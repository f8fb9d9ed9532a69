"""Training commands that ``optimizers`` adds to the ``persona-rag`` CLI (entry point group
``persona_rag.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona_rag.cli import add_model_options, build_program, make_console, retriever_list

__all__ = ["add_finetune"]


def cmd_finetune(args: argparse.Namespace) -> int:
    from rich.table import Table

    from optimizers.reader import ReaderFinetune, ReaderFinetuneConfig
    from persona_rag.data import load_lamp
    from persona_rag.retrievers import make_retriever

    train = load_lamp(args.data, args.train_split, task=args.task)
    val = load_lamp(args.data, args.val_split, task=train.task)
    config = ReaderFinetuneConfig(
        output_dir=args.out,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        max_examples=args.max_examples,
        max_val_examples=args.max_val_examples,
        patience=args.patience,
        k=args.k,
        seed=args.seed,
    )
    retrievers = [
        make_retriever(kind, **({"encoder": args.encoder} if kind == "dense" else {}))
        for kind in args.retrievers
    ]
    optimizer = ReaderFinetune(config=config, retrievers=retrievers)
    program = build_program(args, train.task, args.retrievers[0])
    tuned = optimizer.compile(program, trainset=train.examples(), valset=val.examples())
    tuned.save(str(Path(args.out) / "program.json"))
    history = optimizer.result.history if optimizer.result else []
    table = Table(title=f"reader fine-tuning on {Path(args.data).name} ({len(history) - 1} epochs)")
    for key in dict.fromkeys(k for row in history for k in row):
        table.add_column(key, justify="right")
    for row in history:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    console = make_console()
    console.print(table)
    console.print(f"best checkpoint: {Path(args.out) / 'best'}; curves: {Path(args.out) / 'curves.png'}")
    console.print(f"use it with: persona-rag evaluate --model {Path(args.out) / 'best'} ...")
    return 0


def add_finetune(commands: Any) -> None:
    """Register ``persona-rag finetune``."""
    finetune = commands.add_parser(
        "finetune", help="fine-tune the local reader with retrieved items in its prompts"
    )
    finetune.add_argument("--task", help="task name (default: read from the outputs file)")
    finetune.add_argument("--data", required=True, type=Path)
    finetune.add_argument("--train-split", default="train")
    finetune.add_argument("--val-split", default="dev")
    finetune.add_argument("--retrievers", type=retriever_list, default=["none", "recency", "bm25", "dense"],
                          help="retrievers filling the training prompts, in turn")  # fmt: skip
    finetune.add_argument("--out", type=Path, default=Path("runs/reader"))
    finetune.add_argument("--lr", type=float, default=5e-5)
    finetune.add_argument("--epochs", type=int, default=2)
    finetune.add_argument("--train-batch-size", type=int, default=8)
    finetune.add_argument("--grad-accum", type=int, default=1)
    finetune.add_argument("--max-length", type=int, default=256)
    finetune.add_argument("--max-examples", type=int, default=512)
    finetune.add_argument("--max-val-examples", type=int, default=100)
    finetune.add_argument("--patience", type=int, default=1)
    finetune.add_argument("--seed", type=int, default=0)
    add_model_options(finetune)
    finetune.set_defaults(func=cmd_finetune)

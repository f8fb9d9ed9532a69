"""Training commands that ``optimizers`` adds to the ``persona-rag`` CLI (entry point group
``persona_rag.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona_rag.cli import add_model_options, build_program, make_console, retriever_list

__all__ = ["add_finetune", "add_train", "ropg_demo_step"]


def _report(history: list[dict[str, Any]], title: str, out: Path, use_hint: str) -> None:
    """Print the per-epoch history as a table and where the results are."""
    from rich.table import Table

    table = Table(title=title)
    for key in dict.fromkeys(k for row in history for k in row):
        table.add_column(key, justify="right")
    for row in history:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()])
    console = make_console()
    console.print(table)
    console.print(
        f"best checkpoint: {out / 'best'}; curves: {out / 'curves.png'}; program: {out / 'program.json'}"
    )
    console.print(use_hint)


def cmd_finetune(args: argparse.Namespace) -> int:
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
    _report(
        history,
        f"reader fine-tuning on {Path(args.data).name}",
        Path(args.out),
        f"use it with: persona-rag evaluate --model {Path(args.out) / 'best'} ...",
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
    from persona_rag.data import load_lamp

    out = args.out or Path("runs") / f"ropg-{args.method}"
    train = load_lamp(args.data, args.train_split, task=args.task)
    val = load_lamp(args.data, args.val_split, task=train.task)
    common = {
        "output_dir": out,
        "learning_rate": args.lr,
        "epochs": args.epochs,
        "batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.grad_accum,
        "patience": args.patience,
        "seed": args.seed,
        "candidates": args.candidates,
        "signal": args.signal,
        "max_examples": args.max_examples,
        "max_val_examples": args.max_val_examples,
        "feedback_cache": args.feedback_cache,
    }
    if args.method == "kd":
        optimizer: Any = ROPG_KD(config=ROPGKDConfig(**common, temperature=args.temperature))
    else:
        optimizer = ROPG_RL(config=ROPGConfig(**common))
    program = build_program(args, train.task, "dense")
    tuned = optimizer.compile(program, trainset=train.examples(), valset=val.examples())
    tuned.save(str(out / "program.json"))
    history = optimizer.result.history if optimizer.result else []
    _report(
        history,
        f"ROPG-{args.method.upper()} on {Path(args.data).name}",
        out,
        f"use it with: persona-rag evaluate --retriever dense --encoder {out / 'best'} ...",
    )
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
    finetune.add_argument(
        "--retrievers",
        type=retriever_list,
        default=["none", "recency", "bm25", "dense"],
        help="retrievers filling the training prompts, in turn",
    )
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


def add_train(commands: Any) -> None:
    """Register ``persona-rag train`` (ROPG-KD / ROPG-RL)."""
    train = commands.add_parser(
        "train", help="tune the dense retriever with the LLM's metric (ROPG-KD / ROPG-RL)"
    )
    train.add_argument("--method", choices=("kd", "rl"), required=True)
    train.add_argument("--task", help="task name (default: read from the outputs file)")
    train.add_argument("--data", required=True, type=Path)
    train.add_argument("--train-split", default="train")
    train.add_argument("--val-split", default="dev")
    train.add_argument("--out", type=Path, help="default runs/ropg-<method>")
    train.add_argument("--feedback-cache", type=Path, default=Path("runs/feedback.sqlite"))
    train.add_argument("--candidates", type=int, default=16, help="l, candidates per example")
    train.add_argument("--signal", choices=("metric", "likelihood"), default="metric")
    train.add_argument("--temperature", type=float, default=0.1, help="KD target temperature")
    train.add_argument("--lr", type=float, default=1e-5)
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--train-batch-size", type=int, default=8)
    train.add_argument("--grad-accum", type=int, default=8)
    train.add_argument("--max-examples", type=int)
    train.add_argument("--max-val-examples", type=int, default=100)
    train.add_argument("--patience", type=int, default=3)
    train.add_argument("--seed", type=int, default=0)
    add_model_options(train)
    train.set_defaults(func=cmd_train)


def ropg_demo_step(args: argparse.Namespace, task: Any, data: Path, dev: list) -> Any:
    """The demo's tuning step: a short ROPG-KD run on the sample task's train split.

    It uses the cheap likelihood signal (log p(gold) per candidate), which still ranks candidates
    when the offline 135M reader gives the same answer whatever it reads.
    """
    from optimizers.ropg import ROPG_KD, ROPGKDConfig
    from persona_rag.data import load_lamp
    from persona_rag.evaluation import evaluate_program

    train = load_lamp(data, "train").examples()
    held_out = max(2, len(train) // 6)  # validation for checkpoint choice; dev stays unseen
    out = Path(args.out)
    config = ROPGKDConfig(
        output_dir=out / "ropg-kd",
        feedback_cache=out / "feedback.sqlite",
        candidates=8,
        epochs=2,
        learning_rate=1e-4,
        batch_size=8,
        gradient_accumulation_steps=1,
        signal="likelihood",
        max_val_examples=held_out,
        patience=None,
        resume=False,
    )
    tuned = ROPG_KD(config=config).compile(
        build_program(args, task, "dense"), trainset=train[:-held_out], valset=train[-held_out:]
    )
    return evaluate_program(tuned, dev, name="dense + ROPG-KD (2 epochs)", batch_size=args.batch_size)

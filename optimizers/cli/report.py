"""``persona-rag report``: the paper's Table 3 on one task directory (:mod:`optimizers.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import (
    FREE_TIES_HELP,
    SELECTOR_LAYERS_HELP,
    add_overwrite,
    add_signal_option,
    signal_name,
)
from persona_rag.cli_options import (
    add_model_options,
    build_program,
    make_console,
    positive_float,
    positive_int,
)

__all__ = ["add_report", "cmd_report"]


def cmd_report(args: argparse.Namespace) -> int:
    """Train every row of Table 3 from one dense program and write the tables of the reported
    splits."""
    from optimizers.report import ReportConfig, markdown_table, run_report
    from persona_rag.data import load_lamp

    train = load_lamp(args.data, args.train_split, task=args.task).require_golds("training")
    evalsets = {
        split: load_lamp(args.data, split, task=train.task, limit=limit)
        .require_golds("a reported split")
        .examples()
        for split, limit in args.splits
    }
    out = args.out or Path("reports") / Path(args.data).name
    config = ReportConfig(
        output_dir=out,
        train_examples=args.train_examples,
        rspg_train_examples=args.rspg_train_examples,
        val_examples=args.val_examples,
        candidates=args.candidates,
        signal=args.signal,
        kd_signal=args.kd_signal,
        kd_free_ties=args.kd_free_ties,
        ropg_epochs=args.ropg_epochs,
        ropg_learning_rate=args.ropg_lr,
        rspg_epochs=args.rspg_epochs,
        rspg_learning_rate=args.rspg_lr,
        rspg_trainable_layers=args.rspg_trainable_layers,
        set_pl=not args.no_set_pl,
        ropg_checkpoints={
            name: path
            for name, path in (("ropg-rl", args.ropg_rl), ("ropg-kd", args.ropg_kd), ("set-pl", args.set_pl))
            if path
        },
        feedback_cache=args.feedback_cache,
        seed=args.seed,
        resume=not args.overwrite,
    )
    report = run_report(
        build_program(args, train.task, "dense"), trainset=train.examples(), evalsets=evalsets, config=config
    )
    console = make_console()
    console.print(markdown_table(report))
    console.print(f"written: {out / 'table.md'}, {out / 'table.png'}, {out / 'report.json'}")
    return 0


def _split_specs(text: str) -> list[tuple[str, int | None]]:
    """``test,dev:200`` -> ``[("test", None), ("dev", 200)]``."""
    specs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, limit = part.partition(":")
        if limit and not (limit.isdigit() and int(limit) > 0):
            raise argparse.ArgumentTypeError(
                f"{part!r}: the question count after ':' must be a positive integer"
            )
        specs.append((name, int(limit) if limit else None))
    if not specs:
        raise argparse.ArgumentTypeError("name at least one split")
    return specs


def add_report(commands: Any) -> None:
    """Register ``persona-rag report`` (the paper's Table 3 on one task directory)."""
    report = commands.add_parser(
        "report",
        help="train ROPG-RL/KD, Set-PL and RSPG-Pre/Post and write the paper's Table 3 for a task",
    )
    report.add_argument("--task", help="task name (default: read from the outputs file)")
    report.add_argument("--data", required=True, type=Path, help="directory with {split}_questions.json")
    report.add_argument("--train-split", default="train", help="the split trained on")
    report.add_argument(
        "--splits",
        type=_split_specs,
        default="test,dev",  # argparse parses a string default with ``type``; help shows it as typed
        help="comma-separated splits the table reports (never trained or validated on); "
        "SPLIT:N keeps its first N questions, e.g. test,dev:200",
    )
    report.add_argument(
        "--out", type=Path, help="tables, checkpoints and results (default: reports/<data dir name>)"
    )
    report.add_argument(
        "--train-examples", type=positive_int, help="ROPG training questions (default: the whole train split)"
    )
    report.add_argument(
        "--rspg-train-examples",
        type=positive_int,
        help="selector training questions (default: as --train-examples)",
    )
    report.add_argument(
        "--val-examples",
        type=positive_int,
        default=150,
        help="validation carved from train: users' latest questions",
    )
    report.add_argument("--candidates", type=positive_int, default=16, help="ROPG's l")
    report.add_argument("--ropg-epochs", type=positive_int, default=3, help="ROPG epochs")
    report.add_argument("--ropg-lr", type=positive_float, default=1e-5, help="ROPG learning rate")
    report.add_argument("--rspg-epochs", type=positive_int, default=5, help="RSPG epochs")
    report.add_argument("--rspg-lr", type=positive_float, default=5e-5, help="RSPG learning rate")
    report.add_argument("--rspg-trainable-layers", type=positive_int, help=SELECTOR_LAYERS_HELP)
    add_signal_option(report)
    report.add_argument(
        "--kd-signal", type=signal_name, help="ROPG-KD's own feedback signal (default: --signal)"
    )
    report.add_argument("--kd-free-ties", action="store_true", help=f"ROPG-KD: {FREE_TIES_HELP}")
    report.add_argument("--ropg-rl", type=Path, help="a trained ROPG-RL encoder to use instead of training")
    report.add_argument("--ropg-kd", type=Path, help="a trained ROPG-KD encoder to use instead of training")
    report.add_argument("--set-pl", type=Path, help="a trained Set-PL encoder to use instead of training")
    report.add_argument(
        "--no-set-pl",
        action="store_true",
        help="leave the Set-PL row out: on generation tasks its sampled sets cost more reader calls "
        "than every other stage together",
    )
    report.add_argument(
        "--feedback-cache", type=Path, help="cache of the LLM's answers (default: <out>/feedback.sqlite)"
    )
    report.add_argument("--seed", type=int, default=0, help="shuffling and initialisation seed")
    add_overwrite(report)
    add_model_options(report)
    report.set_defaults(func=cmd_report)

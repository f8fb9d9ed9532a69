"""``persona-rag report``: the paper's Table 3 on one task directory (:mod:`optimizers.report`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.report.config import ReportConfig
from persona_rag.cli_options import add_model_options, build_program, make_console
from persona_rag.config_flags import ConfigFlags

__all__ = ["FLAGS", "add_report", "cmd_report"]

FLAGS = ConfigFlags(ReportConfig, exclude=("output_dir", "ropg_checkpoints"))
"""The report's settings as flags; the output folder is named after ``--data``, and the trained
encoders to reuse are one path flag each (``--ropg-kd DIR``)."""


def cmd_report(args: argparse.Namespace) -> int:
    """Train every row of Table 3 from one dense program and write the tables of the reported
    splits."""
    from optimizers.report import markdown_table, run_report
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
        **FLAGS.values(ReportConfig, args),
        output_dir=out,
        ropg_checkpoints={
            name: path
            for name, path in (("ropg-rl", args.ropg_rl), ("ropg-kd", args.ropg_kd), ("set-pl", args.set_pl))
            if path
        },
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
    report.add_argument("--ropg-rl", type=Path, help="a trained ROPG-RL encoder to use instead of training")
    report.add_argument("--ropg-kd", type=Path, help="a trained ROPG-KD encoder to use instead of training")
    report.add_argument("--set-pl", type=Path, help="a trained Set-PL encoder to use instead of training")
    FLAGS.add_to(report)
    add_model_options(report)
    report.set_defaults(func=cmd_report)

"""What the training commands share: the data options, the validation carved from train, and the
history table each command prints at the end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona_rag.cli_options import make_console

__all__ = ["add_training_data_options", "print_history", "train_and_val"]


def print_history(history: list[dict[str, Any]], title: str, out: Path, use_hint: str) -> None:
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


def train_and_val(args: argparse.Namespace) -> tuple[list, list, Any]:
    """The training examples, the validation examples and the task of a training command.

    By default the validation set is carved from the training split (each user's latest
    question), so checkpoint choice never sees the dev or test questions a table reports.
    """
    from persona_rag.data import carve_validation, load_lamp

    train = load_lamp(args.data, args.train_split, task=args.task).require_golds("training")
    if args.val_split == "carve":
        carved = carve_validation(train.examples(), size=args.max_val_examples, seed=args.seed)
        return carved.train, carved.val, train.task
    val = load_lamp(args.data, args.val_split, task=train.task).require_golds("validation")
    return train.examples(), val.examples(), train.task


def add_training_data_options(parser: argparse.ArgumentParser) -> None:
    """The data options of the commands that train on a split and validate on questions carved from
    it (their settings are flags built from their configs: :mod:`persona_rag.config_flags`)."""
    parser.add_argument("--task", help="task name (default: read from the outputs file)")
    parser.add_argument("--data", required=True, type=Path, help="directory with {split}_questions.json")
    parser.add_argument("--train-split", default="train", help="the split trained on")
    parser.add_argument(
        "--val-split",
        default="carve",
        help="validation for checkpoint choice: 'carve' takes each user's latest question of the "
        "train split (so dev and test stay unseen), or a split name",
    )

"""What the training commands share: the data and training-loop options, ``--signal``, the
validation carved from train, and the history table each command prints at the end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona_rag.cli_options import make_console, non_negative_int, positive_float, positive_int

__all__ = [
    "FREE_TIES_HELP",
    "SELECTOR_LAYERS_HELP",
    "add_overwrite",
    "add_signal_option",
    "add_training_options",
    "print_history",
    "signal_name",
    "train_and_val",
]

# Help texts of options that two commands offer (``train`` and ``report``; ``select`` and ``report``).
FREE_TIES_HELP = (
    "distil only how groups of equal score compare, leaving the order of tied candidates to the "
    "retriever (default: the paper's Eq. 4, which also pulls tied candidates to one score)"
)

SELECTOR_LAYERS_HELP = (
    "train only the selector encoder's last N layers, about half the step time of every weight with "
    "activation checkpointing (default: every weight)"
)


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


def add_training_options(
    parser: argparse.ArgumentParser,
    *,
    lr: float,
    epochs: int,
    grad_accum: int,
    max_examples: int | None = None,
    patience: int = 3,
) -> None:
    """The data and training-loop options every training command shares (defaults per command)."""
    parser.add_argument("--task", help="task name (default: read from the outputs file)")
    parser.add_argument("--data", required=True, type=Path, help="directory with {split}_questions.json")
    parser.add_argument("--train-split", default="train", help="the split trained on")
    parser.add_argument(
        "--val-split",
        default="carve",
        help="validation for checkpoint choice: 'carve' takes each user's latest question of the "
        "train split (so dev and test stay unseen), or a split name",
    )
    parser.add_argument("--lr", type=positive_float, default=lr, help="peak learning rate")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the training set")
    parser.add_argument("--train-batch-size", type=positive_int, default=8, help="examples per forward pass")
    parser.add_argument(
        "--grad-accum",
        type=positive_int,
        default=grad_accum,
        help="forward passes per optimizer step, split over the processes of a launch",
    )
    parser.add_argument(
        "--max-examples",
        type=positive_int,
        default=max_examples,
        help="first N training questions (None: all)",
    )
    parser.add_argument(
        "--max-val-examples", type=positive_int, default=100, help="validation questions scored"
    )
    parser.add_argument(
        "--patience",
        type=non_negative_int,
        default=patience,
        help="stop after this many epochs without improvement",
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffling and initialisation seed")
    add_overwrite(parser)


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start fresh, replacing a resume state in --out (by default a run resumes it, and a "
        "state of a different run there is an error)",
    )  # fmt: skip


def signal_name(text: str) -> str:
    """A ``--signal`` value, checked when parsed (imported here: the module loads torch and dspy, which
    ``--help`` must not wait for)."""
    from optimizers.feedback import SIGNALS

    if text not in SIGNALS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SIGNALS)}; got {text!r}")
    return text


def add_signal_option(parser: argparse.ArgumentParser) -> None:
    """``--signal`` of the trainers that learn from LLM feedback (ROPG, RSPG)."""
    parser.add_argument(
        "--signal",
        type=signal_name,
        default="auto",
        help="what the LLM feedback scores: metric (the paper's Eval), likelihood (log p(gold)), "
        "metric+likelihood (Eval, ties broken by log p(gold)), expected (Eval expected under the "
        "reader's label distribution; label tasks); auto: metric+likelihood for a local model, metric for "
        "a server",
    )

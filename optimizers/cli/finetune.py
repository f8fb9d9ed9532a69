"""``persona-rag finetune``: teach the local reader to use the profile items in its prompts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import add_training_data_options, print_history, train_and_val
from optimizers.configs import ReaderFinetuneConfig
from persona_rag.cli_options import add_model_options, build_program
from persona_rag.cli_types import retriever_list
from persona_rag.config_flags import ConfigFlags

__all__ = ["FLAGS", "add_finetune", "cmd_finetune"]

FLAGS = ConfigFlags(ReaderFinetuneConfig, exclude=("k",))
"""The reader fine-tune's settings as flags; its ``k`` is the model options' ``--k``, which fills
the prompts at inference too."""


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune the reader with each retriever filling the prompts in turn, validated on
    questions carved from train; the main process of a launch saves and reports."""
    from optimizers import distributed
    from optimizers.reader import ReaderFinetune
    from persona_rag.retrievers import make_retriever

    distributed.initialize()  # before any model loads: under a launch, "cuda" is this rank's GPU
    train, val, task = train_and_val(args)
    config = ReaderFinetuneConfig(**FLAGS.values(ReaderFinetuneConfig, args), k=args.k)
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
    add_training_data_options(finetune)
    FLAGS.add_to(finetune)
    add_model_options(finetune)
    finetune.set_defaults(func=cmd_finetune)

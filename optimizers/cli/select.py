"""``persona-rag select``: train a selector over a pool of retrievers (RSPG-Pre, RSPG-Post)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import add_training_data_options, print_history, train_and_val
from optimizers.configs import RSPGConfig
from persona_rag.cli_options import add_model_options, build_program, named_retriever
from persona_rag.cli_types import retriever_list, spec_name
from persona_rag.config_flags import ConfigFlags

__all__ = ["FLAGS", "add_select", "cmd_select"]

FLAGS = ConfigFlags(RSPGConfig, exclude=("output_dir", "gradient_checkpointing"))
"""RSPG's settings as flags; the output folder is named after ``--mode``, and activation
checkpointing is on exactly when every weight trains (no ``--trainable-layers``)."""


def cmd_select(args: argparse.Namespace) -> int:
    """Train a selector over ``--pool`` on the reader's feedback; the main process of a launch
    saves the program and the selector."""
    from optimizers import distributed
    from optimizers.rspg import RSPG
    from persona_rag.portable import write_portable_json
    from persona_rag.selector import Selector

    out = args.out or Path("runs") / f"rspg-{args.mode}"
    distributed.initialize()
    train, val, task = train_and_val(args)
    config = RSPGConfig(
        **FLAGS.values(RSPGConfig, args),
        output_dir=out,
        gradient_checkpointing=args.trainable_layers is None,
    )
    program = build_program(args, task, "none")
    program.selector = Selector(
        pool={spec_name(spec): named_retriever(spec, args.encoder) for spec in args.pool},
        mode=args.mode,
        model=args.selector_encoder,
        name_members=args.name_members,
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
        "--name-members",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the selector reads each member's name after its prompt; --no-name-members: the paper's "
        "selector, which reads the prompt (and answer) only",
    )
    select.add_argument(
        "--out", type=Path, help="the selector, checkpoints and history (default: runs/rspg-<mode>)"
    )
    add_training_data_options(select)
    FLAGS.add_to(select)
    add_model_options(select)
    select.set_defaults(func=cmd_select)

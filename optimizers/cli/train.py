"""``persona-rag train``: tune the dense retriever with the LLM's metric (ROPG-KD, ROPG-RL, Set-PL)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import add_training_data_options, print_history, train_and_val
from optimizers.configs import ROPGKDConfig, ROPGRLConfig, SetPLConfig
from persona_rag.cli_options import add_model_options, build_program
from persona_rag.config_flags import ConfigFlags

__all__ = ["CONFIGS", "FLAGS", "METHOD_NAMES", "add_train", "cmd_train"]


METHOD_NAMES = {"kd": "ROPG-KD", "rl": "ROPG-RL", "set": "Set-PL"}
CONFIGS = {"kd": ROPGKDConfig, "rl": ROPGRLConfig, "set": SetPLConfig}
"""Each ``--method``'s config."""

FLAGS = ConfigFlags(*CONFIGS.values(), exclude=("output_dir",))
"""The settings of every method as flags (a method reads its config's); the output folder is named
after ``--method``."""


def cmd_train(args: argparse.Namespace) -> int:
    """Tune the dense retriever with the chosen method, validated on questions carved from train;
    the main process of a launch saves the program and reports."""
    from optimizers import distributed
    from optimizers.ropg import ROPG_KD, ROPG_RL
    from optimizers.set_pl import SetPL

    out = args.out or Path("runs") / (f"ropg-{args.method}" if args.method != "set" else "set-pl")
    distributed.initialize()
    train, val, task = train_and_val(args)
    optimizers = {"kd": ROPG_KD, "rl": ROPG_RL, "set": SetPL}
    config = CONFIGS[args.method]
    optimizer = optimizers[args.method](config=config(**FLAGS.values(config, args), output_dir=out))
    program = build_program(args, task, "dense")
    tuned = optimizer.compile(program, trainset=train, valset=val)
    if not distributed.is_main():  # the main process writes and reports for the whole launch
        return 0
    tuned.save(str(out / "program.json"))
    history = optimizer.result.history if optimizer.result else []
    print_history(
        history,
        f"{METHOD_NAMES[args.method]} on {Path(args.data).name}",
        out,
        f"use it with: persona-rag evaluate --retriever dense --encoder {out / 'best'} ...",
    )
    return 0


def add_train(commands: Any) -> None:
    """Register ``persona-rag train`` (ROPG-KD / ROPG-RL / Set-PL)."""
    train = commands.add_parser(
        "train", help="tune the dense retriever with the LLM's metric (ROPG-KD / ROPG-RL / Set-PL)"
    )
    train.add_argument(
        "--method",
        choices=tuple(METHOD_NAMES),
        required=True,
        help="distillation (Eq. 4), REINFORCE on one item (Eq. 1-3), or REINFORCE on the set of --k "
        "items the prompt holds, drawn by Plackett-Luce (Set-PL, docs/set_pl.md)",
    )
    train.add_argument("--out", type=Path, help="checkpoints and history (default: runs/ropg-<method>)")
    add_training_data_options(train)
    FLAGS.add_to(train)
    add_model_options(train)
    train.set_defaults(func=cmd_train)

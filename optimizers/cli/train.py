"""``persona-rag train``: tune the dense retriever with the LLM's metric (ROPG-KD, ROPG-RL, Set-PL)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from optimizers.cli.options import (
    FREE_TIES_HELP,
    add_signal_option,
    add_training_options,
    print_history,
    train_and_val,
)
from persona_rag.cli_options import (
    add_model_options,
    build_program,
    non_negative_float,
    positive_float,
    positive_int,
)

__all__ = ["METHOD_NAMES", "add_train", "cmd_train"]


METHOD_NAMES = {"kd": "ROPG-KD", "rl": "ROPG-RL", "set": "Set-PL"}


def cmd_train(args: argparse.Namespace) -> int:
    """Tune the dense retriever with the chosen method, validated on questions carved from train;
    the main process of a launch saves the program and reports."""
    from optimizers import distributed
    from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
    from optimizers.set_pl import SetPL, SetPLConfig

    out = args.out or Path("runs") / (f"ropg-{args.method}" if args.method != "set" else "set-pl")
    distributed.initialize()
    train, val, task = train_and_val(args)
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
        "policy_temperature": args.policy_temperature,
        "max_examples": args.max_examples,
        "max_val_examples": args.max_val_examples,
        "feedback_cache": args.feedback_cache,
        "resume": not args.overwrite,
    }
    if args.method == "kd":
        kd = ROPGKDConfig(**common, temperature=args.temperature, free_ties=args.free_ties)
        optimizer: Any = ROPG_KD(config=kd)
    elif args.method == "set":
        options = {"samples": args.samples, "baseline": args.baseline, "entropy_weight": args.entropy_weight}
        optimizer = SetPL(config=SetPLConfig(**common, **options))
    else:
        optimizer = ROPG_RL(config=ROPGConfig(**common))
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
    train.add_argument(
        "--feedback-cache", type=Path, default=Path("runs/feedback.sqlite"), help="cache of the LLM's answers"
    )
    train.add_argument("--candidates", type=positive_int, default=16, help="l, candidates per example")
    train.add_argument("--temperature", type=positive_float, default=0.1, help="KD target temperature")
    train.add_argument("--free-ties", action="store_true", help=FREE_TIES_HELP)
    train.add_argument(
        "--policy-temperature",
        type=positive_float,
        help="τ of the retrieval policy softmax(q·d/τ) (default: 0.05 for a normalised encoder, else 1)",
    )
    train.add_argument(
        "--samples", type=positive_int, default=4, help="Set-PL: ordered sets sampled per question and step"
    )
    train.add_argument(
        "--baseline",
        choices=("others", "greedy"),
        default="others",
        help="Set-PL: a set's reward is compared with the mean of the question's other samples, or "
        "with the reward of the policy's top-k set (one more reader call per question and step)",
    )
    train.add_argument(
        "--entropy-weight",
        type=non_negative_float,
        default=0.01,
        help="Set-PL: weight of the entropy bonus that keeps the policy from collapsing",
    )
    add_training_options(train, lr=1e-5, epochs=10, grad_accum=8)
    add_signal_option(train)
    add_model_options(train)
    train.set_defaults(func=cmd_train)

"""Training commands that ``optimizers`` adds to the ``persona-rag`` CLI (entry point group
``persona_rag.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from persona_rag.cli_options import (
    add_model_options,
    build_program,
    make_console,
    named_retriever,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    retriever_list,
    spec_name,
)

__all__ = ["add_finetune", "add_report", "add_select", "add_train"]


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


def _train_and_val(args: argparse.Namespace) -> tuple[list, list, Any]:
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


def cmd_finetune(args: argparse.Namespace) -> int:
    from optimizers import distributed
    from optimizers.reader import ReaderFinetune, ReaderFinetuneConfig
    from persona_rag.retrievers import make_retriever

    distributed.initialize()  # before any model loads: under a launch, "cuda" is this rank's GPU
    train, val, task = _train_and_val(args)
    config = ReaderFinetuneConfig(
        output_dir=args.out,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        trainable_layers=args.trainable_layers,
        max_examples=args.max_examples,
        max_val_examples=args.max_val_examples,
        patience=args.patience,
        k=args.k,
        seed=args.seed,
        resume=not args.overwrite,
    )
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
    _report(
        history,
        f"reader fine-tuning on {Path(args.data).name}",
        Path(args.out),
        f"use it with: persona-rag evaluate --model {Path(args.out) / 'best'} ...",
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from optimizers import distributed
    from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
    from optimizers.set_pl import SetPL, SetPLConfig

    out = args.out or Path("runs") / (f"ropg-{args.method}" if args.method != "set" else "set-pl")
    distributed.initialize()
    train, val, task = _train_and_val(args)
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
    _report(
        history,
        f"{METHOD_NAMES[args.method]} on {Path(args.data).name}",
        out,
        f"use it with: persona-rag evaluate --retriever dense --encoder {out / 'best'} ...",
    )
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from optimizers import distributed
    from optimizers.rspg import RSPG, RSPGConfig
    from persona_rag.portable import write_portable_json
    from persona_rag.selector import Selector

    out = args.out or Path("runs") / f"rspg-{args.mode}"
    distributed.initialize()
    train, val, task = _train_and_val(args)
    config = RSPGConfig(
        output_dir=out,
        learning_rate=args.lr,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        gradient_accumulation_steps=args.grad_accum,
        patience=args.patience,
        seed=args.seed,
        temperature=args.temperature,
        signal=args.signal,
        max_examples=args.max_examples,
        max_val_examples=args.max_val_examples,
        feedback_cache=args.feedback_cache,
        resume=not args.overwrite,
        trainable_layers=args.trainable_layers,
        gradient_checkpointing=args.trainable_layers is None,
    )
    program = build_program(args, task, "none")
    program.selector = Selector(
        pool={spec_name(spec): named_retriever(spec, args.encoder) for spec in args.pool},
        mode=args.mode,
        model=args.selector_encoder,
    )
    optimizer = RSPG(config=config)
    tuned = optimizer.compile(program, trainset=train, valset=val)
    if not distributed.is_main():  # the main process writes and reports for the whole launch
        return 0
    tuned.save(str(out / "program.json"))
    write_portable_json(out / "selector.json", tuned.selector.dump_state(), root=out)
    history = optimizer.result.history if optimizer.result else []
    _report(
        history,
        f"RSPG-{args.mode.capitalize()} on {Path(args.data).name}",
        out,
        f"evaluate it with: persona-rag evaluate --selector {out / 'selector.json'} --data ... --model ...",
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
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


def _add_training_options(
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
    _add_overwrite(parser)


def _add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start fresh, replacing a resume state in --out (by default a run resumes it, and a "
        "state of a different run there is an error)",
    )  # fmt: skip


def _signal(text: str) -> str:
    """A ``--signal`` value, checked when parsed (imported here: the module loads torch and dspy, which
    ``--help`` must not wait for)."""
    from optimizers.feedback import SIGNALS

    if text not in SIGNALS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SIGNALS)}; got {text!r}")
    return text


FREE_TIES_HELP = (
    "distil only how groups of equal score compare, leaving the order of tied candidates to the "
    "retriever (default: the paper's Eq. 4, which also pulls tied candidates to one score)"
)


def _add_signal_option(parser: argparse.ArgumentParser) -> None:
    """``--signal`` of the trainers that learn from LLM feedback (ROPG, RSPG)."""
    parser.add_argument(
        "--signal",
        type=_signal,
        default="auto",
        help="what the LLM feedback scores: metric (the paper's Eval), likelihood (log p(gold)), "
        "metric+likelihood (Eval, ties broken by log p(gold)), expected (Eval expected under the "
        "reader's label distribution; label tasks); auto: metric+likelihood for a local model, metric for "
        "a server",
    )


SELECTOR_LAYERS_HELP = (
    "train only the selector encoder's last N layers, about half the step time of every weight with "
    "activation checkpointing (default: every weight)"
)


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
        "--out", type=Path, help="the selector, checkpoints and history (default: runs/rspg-<mode>)"
    )
    select.add_argument(
        "--feedback-cache", type=Path, default=Path("runs/feedback.sqlite"), help="cache of the LLM's answers"
    )
    select.add_argument("--temperature", type=positive_float, default=0.1, help="target temperature")
    select.add_argument("--trainable-layers", type=positive_int, help=SELECTOR_LAYERS_HELP)
    _add_training_options(select, lr=1e-5, epochs=20, grad_accum=8)
    _add_signal_option(select)
    add_model_options(select)
    select.set_defaults(func=cmd_select)


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
    _add_signal_option(report)
    report.add_argument("--kd-signal", type=_signal, help="ROPG-KD's own feedback signal (default: --signal)")
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
    _add_overwrite(report)
    add_model_options(report)
    report.set_defaults(func=cmd_report)


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
    finetune.add_argument("--out", type=Path, default=Path("runs/reader"), help="checkpoints and history")
    finetune.add_argument(
        "--max-length",
        type=positive_int,
        help="cap on prompt + answer tokens (default: none; prompts already fit --max-input-tokens, "
        "as at inference)",
    )
    finetune.add_argument(
        "--trainable-layers",
        type=positive_int,
        help="train only the last N decoder layers and the final norm, embeddings frozen: less memory "
        "and faster steps (default: every weight)",
    )
    _add_training_options(finetune, lr=5e-5, epochs=2, grad_accum=1, max_examples=512, patience=1)
    add_model_options(finetune)
    finetune.set_defaults(func=cmd_finetune)


METHOD_NAMES = {"kd": "ROPG-KD", "rl": "ROPG-RL", "set": "Set-PL"}


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
    _add_training_options(train, lr=1e-5, epochs=10, grad_accum=8)
    _add_signal_option(train)
    add_model_options(train)
    train.set_defaults(func=cmd_train)

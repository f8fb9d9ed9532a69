"""Which feedback signal (and tie handling) lets ROPG-KD learn from a real reader.

The paper's signal is the task metric of the answer (``metric``). With a weak reader most
candidates give the same rating, so the teacher softmax(Eval / τ) is nearly flat; ``likelihood``
scores each candidate by log p(gold answer), which rarely ties; ``metric+likelihood`` keeps the
metric as the key and breaks its ties with the likelihood (a spread of at most 0.05). A variant
``SIGNAL:free-ties`` trains with ``free_ties`` (the KL over groups of equal score, which leaves the
order of tied candidates to the student). This trains ROPG-KD once per variant on the same
questions, candidates, validation and settings as ``persona-rag report`` (the validation carved
from train the same way), evaluates each tuned retriever and the untuned dense one on a reported
split, and compares each with Dense (paired bootstrap interval and randomisation p-value). A
variant's run may instead be given as a trained checkpoint
(``--checkpoint metric+likelihood=reports/x/ropg-kd/best``): the report's own ROPG-KD.

    python benchmarks/kd_signals.py --data ../shared/lamp-real/movielens_rating \\
        --model runs/reader-rating/best --signals metric,likelihood \\
        --checkpoint metric+likelihood=reports/movielens_rating_full/ropg-kd/best \\
        --feedback-cache reports/movielens_rating/feedback.sqlite --out reports/kd_signals \\
        --results benchmarks/results/movielens_rating

Writes ``kd_signals.md`` and ``kd_signals.json`` (and each run's curves as
``kd-<variant>-curves.png``) into ``--results``. LLM answers are cached in ``--feedback-cache``:
with the report's cache, training asks the reader for nothing new (the label scores give every
signal) and only the reported split's prompts with the tuned retrievers' items are new.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optimizers import ROPG_KD, ROPGKDConfig
from optimizers.feedback import SIGNALS, Feedback
from optimizers.rspg import member_metrics, parsed_pool_outputs
from persona_rag.cli_options import add_model_options, build_program, make_console
from persona_rag.data import carve_validation, load_lamp
from persona_rag.io import atomic_write_json, atomic_write_text
from persona_rag.retrievers import DenseRetriever
from persona_rag.significance import significance_against

FREE_TIES = "free-ties"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a LaMP-format task folder")
    parser.add_argument("--split", default="test", help="the reported split (never trained on)")
    parser.add_argument(
        "--signals",
        default="metric,likelihood",
        help="variants to train: a signal, or SIGNAL:free-ties for the KL over groups of equal score",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="SIGNAL=DIR",
        help="an already trained ROPG-KD encoder for a signal, instead of training it",
    )
    parser.add_argument("--train-examples", type=int, default=None, help="default: train less validation")
    parser.add_argument("--val-examples", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--feedback-cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("reports/kd_signals"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/kd_signals"))
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    args = parser.parse_args(argv)
    signals = [s.strip() for s in args.signals.split(",") if s.strip()]
    given = dict(item.split("=", 1) for item in args.checkpoint)
    for variant in [*signals, *given]:
        signal, _, ties = variant.partition(":")
        if signal not in SIGNALS or ties not in ("", FREE_TIES):
            parser.error(
                f"unknown variant {variant!r}; choose from {', '.join(SIGNALS)}, each with :{FREE_TIES}"
            )

    train_split = load_lamp(args.data, "train")
    reported = load_lamp(args.data, args.split, task=train_split.task).examples()
    carved = carve_validation(train_split.examples(), size=args.val_examples, seed=args.seed)
    train = carved.train[: args.train_examples]
    program = build_program(args, train_split.task, "dense")
    console = make_console()

    members = {"dense": program.retriever}
    runs: dict[str, dict] = {}
    for variant in [*signals, *given]:
        start = time.perf_counter()
        signal, _, ties = variant.partition(":")
        name = variant.replace(":", "-")
        if variant in given:
            members[f"kd-{name}"] = DenseRetriever(encoder=given[variant])
            history_file = Path(given[variant]).parent / "history.json"
            runs[name] = {"trained_here": False, "checkpoint": given[variant]}
        else:
            config = ROPGKDConfig(
                output_dir=args.out / f"kd-{name}",
                feedback_cache=args.feedback_cache,
                signal=signal,
                free_ties=ties == FREE_TIES,
                candidates=args.candidates,
                epochs=args.epochs,
                learning_rate=args.lr,
                batch_size=8,
                gradient_accumulation_steps=2,
                max_val_examples=args.val_examples,
                patience=2,
                seed=args.seed,
            )
            optimizer = ROPG_KD(config=config)
            members[f"kd-{name}"] = optimizer.compile(program, trainset=train, valset=carved.val).retriever
            history_file = Path(config.output_dir) / "history.json"
            result = optimizer.result
            runs[name] = {
                "trained_here": True,
                "checkpoint": str(Path(config.output_dir) / "best"),
                "feedback_examples": len(optimizer.feedback_rows),
                "trained_examples": sum(map(optimizer.keep, optimizer.feedback_rows)),
                "best_epoch": result.best_epoch if result else None,
                "steps": result.steps if result else 0,
                "steps_per_second": result.steps / result.step_seconds
                if result and result.step_seconds
                else None,
                "seconds": time.perf_counter() - start,
            }
        history = json.loads(history_file.read_text()) if history_file.exists() else []
        runs[name]["history"] = history
        curves = history_file.parent / "curves.png"
        if curves.exists():
            args.results.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(curves, args.results / f"kd-{name}-curves.png")

    rows = Feedback(program=program, cache=args.feedback_cache).compute_pool(reported, members)
    task = program.task
    inputs, golds = [ex.input for ex in reported], [str(ex.output) for ex in reported]
    parsed = parsed_pool_outputs(task, reported, rows)
    metrics = member_metrics(task, reported, rows)
    significance = significance_against(
        task, inputs, golds, parsed, "dense", resamples=args.resamples, seed=args.seed
    )
    summary = {
        "data": str(args.data),
        "split": args.split,
        "n": len(reported),
        "train_questions": len(train),
        "val_questions": len(carved.val),
        "settings": {"candidates": args.candidates, "epochs": args.epochs, "lr": args.lr, "seed": args.seed},
        "metrics": metrics,
        "significance_vs_dense": significance,
        "runs": runs,
    }
    atomic_write_json(args.results / "kd_signals.json", summary)
    table = markdown(summary, [name for name in metrics["dense"] if name != "score"])
    atomic_write_text(args.results / "kd_signals.md", table)
    console.print(table)
    console.print(f"written: {args.results / 'kd_signals.md'}, {args.results / 'kd_signals.json'}")
    return 0


def markdown(summary: dict, task_metrics: list[str]) -> str:
    """The comparison as a table: each retriever's metrics, its difference with Dense [95% CI] and
    p-value, and the validation diagnostics of its kept epoch (policy entropy, KL to the teacher,
    top-1 agreement with the teacher on the carved validation questions)."""
    lines = [
        f"ROPG-KD by feedback signal: {summary['split']}, {summary['n']} questions; trained on "
        f"{summary['train_questions']} train questions, checkpoints chosen on {summary['val_questions']} "
        "carved from train. * p < 0.05 better than Dense.",
        "",
        "| retriever | " + " | ".join(task_metrics) + " | "
        + " | ".join(f"{m} vs Dense [95% CI] p" for m in task_metrics)
        + " | kept epoch | val entropy | val KL | val top-1 = teacher |",
        "|---|" + "---|" * (2 * len(task_metrics) + 4),
    ]  # fmt: skip
    for name, values in summary["metrics"].items():
        tested = summary["significance_vs_dense"].get(name, {})
        cells = [f"{values[m]:.3f}{'*' if tested.get(m, {}).get('better') else ''}" for m in task_metrics]
        for m in task_metrics:
            t = tested.get(m)
            cells.append(
                f"{t['difference']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] {t['p_value']:.3f}" if t else ""
            )
        run = summary["runs"].get(name.removeprefix("kd-"), {})
        history = run.get("history") or []
        kept = max(history, key=lambda row: row["score"]) if history else {}
        cells.append(str(kept.get("epoch", "")))
        for key in ("policy_entropy", "teacher_kl", "teacher_top1"):
            cells.append(f"{kept[key]:.3f}" if key in kept else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

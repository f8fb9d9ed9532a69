"""How often each feedback signal ties, and how well it ranks candidates as the answer's metric does.

ROPG learns from how a question's candidate items compare under the reader's feedback. A signal on
which all of a question's candidates tie teaches nothing (KD's teacher is uniform there, RL's
rewards are zero), and a signal that does not rank candidates as the metric of the generated answer
does teaches the wrong thing. For each signal this measures, on ROPG's training feedback (the
untuned dense retriever's top-``l`` candidates of train questions, each alone in the prompt; the
validation questions carved out of train as ``report`` carves them are left out, and no dev or
test question is read):

* the share of questions whose candidates all tie (max = min);
* the rank correlation (Spearman, ties at their mean rank) between the signal and the metric of the
  answer the reader actually generates with that candidate (``metric``), per question where both
  vary, averaged, and the share of questions where it is defined.

    python benchmarks/signal_ties.py --data ../shared/lamp-real/movielens_rating \\
        --model runs/reader-rating/best --dtype bfloat16 --questions 300 --candidates 8 \\
        --signals metric,expected,metric+likelihood,likelihood --feedback-cache runs/signals.sqlite \\
        --results benchmarks/results/movielens_rating

Writes ``signal_ties.md`` and ``signal_ties.json`` into ``--results``. Answers are cached in
``--feedback-cache``: label scores give ``metric``, ``expected`` and (for labels) ``metric+likelihood``
from one pass; ``likelihood`` on free text adds one scoring pass per prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host import describe
from optimizers.feedback import SIGNALS, CandidateFeedback, Feedback
from persona_rag.cli_options import add_model_options, build_program, make_console
from persona_rag.data import carve_validation, load_lamp
from persona_rag.io import atomic_write_json, atomic_write_text


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, tied values sharing their mean rank (as Spearman's coefficient needs)."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation, ``None`` where either side is constant (undefined)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def tie_statistics(signal_rows: list[CandidateFeedback], metric_rows: list[CandidateFeedback]) -> dict:
    """The tie share of ``signal_rows`` and their rank correlation with ``metric_rows`` (same questions)."""
    ties = [max(row.scores) == min(row.scores) for row in signal_rows]
    correlations = [
        spearman(np.array(s.scores), np.array(m.scores)) for s, m in zip(signal_rows, metric_rows)
    ]
    defined = [c for c in correlations if c is not None]
    return {
        "questions": len(signal_rows),
        "all_tie_share": sum(ties) / len(ties),
        "spearman_mean": float(np.mean(defined)) if defined else None,
        "spearman_defined_share": len(defined) / len(correlations),
        "distinct_scores_mean": float(np.mean([len(set(row.scores)) for row in signal_rows])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a LaMP-format task folder")
    parser.add_argument("--questions", type=int, default=300, help="train questions measured")
    parser.add_argument("--val-examples", type=int, default=100, help="left out, as report carves them")
    parser.add_argument("--candidates", type=int, default=8, help="ROPG's l")
    parser.add_argument("--signals", default="metric,expected,metric+likelihood,likelihood")
    parser.add_argument("--feedback-cache", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True, help="folder for signal_ties.md/.json")
    parser.add_argument("--seed", type=int, default=0)
    add_model_options(parser)
    args = parser.parse_args(argv)
    signals = [s.strip() for s in args.signals.split(",") if s.strip()]
    unknown = [s for s in signals if s not in SIGNALS or s == "auto"]
    if unknown:
        parser.error(f"unknown signals {unknown}; choose from {', '.join(s for s in SIGNALS if s != 'auto')}")

    split = load_lamp(args.data, "train")
    carved = carve_validation(split.examples(), size=args.val_examples, seed=args.seed)
    train = carved.train[: args.questions]
    program = build_program(args, split.task, "dense")
    console = make_console()

    def rows(signal: str) -> tuple[list[CandidateFeedback], float]:
        start = time.perf_counter()
        feedback = Feedback(
            program=program, candidates=args.candidates, cache=args.feedback_cache, signal=signal
        )
        return feedback.compute(train), time.perf_counter() - start

    metric_rows, _ = rows("metric")  # the answer actually generated with each candidate
    results = {}
    for signal in signals:
        signal_rows, seconds = rows(signal) if signal != "metric" else (metric_rows, 0.0)
        results[signal] = {**tie_statistics(signal_rows, metric_rows), "seconds": seconds}
    summary = {
        "data": str(args.data),
        "task": split.task.name,
        "model": args.model,
        "dtype": args.dtype,
        "candidates": args.candidates,
        "train_questions": len(train),
        "date": date.today().isoformat(),
        "host": describe(),
        "signals": results,
    }
    lines = [
        f"{Path(args.data).name}: {len(train)} train questions x {args.candidates} candidates "
        f"(reader {args.model}, {args.dtype}); {summary['date']}, {summary['host']}",
        "",
        "| signal | questions whose candidates all tie | distinct scores per question (mean) "
        "| Spearman with the answer's metric (mean over questions where defined) | defined on |",
        "|---|---|---|---|---|",
    ]
    for signal, r in results.items():
        rho = "–" if r["spearman_mean"] is None else f"{r['spearman_mean']:.3f}"
        lines.append(
            f"| {signal} | {r['all_tie_share']:.3f} | {r['distinct_scores_mean']:.2f} | {rho} "
            f"| {r['spearman_defined_share']:.3f} |"
        )
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results / "signal_ties.json", summary)
    atomic_write_text(args.results / "signal_ties.md", "\n".join(lines) + "\n")
    console.print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

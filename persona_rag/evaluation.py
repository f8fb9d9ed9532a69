"""Run a program over a LaMP split in batches: progress bar, metrics, a results table and JSON."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dspy

from persona_rag.errors import ConfigError, GenerationError
from persona_rag.io import atomic_write_json
from persona_rag.program import PersonalizedRAG
from persona_rag.tasks import PARSING_NOTES, TaskSpec

__all__ = [
    "EvaluationResult",
    "compare_rows",
    "comparison_table",
    "evaluate_program",
    "oracle_metrics",
    "pool_bounds",
    "results_table",
    "scored_selection",
    "selection_metrics",
    "write_results",
]

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    """Metrics and per-example predictions of one program on one split.

    Attributes:
        name: a label for tables (usually the retriever).
        task: task name.
        n: number of examples.
        metrics: corpus metrics (empty for splits without golds).
        seconds: wall time of the run.
        failed: ids of examples whose LLM call failed; they count as unparseable answers.
        predictions: per example: id, output, gold, raw output, retrieved ids.
        parsing: how answers were read and scored (``TaskSpec.parsing``: ``lamp`` or ``lenient``).
    """

    name: str
    task: str
    n: int
    metrics: dict[str, float]
    seconds: float
    failed: list[str] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    parsing: str = "lamp"


def _predict_chunk(program: PersonalizedRAG, chunk: Sequence[dspy.Example]) -> list[dspy.Prediction | None]:
    """Batched predictions; if the batch fails, retry one by one so one bad call costs one example."""
    try:
        return program.batch_forward(
            [ex.input for ex in chunk],
            [ex.get("profile") for ex in chunk],
            [ex.get("user_id") for ex in chunk],
            [ex.get("profile_ids") for ex in chunk],
        )
    except GenerationError as error:
        logger.warning("batch failed (%s); retrying its %d examples one by one", error, len(chunk))
    out: list[dspy.Prediction | None] = []
    for ex in chunk:
        try:
            out.append(
                program(
                    input=ex.input,
                    profile=ex.get("profile"),
                    user_id=ex.get("user_id"),
                    profile_ids=ex.get("profile_ids"),
                )
            )
        except GenerationError as error:
            logger.error("example %s failed: %s", ex.get("id"), error)
            out.append(None)
    return out


def evaluate_program(
    program: PersonalizedRAG,
    examples: Sequence[dspy.Example],
    *,
    name: str = "",
    batch_size: int = 16,
    progress: bool = True,
) -> EvaluationResult:
    """Predict every example in batches and score against ``example.output`` when present.

    A failed LLM call does not stop the run: the example's answer becomes empty (scored as
    unparseable, the worst case for ratings) and its id is listed in ``failed``.
    """
    from tqdm.auto import tqdm

    task = program.task
    start = time.perf_counter()
    predictions: list[dict[str, Any]] = []
    failed: list[str] = []
    with tqdm(total=len(examples), desc=name or "evaluate", unit="ex", disable=not progress) as bar:
        for offset in range(0, len(examples), batch_size):
            chunk = examples[offset : offset + batch_size]
            for ex, pred in zip(chunk, _predict_chunk(program, chunk)):
                if pred is None:
                    failed.append(str(ex.get("id")))
                predictions.append(
                    {
                        "id": ex.get("id"),
                        "output": "" if pred is None else pred.output,
                        "raw_output": None if pred is None else pred.raw_output,
                        "gold": ex.get("output"),
                        "retrieved": [] if pred is None else pred.ids,
                        "retriever": None if pred is None else pred.retriever,
                    }
                )
            bar.update(len(chunk))
    metrics: dict[str, float] = {}
    if examples and all(p["gold"] is not None for p in predictions):
        metrics = task.evaluate(
            [p["output"] for p in predictions],
            [p["gold"] for p in predictions],
            [ex.input for ex in examples],
        )
    return EvaluationResult(
        name=name,
        task=task.name,
        n=len(examples),
        metrics=metrics,
        seconds=time.perf_counter() - start,
        failed=failed,
        predictions=predictions,
        parsing=task.parsing,
    )


def _evals(
    task: TaskSpec, golds: Sequence[str], outputs: Mapping[str, Sequence[str]]
) -> list[dict[str, float]]:
    """Eval of every pool member's parsed output on every example."""
    return [{name: task.eval(gold, outputs[name][i]) for name in outputs} for i, gold in enumerate(golds)]


def selection_metrics(
    task: TaskSpec,
    inputs: Sequence[str],
    golds: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    chosen: Sequence[str],
) -> dict[str, float]:
    """Task metrics of a per-example choice among a pool's outputs, its mean Eval (``score``) and
    the selection success rate (the paper's Table 4, docs/method.md: the chosen output is as good
    as the pool's best).

    Args:
        task: the task (metrics and Eval).
        inputs: the examples' inputs (label sets may depend on them).
        golds: the gold outputs.
        outputs: per pool member, its parsed output on each example.
        chosen: per example, the name of the chosen member.
    """
    evals = _evals(task, golds, outputs)
    picked = [outputs[name][i] for i, name in enumerate(chosen)]
    return {
        "score": sum(e[name] for e, name in zip(evals, chosen)) / len(golds),
        "success_rate": sum(e[name] >= max(e.values()) for e, name in zip(evals, chosen)) / len(golds),
        **task.evaluate(picked, list(golds), list(inputs)),
    }


def oracle_metrics(
    task: TaskSpec,
    inputs: Sequence[str],
    golds: Sequence[str],
    outputs: Mapping[str, Sequence[str]],
    *,
    best: bool = True,
) -> dict[str, float]:
    """Task metrics of always choosing the pool's best (``best=True``, the upper bound of the paper's
    Table 5) or worst member per example: the range any selector over this pool lies in."""
    pick = max if best else min
    evals = _evals(task, golds, outputs)
    chosen = [pick(e, key=e.__getitem__) for e in evals]
    return selection_metrics(task, inputs, golds, outputs, chosen)


def _pool_outputs(members: Sequence[EvaluationResult]) -> dict[str, list[str]]:
    return {m.name: [p["output"] for p in m.predictions] for m in members}


def pool_bounds(
    task: TaskSpec, examples: Sequence[dspy.Example], members: Sequence[EvaluationResult]
) -> list[EvaluationResult]:
    """Rows for the oracle that picks the best (and the worst) member's answer per example: the
    range any selector over these members lies in (the paper's Table 5, docs/method.md)."""
    inputs, golds = [ex.input for ex in examples], [str(ex.output) for ex in examples]
    outputs = _pool_outputs(members)
    seconds = sum(m.seconds for m in members)
    return [
        EvaluationResult(
            name=f"oracle ({label})",
            task=task.name,
            n=len(examples),
            metrics=oracle_metrics(task, inputs, golds, outputs, best=best),
            seconds=seconds,
            parsing=task.parsing,
        )
        for label, best in (("best member", True), ("worst member", False))
    ]


def scored_selection(
    task: TaskSpec,
    examples: Sequence[dspy.Example],
    members: Sequence[EvaluationResult],
    selected: EvaluationResult,
) -> EvaluationResult:
    """``selected`` (a run of a program with a selector over ``members``) with its mean Eval
    (``score``) and selection success rate (the paper's Table 4) added to its metrics.

    Examples whose LLM call failed made no choice; these two figures leave them out (the task
    metrics of ``selected`` still count them as unparseable answers).
    """
    kept = [i for i, p in enumerate(selected.predictions) if p["retriever"] is not None]
    outputs = {name: [column[i] for i in kept] for name, column in _pool_outputs(members).items()}
    metrics = selection_metrics(
        task,
        [examples[i].input for i in kept],
        [str(examples[i].output) for i in kept],
        outputs,
        [selected.predictions[i]["retriever"] for i in kept],
    )
    return replace(
        selected,
        metrics={**selected.metrics, "score": metrics["score"], "success_rate": metrics["success_rate"]},
    )


def _parsing_caption(results: Sequence[EvaluationResult]) -> str:
    """Which answer reading the figures used (LaMP's or the lenient one), said under every table."""
    return "; ".join(
        f"parsing={name}: {PARSING_NOTES[name]}" for name in dict.fromkeys(r.parsing for r in results)
    )


def results_table(results: Sequence[EvaluationResult], *, title: str = "") -> Any:
    """A ``rich`` table: one row per result, one column per metric, plus time and failures; its
    caption says how answers were parsed, since lenient figures are not comparable with LaMP's.

    Rows are separated by spacing, not vertical rules, a row name is never wrapped, and the
    ``failed`` column shows only when an answer failed: the demo's table (names such as "Dense
    (Chroma store)", a success rate and the oracle's score) then keeps one line per row, every
    figure whole, in an 80-column terminal."""
    from rich import box
    from rich.table import Table

    caption = _parsing_caption(results) or None
    table = Table(title=title or None, caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("retriever", no_wrap=True)
    names = list(dict.fromkeys(m for r in results for m in r.metrics))
    for metric in names:
        table.add_column(metric, justify="right")
    table.add_column("n", justify="right")
    table.add_column("seconds", justify="right")
    failures = any(r.failed for r in results)
    if failures:
        table.add_column("failed", justify="right")
    for r in results:
        cells = [f"{r.metrics[m]:.4f}" if m in r.metrics else "-" for m in names]
        failed = [str(len(r.failed))] if failures else []
        table.add_row(r.name, *cells, str(r.n), f"{r.seconds:.1f}", *failed)
    return table


def compare_rows(
    task: TaskSpec,
    examples: Sequence[dspy.Example],
    results: Sequence[EvaluationResult],
    baseline: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row's paired difference from the ``baseline`` row on the same questions: 95% bootstrap
    interval and randomisation p-value per metric (:func:`~persona_rag.significance.significance_against`).
    Oracle rows are bounds, not systems, and are left out."""
    from persona_rag.significance import significance_against

    answers = {
        r.name: [p["output"] for p in r.predictions] for r in results if not r.name.startswith("oracle")
    }
    if baseline not in answers:
        raise ConfigError(f"no row named {baseline!r} to compare with; rows: {', '.join(answers)}")
    inputs, golds = [ex.input for ex in examples], [str(ex.output) for ex in examples]
    return significance_against(task, inputs, golds, answers, baseline, resamples=resamples, seed=seed)


def comparison_table(comparison: Mapping[str, Mapping[str, Mapping[str, Any]]], baseline: str) -> Any:
    """A ``rich`` table of :func:`compare_rows`: difference [95% interval] and p per metric; ``*``
    marks a significant improvement (p < 0.05)."""
    from rich.table import Table

    from persona_rag.significance import format_difference

    metrics = list(next(iter(comparison.values()), {}))
    table = Table(title=f"paired differences from {baseline} (* p < 0.05 better)")
    table.add_column("row")
    for metric in metrics:
        table.add_column(f"{metric} diff [95% CI] p", justify="right")
    for name, tested in comparison.items():
        table.add_row(name, *(format_difference(tested[m], digits=4) for m in metrics))
    return table


def write_results(path: str | Path, results: Sequence[EvaluationResult], **meta: Any) -> Path:
    """Write the results (metrics and predictions) as one JSON file, atomically; ``parsing`` at the
    top says how answers were read (each result also records its own)."""
    parsing = list(dict.fromkeys(r.parsing for r in results))
    return atomic_write_json(
        path,
        {
            "parsing": parsing[0] if len(parsing) == 1 else parsing,
            **meta,
            "results": [asdict(r) for r in results],
        },
    )

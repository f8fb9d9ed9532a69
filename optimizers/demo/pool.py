"""The pool's rows of a results table, scored from one pass of answers over the test questions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from optimizers.demo.config import ROW_NAMES

__all__ = ["pool_results"]


def pool_results(program: Any, test: list[Any], pool: dict[str, Any], selector: Any, cache: Path) -> list:
    """Rows for each pool member and for the selector, from one batched pass over the test questions.

    Every member's prompt is answered once (cached in the feedback cache, so a second run repeats
    nothing); a single-retriever row is that member's answer, the selector's row (``RSPG-Pre`` or
    ``RSPG-Post``) the answer of the member it picks: the answer the program itself gives
    (generation is deterministic). Half the LLM calls of evaluating the members and then the
    selector's program, which answers with every member again.
    """
    from optimizers.feedback import Feedback
    from optimizers.rspg import pool_selection_metrics
    from persona_rag.evaluation import EvaluationResult

    task = program.task
    start = time.perf_counter()
    rows = Feedback(program=program, cache=cache).compute_pool(test, pool)
    answered = time.perf_counter() - start
    names = list(pool)
    picks = {name: [m] * len(rows) for m, name in enumerate(names)}
    start = time.perf_counter()
    selections = selector.batch_select([list(r.prompts) for r in rows], [list(r.outputs) for r in rows])
    chosen_by = f"rspg-{selector.mode}"
    picks[chosen_by] = [names.index(s.chosen) for s in selections]
    selecting = time.perf_counter() - start
    results = []
    for name, chosen in picks.items():
        metrics = pool_selection_metrics(task, test, rows, chosen)
        success, _ = metrics.pop("success_rate"), metrics.pop("score")
        extra = {"success_rate": success} if name == chosen_by else {}
        predictions = [row.prediction(task, ex, c) for ex, row, c in zip(test, rows, chosen)]
        seconds = answered / len(names) if name in pool else answered + selecting
        label = f"RSPG-{selector.mode.capitalize()}" if name == chosen_by else ROW_NAMES.get(name, name)
        results.append(
            EvaluationResult(
                label,
                task.name,
                len(test),
                {**metrics, **extra},
                seconds,
                [],
                predictions,
            )
        )
    return results

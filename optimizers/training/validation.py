"""The score a trainer chooses its checkpoint by: the program evaluated as ``persona-rag evaluate`` does."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from optimizers.metric import Metric, metric_score
from persona_rag.evaluation import evaluate_program
from persona_rag.program import PersonalizedRAG

__all__ = ["validation_scores"]


def validation_scores(
    program: PersonalizedRAG,
    valset: Sequence[dspy.Example],
    batch_size: int = 16,
    *,
    metric: Metric | None = None,
) -> dict[str, float]:
    """Mean Eval (``score``, higher is better) and the task's metrics of ``program`` on ``valset``.

    The run is :func:`~persona_rag.evaluation.evaluate_program`'s, so validation reads answers as
    evaluation does, and a failed LLM call costs its example (scored as an empty answer), not the
    training run. With a user's ``metric`` (:mod:`optimizers.metric`), ``score`` is its mean
    instead, so the checkpoint is chosen by what the run was trained for.
    """
    result = evaluate_program(program, valset, name="validation", batch_size=batch_size, progress=False)
    task = program.task
    if metric is None:
        values = [task.eval(str(p["gold"]), p["output"]) for p in result.predictions]
    else:
        values = [
            metric_score(metric, ex, p["output"], p["raw_output"] or "")
            for ex, p in zip(valset, result.predictions)
        ]
    return {"score": sum(values) / len(valset), **result.metrics}

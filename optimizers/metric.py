"""A user's DSPy metric as the training signal of any optimizer.

``metric(example, prediction, trace=None) -> float`` is the callable a DSPy program is already
evaluated with; passing it as ``metric=`` to ROPG-RL, ROPG-KD, RSPG or Set-PL makes it replace the
task's LaMP Eval wherever that scored an answer: in the LLM's feedback and in the validation that
picks the checkpoint. The prediction it receives is the personalised step's own answer: ``output``
(as the task parses it) and ``raw_output``.

A metric is user code, so it is checked on one example before any model is loaded or trained
(:func:`check_metric`), and a failure on a later example names that example
(:func:`metric_score`); the reader's answers are already in the feedback cache by then, so running
again with the metric fixed asks the reader nothing twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from persona_rag.errors import ConfigError

__all__ = ["Metric", "MetricError", "check_metric", "metric_score", "prediction_of"]

Metric = Callable[..., Any]
"""``metric(example, prediction, trace=None) -> float``, higher is better."""

_SHAPE = "a metric is called as metric(example, prediction, trace=None) and returns a number"


class MetricError(ConfigError):
    """The user's metric raised or returned something that is not a number."""


def _example_id(example: dspy.Example, position: int | None = None) -> str:
    return str(example.get("id", position if position is not None else "?"))


def _value(metric: Metric, example: dspy.Example, prediction: dspy.Prediction, where: str) -> float:
    """``metric(example, prediction)`` as a float, or one :class:`MetricError` naming ``where``."""
    name = getattr(metric, "__name__", type(metric).__name__)
    try:
        value = metric(example, prediction, None)
    except Exception as error:
        raise MetricError(
            f"the metric {name} failed on {where} ({type(error).__name__}: {error}); fix it and run "
            "again: the reader's answers are cached, so none is asked twice"
        ) from error
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise MetricError(
            f"the metric {name} returned {value!r} ({type(value).__name__}) on {where}; {_SHAPE}"
        )
    return float(value)


def prediction_of(example: dspy.Example, output: str, raw_output: str | None = None) -> dspy.Prediction:
    """What a metric reads: the parsed answer (and the raw one) to ``example``."""
    return dspy.Prediction(output=output, raw_output=output if raw_output is None else raw_output)


def check_metric(metric: Metric | None, examples: Sequence[dspy.Example], *, who: str) -> None:
    """Call ``metric`` on the first example with its gold as the answer, before any training: a
    metric of the wrong shape is one line naming what to do, not a failure an hour into a run."""
    if metric is None or not examples:
        return
    if not callable(metric):
        raise MetricError(f"{who}: metric= must be callable; got {type(metric).__name__}. {_SHAPE}")
    example = examples[0]
    gold = str(example.get("output", ""))
    _value(metric, example, prediction_of(example, gold), f"example {_example_id(example, 0)!r}")


def metric_score(metric: Metric, example: dspy.Example, output: str, raw_output: str | None = None) -> float:
    """``metric`` of the parsed answer ``output`` to ``example``; a failure names the example."""
    prediction = prediction_of(example, output, raw_output)
    return _value(metric, example, prediction, f"example {_example_id(example)!r}")

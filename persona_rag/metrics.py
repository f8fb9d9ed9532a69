"""LaMP metrics and the per-example training signal Eval(y, ŷ).

The corpus-level metrics follow the LaMP evaluation code (accuracy, macro-F1 over the task's
label set, MAE/RMSE with the unparseable rule, ROUGE-1/ROUGE-L F-measure from ``rouge-score``).
``eval_*`` functions give the per-example signal of PAPER.md (Eq. 8 for ratings) that ROPG and
RSPG optimise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache

__all__ = [
    "accuracy",
    "eval_exact",
    "eval_rating",
    "eval_rouge1",
    "macro_f1",
    "mae",
    "parse_rating",
    "rating_or_fallback",
    "rmse",
    "rouge",
]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _check_lengths(predictions: Sequence, golds: Sequence) -> None:
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} golds")
    if not golds:
        raise ValueError("cannot compute a metric over zero examples")


def accuracy(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Fraction of exact (whitespace-stripped) matches."""
    _check_lengths(predictions, golds)
    return sum(p.strip() == g.strip() for p, g in zip(predictions, golds)) / len(golds)


def macro_f1(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-averaged F1 over ``labels`` (a prediction outside the set counts as wrong).

    Every label of the set is averaged, also those absent from golds and predictions (their F1
    is 0), which is what LaMP's ``f1_score(..., labels=all_labels, average="macro")`` does.
    """
    _check_lengths(predictions, golds)
    if not labels:
        raise ValueError("macro_f1 needs a non-empty label set")
    total = 0.0
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predictions, golds))
        fp = sum(p == label and g != label for p, g in zip(predictions, golds))
        fn = sum(p != label and g == label for p, g in zip(predictions, golds))
        denominator = 2 * tp + fp + fn
        total += 0.0 if denominator == 0 else 2 * tp / denominator
    return total / len(labels)


def parse_rating(text: str, low: int = 1, high: int = 5) -> float | None:
    """The first number in ``text`` when it lies in ``[low, high]``, else ``None``."""
    match = _NUMBER.search(text or "")
    if match is None:
        return None
    value = float(match.group())
    return value if low <= value <= high else None


def rating_or_fallback(prediction: str, gold: float, low: int = 1, high: int = 5) -> float:
    """LaMP's unparseable rule: a prediction that is not a rating becomes the farther extreme."""
    value = parse_rating(prediction, low, high)
    if value is not None:
        return value
    return float(low) if abs(low - gold) > abs(high - gold) else float(high)


def mae(predictions: Sequence[str], golds: Sequence[str], low: int = 1, high: int = 5) -> float:
    """Mean absolute error with the unparseable rule of :func:`rating_or_fallback`."""
    _check_lengths(predictions, golds)
    errors = [abs(rating_or_fallback(p, float(g), low, high) - float(g)) for p, g in zip(predictions, golds)]
    return sum(errors) / len(errors)


def rmse(predictions: Sequence[str], golds: Sequence[str], low: int = 1, high: int = 5) -> float:
    """Root mean squared error with the unparseable rule of :func:`rating_or_fallback`."""
    _check_lengths(predictions, golds)
    errors = [
        (rating_or_fallback(p, float(g), low, high) - float(g)) ** 2 for p, g in zip(predictions, golds)
    ]
    return math.sqrt(sum(errors) / len(errors))


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge(predictions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure (``rouge-score``, Porter stemming)."""
    _check_lengths(predictions, golds)
    scorer = _rouge_scorer()
    r1 = rl = 0.0
    for prediction, gold in zip(predictions, golds):
        scores = scorer.score(gold, prediction)
        r1 += scores["rouge1"].fmeasure
        rl += scores["rougeL"].fmeasure
    return {"rouge-1": r1 / len(golds), "rouge-L": rl / len(golds)}


def eval_exact(gold: str, prediction: str) -> float:
    """Eval for classification: 1.0 for the right label, else 0.0."""
    return float(prediction.strip() == gold.strip())


def eval_rating(gold: str, prediction: str, low: int = 1, high: int = 5) -> float:
    """PAPER.md Eq. 8: 1 for an exact rating, 0 for the worst possible one."""
    y = float(gold)
    worst = max(abs(low - y), abs(high - y))
    y_hat = rating_or_fallback(prediction, y, low, high)
    return (worst - abs(y - y_hat)) / worst


def eval_rouge1(gold: str, prediction: str) -> float:
    """Eval for generation tasks: ROUGE-1 F-measure of one pair."""
    return _rouge_scorer().score(gold, prediction)["rouge1"].fmeasure

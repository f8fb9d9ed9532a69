"""LaMP metrics and the per-example training signal Eval(y, ŷ).

Two ways of reading an answer (``parsing``):

- ``"lamp"`` (the default) is LaMP's official evaluation (``eval/evaluation.py`` of the LaMP
  repository), so figures are comparable with the papers': the whole stripped answer is the label
  (case-sensitive exact match); a rating is ``float()`` of the whole stripped answer, kept as is even
  outside the scale, and an answer ``float()`` rejects becomes whichever of the scale's ends is
  farther from the gold; ROUGE is the ``rouge-score`` F-measure without stemming (the default of the
  ``evaluate`` package's ``rouge``, which LaMP calls). Two details differ, both documented where
  they act: a non-finite number ("nan", "inf") counts as unparseable rather than making the whole
  corpus metric NaN, and ROUGE is the plain mean over examples where ``evaluate`` reports the median
  of 1,000 bootstrap resamples of that mean (random, and equal to it within sampling noise).
- ``"lenient"`` finds the answer inside a longer text: the first number anywhere (inside the scale,
  else unparseable), a label mentioned anywhere (see ``TaskSpec.parse``), and Porter-stemmed ROUGE.
  It reads chatty small models more kindly, but its figures are not comparable with LaMP's.

``eval_*`` functions give the per-example signal of docs/method.md (Eq. 8 for ratings) that ROPG and
RSPG optimise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from persona_rag.errors import ConfigError, DataError

__all__ = [
    "PARSINGS",
    "Parsing",
    "accuracy",
    "eval_exact",
    "eval_rating",
    "eval_rouge1",
    "lamp_rating",
    "macro_f1",
    "mae",
    "parse_rating",
    "rating_or_fallback",
    "rmse",
    "rouge",
]

Parsing = Literal["lamp", "lenient"]
PARSINGS: tuple[Parsing, ...] = ("lamp", "lenient")

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _check_lengths(predictions: Sequence, golds: Sequence) -> None:
    if len(predictions) != len(golds):
        raise DataError(f"{len(predictions)} predictions for {len(golds)} golds")
    if not golds:
        raise DataError("cannot compute a metric over zero examples")


def _check_parsing(parsing: str) -> None:
    if parsing not in PARSINGS:
        raise ConfigError(f"parsing must be one of {PARSINGS}, got {parsing!r}")


def accuracy(predictions: Sequence[str], golds: Sequence[str]) -> float:
    """Fraction of exact (whitespace-stripped, case-sensitive) matches, as LaMP computes it."""
    _check_lengths(predictions, golds)
    return sum(p.strip() == g.strip() for p, g in zip(predictions, golds)) / len(golds)


def macro_f1(predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str]) -> float:
    """Macro-averaged F1 over ``labels`` (a prediction outside the set counts as wrong).

    Predictions and golds are stripped first, as LaMP's ``postprocess_text_classification`` does.
    Every label of the set is averaged, also those absent from golds and predictions (their F1
    is 0), which is what LaMP's ``f1_score(..., labels=all_labels, average="macro")`` does.
    """
    _check_lengths(predictions, golds)
    if not labels:
        raise ConfigError("macro_f1 needs a non-empty label set")
    pairs = [(p.strip(), g.strip()) for p, g in zip(predictions, golds)]
    total = 0.0
    for label in labels:
        tp = sum(p == label and g == label for p, g in pairs)
        fp = sum(p == label and g != label for p, g in pairs)
        fn = sum(p != label and g == label for p, g in pairs)
        denominator = 2 * tp + fp + fn
        total += 0.0 if denominator == 0 else 2 * tp / denominator
    return total / len(labels)


def lamp_rating(text: str) -> float | None:
    """LaMP's reading of a rating: ``float()`` of the whole stripped answer, else ``None``.

    "4", " 4.0 " and "9" are numbers (LaMP keeps out-of-scale numbers); "1. 1", "4 stars" and
    "I think 4" are not. Non-finite values ("nan", "inf") are ``None`` too: LaMP's code would turn
    the corpus MAE into NaN or infinity, which says nothing about the other answers.
    """
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_rating(text: str, low: int = 1, high: int = 5) -> float | None:
    """Lenient reading: the first number anywhere in ``text`` when it lies in ``[low, high]``."""
    match = _NUMBER.search(text or "")
    if match is None:
        return None
    value = float(match.group())
    return value if low <= value <= high else None


def rating_or_fallback(
    prediction: str, gold: float, low: int = 1, high: int = 5, *, parsing: Parsing = "lamp"
) -> float:
    """LaMP's unparseable rule: a prediction that is not a rating becomes the farther extreme.

    At equal distance (gold 3 on 1..5) the fallback is ``high``, as in LaMP's
    ``1.0 if abs(1 - y) > abs(5 - y) else 5.0``.
    """
    _check_parsing(parsing)
    value = lamp_rating(prediction) if parsing == "lamp" else parse_rating(prediction, low, high)
    if value is not None:
        return value
    return float(low) if abs(low - gold) > abs(high - gold) else float(high)


def _rating_errors(
    predictions: Sequence[str], golds: Sequence[str], low: int, high: int, parsing: Parsing
) -> list[float]:
    _check_lengths(predictions, golds)
    return [
        abs(rating_or_fallback(p, float(g), low, high, parsing=parsing) - float(g))
        for p, g in zip(predictions, golds)
    ]


def mae(
    predictions: Sequence[str],
    golds: Sequence[str],
    low: int = 1,
    high: int = 5,
    *,
    parsing: Parsing = "lamp",
) -> float:
    """Mean absolute error with the unparseable rule of :func:`rating_or_fallback`."""
    errors = _rating_errors(predictions, golds, low, high, parsing)
    return sum(errors) / len(errors)


def rmse(
    predictions: Sequence[str],
    golds: Sequence[str],
    low: int = 1,
    high: int = 5,
    *,
    parsing: Parsing = "lamp",
) -> float:
    """Root mean squared error with the unparseable rule of :func:`rating_or_fallback`."""
    errors = _rating_errors(predictions, golds, low, high, parsing)
    return math.sqrt(sum(e * e for e in errors) / len(errors))


@lru_cache(maxsize=2)
def _rouge_scorer(stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=stemmer)


def rouge(predictions: Sequence[str], golds: Sequence[str], *, stemmer: bool = False) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure (``rouge-score``; Porter stemming only if ``stemmer``).

    LaMP strips both texts and calls ``evaluate``'s ``rouge`` (no stemming), which reports the
    median of 1,000 bootstrap resamples of the mean F-measure; this is the mean itself.
    """
    _check_lengths(predictions, golds)
    scorer = _rouge_scorer(stemmer)
    r1 = rl = 0.0
    for prediction, gold in zip(predictions, golds):
        scores = scorer.score(gold.strip(), prediction.strip())
        r1 += scores["rouge1"].fmeasure
        rl += scores["rougeL"].fmeasure
    return {"rouge-1": r1 / len(golds), "rouge-L": rl / len(golds)}


def eval_exact(gold: str, prediction: str) -> float:
    """Eval for classification: 1.0 for the right label, else 0.0."""
    return float(prediction.strip() == gold.strip())


def eval_rating(
    gold: str, prediction: str, low: int = 1, high: int = 5, *, parsing: Parsing = "lamp"
) -> float:
    """Eq. 8 (docs/method.md): 1 for an exact rating, 0 for the worst possible one.

    A number outside the scale (kept by LaMP's reading) is at least as far from the gold as the
    worst answer on the scale can be, so it scores 0 rather than below: Eval stays in [0, 1].
    """
    y = float(gold)
    worst = max(abs(low - y), abs(high - y))
    y_hat = rating_or_fallback(prediction, y, low, high, parsing=parsing)
    return max(worst - abs(y - y_hat), 0.0) / worst


def eval_rouge1(gold: str, prediction: str, *, stemmer: bool = False) -> float:
    """Eval for generation tasks: ROUGE-1 F-measure of one pair."""
    return _rouge_scorer(stemmer).score(gold.strip(), prediction.strip())["rouge1"].fmeasure

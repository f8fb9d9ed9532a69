"""Paired significance of one system against another on the same questions.

The paper marks a method as significantly better with a paired test (p < 0.05). Here each
comparison gives the paired difference of a corpus metric, a 95% paired bootstrap interval of
that difference (resampling questions, both systems together) and a two-sided p-value from an
approximate randomisation test (per question, the two systems' answers are swapped at random;
Noreen 1989, Riezler and Maxwell 2005). Randomisation works for any corpus metric, so MAE, RMSE,
accuracy, macro-F1 and ROUGE are tested the same way, each on the task's own definition: the
per-question values come from :meth:`TaskSpec.evaluate` on that question alone, and the corpus
value is their mean, except RMSE (the root of the mean square) and macro-F1 (recomputed from the
resampled labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from persona_rag.errors import DataError
from persona_rag.tasks import TaskSpec

__all__ = [
    "PairedDifference",
    "format_difference",
    "paired_predictions",
    "paired_significance",
    "significance_against",
]

_LOWER_IS_BETTER = {"MAE", "RMSE"}


@dataclass(frozen=True)
class PairedDifference:
    """One metric of a system against a baseline on the same questions.

    Attributes:
        metric: the metric's name.
        system: the system's corpus value.
        baseline: the baseline's corpus value.
        difference: ``system - baseline``.
        low, high: the 95% (``1 - alpha``) paired bootstrap interval of the difference.
        p_value: two-sided approximate randomisation p-value.
        better: significantly better than the baseline (``p_value < alpha`` and the difference
            in the metric's good direction: down for MAE/RMSE, up otherwise).
    """

    metric: str
    system: float
    baseline: float
    difference: float
    low: float
    high: float
    p_value: float
    better: bool


def _per_question(task: TaskSpec, inputs: Sequence[str], golds: Sequence[str], outputs: Sequence[str]):
    rows = [task.evaluate([o], [g], [x]) for o, g, x in zip(outputs, golds, inputs)]
    return {name: np.array([row[name] for row in rows], dtype=np.float64) for name in rows[0]}


def _macro_f1(predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Macro-F1 per resample from one-hot labels of shape (resamples, questions, labels)."""
    tp = (predicted & gold).sum(axis=1)
    fp = (predicted & ~gold).sum(axis=1)
    fn = (~predicted & gold).sum(axis=1)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    return f1.mean(axis=-1)


def paired_significance(
    task: TaskSpec,
    inputs: Sequence[str],
    golds: Sequence[str],
    system: Sequence[str],
    baseline: Sequence[str],
    *,
    resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, PairedDifference]:
    """Compare ``system`` with ``baseline`` (parsed outputs, one per question) on every task metric.

    Args:
        task: the task (its metrics).
        inputs, golds: the questions' inputs and golds.
        system, baseline: the two systems' parsed outputs on the same questions.
        resamples: bootstrap resamples and randomisation rounds.
        alpha: the test level; the interval is ``1 - alpha``.
        seed: the random state (results are reproducible).

    Example (a system one step off on a quarter of 20 ratings, against one that always says 3):
        >>> from persona_rag.tasks import get_task
        >>> golds = ["4", "2", "5", "3"] * 5
        >>> system, baseline = ["4", "2", "4", "3"] * 5, ["3"] * 20
        >>> diff = paired_significance(get_task("LaMP-3"), [""] * 20, golds, system, baseline)["MAE"]
        >>> diff.system, diff.baseline, diff.difference, diff.better
        (0.25, 1.0, -0.75, True)
    """
    n = len(golds)
    if not n or not (len(inputs) == len(system) == len(baseline) == n):
        raise DataError(f"paired_significance needs equal, non-empty lists; got {n} golds")
    rng = np.random.default_rng(seed)
    boot = rng.integers(0, n, size=(resamples, n))
    swap = rng.random((resamples, n)) < 0.5
    corpus_system = task.evaluate(list(system), list(golds), list(inputs))
    corpus_baseline = task.evaluate(list(baseline), list(golds), list(inputs))
    per_system = _per_question(task, inputs, golds, system)
    per_baseline = _per_question(task, inputs, golds, baseline)
    # Macro-F1 averages over the task's label set; an answer outside it matches no label.
    labels = list(dict.fromkeys(label for x in inputs for label in task.labels_for(x)))
    one_hot = {
        name: np.array([[v == label for label in labels] for v in values], dtype=bool).reshape(n, len(labels))
        for name, values in (("system", system), ("baseline", baseline), ("gold", golds))
    }

    results: dict[str, PairedDifference] = {}
    for metric, observed_system in corpus_system.items():
        observed = observed_system - corpus_baseline[metric]
        if metric == "F1":  # not a mean over questions: recomputed from the resampled labels
            a, b, g = one_hot["system"], one_hot["baseline"], one_hot["gold"]
            boot_diff = _macro_f1(a[boot], g[boot]) - _macro_f1(b[boot], g[boot])
            swapped = swap[..., None]
            gold = np.broadcast_to(g[None], (resamples, *g.shape))
            null = _macro_f1(np.where(swapped, b, a), gold) - _macro_f1(np.where(swapped, a, b), gold)
        else:
            a, b = per_system[metric], per_baseline[metric]

            def aggregate(values: np.ndarray, metric: str = metric) -> np.ndarray:
                return np.sqrt((values**2).mean(axis=-1)) if metric == "RMSE" else values.mean(axis=-1)

            boot_diff = aggregate(a[boot]) - aggregate(b[boot])
            null = aggregate(np.where(swap, b, a)) - aggregate(np.where(swap, a, b))
        low, high = np.quantile(boot_diff, [alpha / 2, 1 - alpha / 2])
        p_value = (1 + int(np.sum(np.abs(null) >= abs(observed) - 1e-12))) / (resamples + 1)
        improves = observed < 0 if metric in _LOWER_IS_BETTER else observed > 0
        results[metric] = PairedDifference(
            metric=metric,
            system=observed_system,
            baseline=corpus_baseline[metric],
            difference=observed,
            low=float(low),
            high=float(high),
            p_value=p_value,
            better=bool(improves and p_value < alpha),
        )
    return results


def paired_predictions(
    task: TaskSpec,
    inputs: Mapping[str, str],
    system: Sequence[Mapping[str, Any]],
    baseline: Sequence[Mapping[str, Any]],
    *,
    resamples: int = 2000,
) -> tuple[int, dict[str, PairedDifference]]:
    """:func:`paired_significance` of two runs' predictions (the ``{"id", "output", "gold"}`` rows
    that ``evaluate``, ``report`` and the demo write), paired by question id; ``inputs`` maps each
    id to its input. Returns the number of questions both runs answered, and the differences."""
    by_id = {row["id"]: row for row in system}
    pairs = [(by_id[row["id"]], row) for row in baseline if row["id"] in by_id]
    if not pairs:
        raise DataError("the two runs answered no question in common (no id is in both)")
    tested = paired_significance(
        task,
        [inputs[b["id"]] for _, b in pairs],
        [b["gold"] for _, b in pairs],
        [s["output"] for s, _ in pairs],
        [b["output"] for _, b in pairs],
        resamples=resamples,
    )
    return len(pairs), tested


def significance_against(
    task: TaskSpec,
    inputs: Sequence[str],
    golds: Sequence[str],
    answers: Mapping[str, Sequence[str]],
    baseline: str,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every system of ``answers`` against ``answers[baseline]``, as JSON-ready dictionaries.

    The shape a results file keeps (``{system: {metric: PairedDifference fields}}``); the baseline
    itself is left out.
    """
    return {
        name: {
            metric: asdict(diff)
            for metric, diff in paired_significance(
                task, inputs, golds, outputs, answers[baseline], resamples=resamples, seed=seed
            ).items()
        }
        for name, outputs in answers.items()
        if name != baseline
    }


def format_difference(tested: Mapping[str, Any], digits: int = 3) -> str:
    """One table cell for a paired difference (:class:`PairedDifference` fields as a dict):
    ``+diff [low, high] p``, with ``*`` when significantly better."""
    mark = "*" if tested["better"] else ""
    d, low, high = (f"{tested[key]:+.{digits}f}" for key in ("difference", "low", "high"))
    return f"{d} [{low}, {high}] {tested['p_value']:.3f}{mark}"

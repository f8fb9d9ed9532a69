"""From label scores to an answer: the decision over the labels, and contextual calibration.

With a label set a generator scores every label instead of generating, then answers the best one
(``argmax``) or, for numeric labels, their probability-weighted mean (``mean``, which lowers
MAE/RMSE when the model is unsure). Calibration (Zhao et al. 2021) first divides the label
probabilities by those the model gives a content-free version of the prompt, which removes a
small model's bias towards some labels (SmolLM2 says "1" to everything).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from persona_rag.cache import LRUCache, text_key
from persona_rag.errors import ConfigError
from persona_rag.fingerprint import stable_hash

if TYPE_CHECKING:
    from persona_rag.lm import LocalLM

__all__ = ["ContentFreeScores", "calibrated", "check_label_settings", "decide", "log_softmax"]


def log_softmax(row: np.ndarray) -> np.ndarray:
    """Label scores as log-probabilities over the label set (shifted by the maximum, so no
    exponent overflows)."""
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def decide(labels: Sequence[str], scores: np.ndarray, decision: str) -> str:
    """The answer ``decision`` (``argmax`` or ``mean``) reads from the labels' scores."""
    if decision == "mean":
        values = np.array([float(label) for label in labels])
        return f"{float(np.exp(log_softmax(scores)) @ values):.3f}"
    return labels[int(np.argmax(scores))]


def calibrated(scores: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each prompt's label log-probabilities less those of its content-free prompt."""
    return [log_softmax(row) - log_softmax(bias) for row, bias in zip(scores, biases)]


def check_label_settings(
    *,
    calibrate: bool,
    decision: str,
    label_sets: Sequence[Sequence[str]],
    content_free_prompts: Sequence[str | None] | None,
    scored: Sequence[int],
) -> None:
    """Usage errors are raised before any model call, and not as generation failures."""
    if calibrate and (content_free_prompts is None or any(content_free_prompts[i] is None for i in scored)):
        raise ConfigError("calibrate=True needs a content-free prompt for every labelled prompt")
    if decision == "mean":
        for labels in label_sets:
            if not all(_is_number(label) for label in labels):
                raise ConfigError(f"label_decision='mean' needs numeric labels, got {list(labels)}")


class ContentFreeScores:
    """Label scores of content-free prompts, cached: without a profile they are all the same, so a
    calibrated run scores each once per model."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._cache: LRUCache[str, np.ndarray] = LRUCache(maxsize)

    def __call__(
        self,
        model: LocalLM,
        prompts: Sequence[str],
        labels: Sequence[Sequence[str]],
        *,
        messages: Callable[[str], list[dict[str, Any]]],
        batch_size: int,
        normalization: str,
    ) -> list[np.ndarray]:
        """The scores of ``labels`` after each of ``prompts``, each conversation made by ``messages``."""
        identity = stable_hash(model.fingerprint())  # not the name: a retrained folder keeps its name
        mode = f"{identity}|{normalization}"
        keys = [f"{mode}|{text_key([p, *ls])}" for p, ls in zip(prompts, labels)]
        missing = {key: i for i, key in enumerate(keys) if self._cache.get(key) is None}
        if missing:
            rows = model.score(
                [messages(prompts[i]) for i in missing.values()],
                [labels[i] for i in missing.values()],
                batch_size=batch_size,
                normalization=normalization,
            )
            for key, row in zip(missing, rows):
                self._cache.put(key, row)
        return [self._cache.get(key) for key in keys]  # type: ignore[misc]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

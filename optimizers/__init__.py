"""Training-side DSPy optimizers for persona-rag programs.

They change weights (the reader, retrievers, the selector) with the LLM's metric as the signal.
This package imports ``persona_rag``; ``persona_rag`` never imports it. Names are imported on first
use, so the command line's help does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "optimizers.feedback": ("CandidateFeedback", "Feedback", "FeedbackCache", "PoolFeedback"),
    "optimizers.reader": ("ReaderFinetune", "ReaderFinetuneConfig"),
    "optimizers.ropg": ("ROPG_KD", "ROPG_RL", "ROPGConfig", "ROPGKDConfig"),
    "optimizers.rspg": ("RSPG", "RSPGConfig"),
    "optimizers.training": ("Trainer", "TrainingConfig", "TrainingResult"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "ROPG_KD",
    "ROPG_RL",
    "RSPG",
    "CandidateFeedback",
    "Feedback",
    "FeedbackCache",
    "PoolFeedback",
    "ROPGConfig",
    "ROPGKDConfig",
    "RSPGConfig",
    "ReaderFinetune",
    "ReaderFinetuneConfig",
    "Trainer",
    "TrainingConfig",
    "TrainingResult",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'optimizers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

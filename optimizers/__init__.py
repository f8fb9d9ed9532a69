"""Training-side DSPy optimizers for persona-rag programs.

They change weights (the reader, retrievers, the selector) with the LLM's metric as the signal.
This package imports ``persona_rag``; ``persona_rag`` never imports it. Names are imported on first
use, so the command line's help does not load torch.
"""

from __future__ import annotations

from persona_rag.lazy import lazy_exports

_EXPORTS = {
    "optimizers.feedback": ("CandidateFeedback", "Feedback", "FeedbackCache", "PoolFeedback"),
    "optimizers.metric": ("MetricError",),
    "optimizers.configs": (
        "ROPGConfig",
        "ROPGKDConfig",
        "ROPGRLConfig",
        "RSPGConfig",
        "ReaderFinetuneConfig",
        "SetPLConfig",
    ),
    "optimizers.reader": ("ReaderFinetune",),
    "optimizers.ropg": ("ROPG_KD", "ROPG_RL"),
    "optimizers.rspg": ("RSPG",),
    "optimizers.set_pl": ("SetPL",),
    "optimizers.training": ("Trainer", "TrainingConfig", "TrainingResult"),
}

__all__ = [
    "ROPG_KD",
    "ROPG_RL",
    "RSPG",
    "CandidateFeedback",
    "Feedback",
    "FeedbackCache",
    "MetricError",
    "PoolFeedback",
    "ROPGConfig",
    "ROPGKDConfig",
    "ROPGRLConfig",
    "RSPGConfig",
    "ReaderFinetune",
    "ReaderFinetuneConfig",
    "SetPL",
    "SetPLConfig",
    "Trainer",
    "TrainingConfig",
    "TrainingResult",
]

__getattr__, __dir__ = lazy_exports("optimizers", _EXPORTS, globals())

"""Training-side DSPy optimizers for persona-rag programs.

They change weights (the reader, retrievers, the selector) with the LLM's metric as the signal.
This package imports ``persona_rag``; ``persona_rag`` never imports it.
"""

from optimizers.feedback import CandidateFeedback, Feedback, FeedbackCache, PoolFeedback
from optimizers.reader import ReaderFinetune, ReaderFinetuneConfig
from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from optimizers.rspg import RSPG, RSPGConfig
from optimizers.training import Trainer, TrainingConfig, TrainingResult

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

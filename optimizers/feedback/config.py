"""The settings of trainers that learn from LLM feedback, beside those every trainer shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from optimizers.feedback.signals import SIGNAL_HELP, SIGNALS, Signal
from optimizers.training.config import TrainingConfig
from persona_rag.cli_types import positive_int
from persona_rag.config_flags import option
from persona_rag.errors import require_at_least, require_one_of

__all__ = ["FeedbackTrainingConfig"]


@dataclass(kw_only=True)
class FeedbackTrainingConfig(TrainingConfig):
    """Settings of trainers that learn from LLM feedback (ROPG, RSPG), beside the shared ones.

    Attributes:
        max_examples: training examples used (``None``: all); each costs one LLM call per
            candidate document or pool member.
        max_val_examples: validation examples for early stopping and checkpoint choice.
        feedback_cache: SQLite file of LLM answers, shared between runs and methods.
        feedback_batch_size: prompts per generator batch.
        signal: what the LLM's feedback scores (:mod:`optimizers.feedback.signals`): ``metric`` (the
            paper's), ``likelihood``, ``metric+likelihood``, ``expected`` or ``auto``.
    """

    max_examples: int | None = field(
        default=None, metadata=option("first N training questions (None: all)", type=positive_int)
    )
    max_val_examples: int | None = field(
        default=100, metadata=option("validation questions scored", type=positive_int)
    )
    feedback_cache: str | Path = field(
        default="runs/feedback.sqlite", metadata=option("cache of the LLM's answers")
    )
    feedback_batch_size: int = field(
        default=32, metadata=option("prompts per batch of the LLM's feedback", type=positive_int)
    )
    signal: Signal = field(default="auto", metadata=option(SIGNAL_HELP))

    # The cache holds answers keyed by content, so where it is and how it is filled change nothing.
    run_only: ClassVar[frozenset[str]] = TrainingConfig.run_only | {"feedback_cache", "feedback_batch_size"}

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, "max_examples", "max_val_examples", "feedback_batch_size")
        require_one_of(self, "signal", SIGNALS)

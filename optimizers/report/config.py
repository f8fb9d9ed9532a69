"""What the paper's comparison is told: :class:`ReportConfig`, its budget and settings.

Kept apart from :mod:`~optimizers.report.run`, which loads dspy and torch: ``persona-rag report``
builds its flags from this class while ``--help`` must answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optimizers.feedback.signals import SIGNALS, Signal
from persona_rag.errors import require_at_least, require_one_of, require_positive

__all__ = ["ReportConfig"]


@dataclass(kw_only=True)
class ReportConfig:
    """Budget and settings of the comparison.

    Attributes:
        output_dir: where every stage, the tables and the chart go.
        train_examples: training questions for ROPG (``None``: the whole train split less the
            validation questions); each costs ``candidates`` LLM scoring passes.
        rspg_train_examples: training questions for the selectors (``None``: as for ROPG); each
            costs one LLM pass per pool member, with ``k`` items in the prompt.
        val_examples: validation questions carved from the train split (each drawn user's latest
            question), for every stage's checkpoint choice.
        candidates: ``l`` of ROPG.
        signal: the feedback signal (:mod:`optimizers.feedback`); ``auto`` is metric+likelihood for
            an in-process reader.
        kd_signal: ROPG-KD's own signal (``None``: ``signal``).
        kd_free_ties: ROPG-KD's ``free_ties`` (:class:`~optimizers.ropg.ROPGKDConfig`).
        ropg_epochs, ropg_learning_rate: ROPG training.
        rspg_epochs, rspg_learning_rate: selector training.
        rspg_trainable_layers: train only the selector encoder's last this many layers
            (:class:`~optimizers.rspg.RSPGConfig`; ``None``: every weight, with activation
            checkpointing). Last-layer training keeps few activations, so it runs without
            recomputing them: about half the step time of every weight (``benchmarks/selector_memory.py``).
        batch_size, gradient_accumulation_steps: both trainers.
        patience: early stopping of both trainers (epochs without a better validation score).
        set_pl: train and report the Set-PL row. Each of its questions costs ``samples`` reader
            calls with all k items per epoch, more than ROPG's whole feedback on generation tasks;
            ``False`` leaves the row (and its comparison with ROPG-KD) out of the table.
        ropg_checkpoints: already trained encoders (``{"ropg-kd": dir}``, also ``"set-pl"``) to use
            instead of training.
        feedback_cache: the shared LLM answer cache (default: ``output_dir/feedback.sqlite``).
        resamples: bootstrap resamples and randomisation rounds of the significance tests.
        seed: training seed and the draw of validation users.
        resume: let each trainer resume its state in ``output_dir`` (``False``: start fresh).
    """

    output_dir: str | Path = "reports/report"
    train_examples: int | None = None
    rspg_train_examples: int | None = None
    val_examples: int = 150
    candidates: int = 16
    signal: Signal = "auto"
    kd_signal: Signal | None = None
    kd_free_ties: bool = False
    ropg_epochs: int = 3
    ropg_learning_rate: float = 1e-5
    rspg_epochs: int = 5
    rspg_learning_rate: float = 5e-5
    rspg_trainable_layers: int | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 2
    patience: int | None = 2
    set_pl: bool = True
    ropg_checkpoints: dict[str, str | Path] = field(default_factory=dict)
    feedback_cache: str | Path | None = None
    resamples: int = 2000
    seed: int = 0
    resume: bool = True

    def __post_init__(self) -> None:
        """Refuse at once what would otherwise fail at the stage that reads it, hours in."""
        require_at_least(self, 2, "candidates")
        require_at_least(
            self,
            1,
            "train_examples",
            "rspg_train_examples",
            "val_examples",
            "ropg_epochs",
            "rspg_epochs",
            "rspg_trainable_layers",
            "batch_size",
            "gradient_accumulation_steps",
            "resamples",
        )
        require_at_least(self, 0, "patience")
        require_positive(self, "ropg_learning_rate", "rspg_learning_rate")
        require_one_of(self, "signal", SIGNALS)
        require_one_of(self, "kd_signal", (None, *SIGNALS))

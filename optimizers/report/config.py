"""What the paper's comparison is told: :class:`ReportConfig`, its budget and settings.

Kept apart from :mod:`~optimizers.report.run`, which loads dspy and torch: ``persona-rag report``
builds its flags from this class while ``--help`` must answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optimizers.configs import FREE_TIES_HELP, OBJECTIVE_HELP, OBJECTIVES, SELECTOR_LAYERS_HELP, Objective
from optimizers.feedback.signals import SIGNAL_HELP, SIGNALS, Signal
from optimizers.training.config import OVERWRITE_HELP
from persona_rag.cli_types import non_negative_int, positive_float, positive_int
from persona_rag.config_flags import option
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
        rspg_objective: the selectors' loss (:class:`~optimizers.rspg.RSPGConfig`): ``distill``
            (Eq. 7) or ``expected`` (the expected score of the picked member).
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
    train_examples: int | None = field(
        default=None,
        metadata=option("ROPG training questions (default: the whole train split)", type=positive_int),
    )
    rspg_train_examples: int | None = field(
        default=None,
        metadata=option("selector training questions (default: as --train-examples)", type=positive_int),
    )
    val_examples: int = field(
        default=150,
        metadata=option("validation carved from train: users' latest questions", type=positive_int),
    )
    candidates: int = field(default=16, metadata=option("ROPG's l", type=positive_int))
    signal: Signal = field(default="auto", metadata=option(SIGNAL_HELP))
    kd_signal: Signal | None = field(
        default=None, metadata=option("ROPG-KD's own feedback signal (default: --signal)")
    )
    kd_free_ties: bool = field(default=False, metadata=option(f"ROPG-KD: {FREE_TIES_HELP}"))
    ropg_epochs: int = field(default=3, metadata=option("ROPG epochs", type=positive_int))
    ropg_learning_rate: float = field(
        default=1e-5,
        metadata=option("ROPG learning rate", "--ropg-lr", "--ropg-learning-rate", type=positive_float),
    )
    rspg_epochs: int = field(default=5, metadata=option("RSPG epochs", type=positive_int))
    rspg_learning_rate: float = field(
        default=5e-5,
        metadata=option("RSPG learning rate", "--rspg-lr", "--rspg-learning-rate", type=positive_float),
    )
    rspg_objective: Objective = field(default="distill", metadata=option(f"RSPG: {OBJECTIVE_HELP}"))
    rspg_trainable_layers: int | None = field(
        default=None, metadata=option(SELECTOR_LAYERS_HELP, type=positive_int)
    )
    batch_size: int = field(
        default=8,
        metadata=option(
            "examples per forward pass of both trainers", "--train-batch-size", type=positive_int
        ),
    )
    gradient_accumulation_steps: int = field(
        default=2,
        metadata=option(
            "forward passes per optimizer step of both trainers",
            "--grad-accum",
            "--gradient-accumulation-steps",
            type=positive_int,
        ),
    )
    patience: int | None = field(
        default=2,
        metadata=option(
            "stop either trainer after this many epochs without improvement", type=non_negative_int
        ),
    )
    set_pl: bool = field(
        default=True,
        metadata=option(
            "leave the Set-PL row out: on generation tasks its sampled sets cost more reader calls than "
            "every other stage together",
            "--no-set-pl",
            off=True,
        ),
    )
    ropg_checkpoints: dict[str, str | Path] = field(default_factory=dict)
    feedback_cache: str | Path | None = field(
        default=None, metadata=option("cache of the LLM's answers (default: <out>/feedback.sqlite)")
    )
    resamples: int = field(
        default=2000,
        metadata=option(
            "bootstrap resamples and randomisation rounds of the significance tests", type=positive_int
        ),
    )
    seed: int = field(default=0, metadata=option("training seed and the draw of validation users"))
    resume: bool = field(default=True, metadata=option(OVERWRITE_HELP, "--overwrite", off=True))

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
        require_one_of(self, "rspg_objective", OBJECTIVES)

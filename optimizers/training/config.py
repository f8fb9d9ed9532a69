"""What every trainer is told: the shared settings, and the ``compile`` arguments none of them use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from persona_rag.cli_types import (
    MIXED_PRECISIONS,
    mixed_precision_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from persona_rag.config_flags import option
from persona_rag.errors import ConfigError, require_at_least, require_fraction, require_positive
from persona_rag.fingerprint import json_value

__all__ = ["OVERWRITE_HELP", "TrainingConfig", "config_dict", "refuse_unused_compile_arguments"]

# The help of ``--overwrite``, which turns ``resume`` off in every command that trains (``report`` too).
OVERWRITE_HELP = (
    "start fresh, replacing a resume state in --out (by default a run resumes it, and a state of a "
    "different run there is an error)"
)


@dataclass(kw_only=True)
class TrainingConfig:
    """Settings every trainer shares (the paper's defaults where it states them).

    Attributes:
        output_dir: where the best weights (``best/``), the resume state (``state/``),
            ``history.json`` and ``curves.png`` go.
        learning_rate: peak learning rate (paper: 1e-5).
        epochs: passes over the training set (paper: 10 for retrievers, 20 for selectors).
        batch_size: examples per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step (paper: effective 64), in
            total over the processes of a launch (best a multiple of their number).
        warmup_ratio: share of optimizer steps with linear warm-up (paper: 5%).
        max_grad_norm: gradient clipping (paper: 1.0).
        weight_decay: AdamW weight decay (paper: none, i.e. Adam).
        patience: stop after this many epochs without a better validation score (``None``: never).
        checkpoint_every: optimizer steps between resume checkpoints (also saved every epoch).
        resume: continue from ``output_dir/state`` when it holds this same run (settings, data,
            base model); a different run there is an error. ``False`` starts fresh and replaces
            that state (the CLI's ``--overwrite``).
        seed: shuffling and initialisation seed.
        mixed_precision: ``auto``, ``no`` or ``bf16`` forward passes
            (:func:`optimizers.distributed.mixed_precision`); weights and Adam stay float32.
        progress: show a progress bar.
    """

    output_dir: str | Path = field(default="runs/train", metadata=option("checkpoints and history", "--out"))
    learning_rate: float = field(
        default=1e-5, metadata=option("peak learning rate", "--lr", "--learning-rate", type=positive_float)
    )
    epochs: int = field(default=10, metadata=option("passes over the training set", type=positive_int))
    batch_size: int = field(
        default=8, metadata=option("examples per forward pass", "--train-batch-size", type=positive_int)
    )
    gradient_accumulation_steps: int = field(
        default=8,
        metadata=option(
            "forward passes per optimizer step, split over the processes of a launch",
            "--grad-accum",
            "--gradient-accumulation-steps",
            type=positive_int,
        ),
    )
    warmup_ratio: float = field(
        default=0.05, metadata=option("share of optimizer steps with linear warm-up", type=non_negative_float)
    )
    max_grad_norm: float = field(default=1.0, metadata=option("gradient clipping norm", type=positive_float))
    weight_decay: float = field(default=0.0, metadata=option("AdamW weight decay", type=non_negative_float))
    patience: int | None = field(
        default=3,
        metadata=option("stop after this many epochs without improvement", type=non_negative_int),
    )
    checkpoint_every: int = field(
        default=20,
        metadata=option(
            "optimizer steps between resume checkpoints (one is also saved every epoch)", type=positive_int
        ),
    )
    resume: bool = field(default=True, metadata=option(OVERWRITE_HELP, "--overwrite", off=True))
    seed: int = field(default=0, metadata=option("shuffling and initialisation seed"))
    mixed_precision: str = field(
        default="auto",
        metadata=option(
            "forward passes in bf16 autocast (weights and Adam stay float32); auto: where the device "
            "computes bfloat16 natively (a bf16 GPU, a CPU with AVX-512 BF16 or AMX)",
            type=mixed_precision_name,
        ),
    )
    progress: bool = field(default=True, metadata=option("show a progress bar"))

    run_only: ClassVar[frozenset[str]] = frozenset({"output_dir", "checkpoint_every", "resume", "progress"})
    """Fields that do not change what a run computes, left out of its fingerprint."""

    def __post_init__(self) -> None:
        """Refuse settings that cannot train, naming the field, before any model loads.

        >>> TrainingConfig(epochs=0)
        Traceback (most recent call last):
        persona_rag.errors.ConfigError: TrainingConfig: epochs=0; expected a number of at least 1
        """
        require_at_least(self, 1, "epochs", "batch_size", "gradient_accumulation_steps", "checkpoint_every")
        require_at_least(self, 0, "patience", "weight_decay")
        require_positive(self, "learning_rate", "max_grad_norm")
        require_fraction(self, "warmup_ratio")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(
                f"{type(self).__name__}: mixed_precision={self.mixed_precision!r}; expected one of "
                f"{', '.join(MIXED_PRECISIONS)}"
            )

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def identity(self) -> dict[str, Any]:
        """The settings that shape the trained weights (all fields but :attr:`run_only`)."""
        return {k: v for k, v in config_dict(self).items() if k not in self.run_only}


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready view of a config dataclass: paths as strings wherever they sit (also inside a
    dict, such as the report's ``ropg_checkpoints``), converted as fingerprints convert them."""
    return json.loads(json.dumps(asdict(config), default=json_value))


def refuse_unused_compile_arguments(optimizer: object, teacher: Any, extra: dict[str, Any]) -> None:
    """Refuse the arguments of DSPy's ``Teleprompter.compile`` that an optimizer here does not use.

    The signature keeps ``teacher=`` and ``**kwargs`` so DSPy's composers (``BetterTogether``)
    call these optimizers as any other, but a teacher program or an option that is silently
    ignored would let a caller believe it shaped the result.

    >>> refuse_unused_compile_arguments(object(), None, {"max_rounds": 2})
    Traceback (most recent call last):
    persona_rag.errors.ConfigError: object.compile() does not use max_rounds=
    """
    unused = [f"{name}=" for name in extra] + (["teacher="] if teacher is not None else [])
    if unused:
        raise ConfigError(f"{type(optimizer).__name__}.compile() does not use {', '.join(unused)}")

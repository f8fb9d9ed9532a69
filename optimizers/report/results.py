"""What a report holds: Table 3's columns, and the measurements of each reported split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COLUMNS",
    "FIXED_COLUMNS",
    "MEMBER_COLUMNS",
    "ROPG_COLUMNS",
    "ROPG_START",
    "SET_COLUMN",
    "SET_RIVAL",
    "Report",
    "SplitReport",
]

FIXED_COLUMNS = ("NoPers", "Random", "Recency", "BM25", "Dense")
ROPG_COLUMNS = ("ROPG-RL", "ROPG-KD")
ROPG_START = "Dense"
"""The fixed column ROPG's rows are also compared with: the untuned retriever they tune."""
SET_COLUMN, SET_RIVAL = "Set-PL", "ROPG-KD"
"""The set-level row, and the item-level row it is also compared with."""
COLUMNS = (*FIXED_COLUMNS, *ROPG_COLUMNS, SET_COLUMN, "RSPG-Pre", "RSPG-Post", "Oracle")
MEMBER_COLUMNS = {"none": "NoPers", "random": "Random", "recency": "Recency", "bm25": "BM25",
                  "dense": "Dense", "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD",
                  "set-pl": SET_COLUMN}  # fmt: skip
"""The column of each pool member (and row) by its retriever's name."""


@dataclass
class SplitReport:
    """What :func:`run_report` measured on one reported split.

    Attributes:
        split: the split's name.
        n: questions.
        metrics: per column (``COLUMNS``), the task metrics plus ``score`` (mean Eval).
        success_rate: per selector column, the selection success rate (Table 4).
        oracle_worst: the metrics of always picking the worst pool member (the lower bound).
        baseline: the best fixed retriever on this split by the task's primary metric.
        significance: per column, per metric, the paired difference against ``baseline``
            (``system``, ``baseline``, ``difference``, ``low``, ``high``, ``p_value``, ``better``).
        against_start: the same for ROPG-RL, ROPG-KD and Set-PL against :data:`ROPG_START`
            (Dense), the untuned retriever they tune.
        against_rival: the same for Set-PL against :data:`SET_RIVAL` (ROPG-KD).
    """

    split: str
    n: int
    metrics: dict[str, dict[str, float]]
    success_rate: dict[str, float]
    oracle_worst: dict[str, float]
    baseline: str
    significance: dict[str, dict[str, dict[str, Any]]]
    against_start: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    against_rival: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Report:
    """A whole comparison.

    Attributes:
        task: the task name.
        splits: per reported split, its results.
        protocol: what was trained and validated on (counts, and the check that no reported
            question was among them).
        training: per trained stage, its cost (feedback calls and seconds, optimizer steps and
            seconds, their rates) and its best epoch.
        seconds: wall time per stage.
        parsing: how answers were read and scored (``TaskSpec.parsing``), said in ``table.md``.
    """

    task: str
    splits: dict[str, SplitReport]
    protocol: dict[str, Any]
    training: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    parsing: str = "lamp"

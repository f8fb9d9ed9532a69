"""What the demo runs: its sizes, its pool of retrievers and the names of its rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from persona_rag.config_flags import option

__all__ = ["POOL", "ROW_NAMES", "DemoConfig"]

POOL = ("none", "recency", "bm25", "dense")
"""The untuned retrievers: the reader's fine-tune fills its prompts with each, the selector picks."""
ROW_NAMES = {
    "none": "NoPers",
    "recency": "Recency",
    "bm25": "BM25",
    "dense": "Dense",
    "store": "Dense (Chroma store)",
    "ropg-kd": "ROPG-KD",
    "rspg-post": "RSPG-Post",
}
"""The results table's name of each row, by the retriever or stage that answered it."""


@dataclass(kw_only=True)
class DemoConfig:
    """The demo's sizes (defaults: the full demo; :meth:`tiny`: a seconds-long smoke run).

    Attributes:
        out: where the data, checkpoints, store, results, chart and caches go.
        users: simulated users of the sample task.
        profile_size: items each user rated before their first question.
        questions: train/dev/test questions per user (dev is written but not used).
        seed: the sample task's seed (not tuned: 0 is the default everywhere).
        reader_examples: training prompts of the reader fine-tune.
        reader_epochs: its epochs.
        train_examples: training questions of ROPG and RSPG (each costs an LLM answer per
            candidate or pool member); ``None``: all.
        candidates: ROPG's ``l``.
        ropg_epochs: ROPG-KD epochs.
        rspg_epochs: RSPG epochs.
    """

    out: Path = field(
        default=Path("runs/demo"), metadata=option("where the data, checkpoints, results and chart go")
    )
    users: int = 48
    profile_size: int = 24
    questions: tuple[int, int, int] = (6, 1, 3)
    seed: int = field(default=0, metadata=option("the sample task's seed"))
    reader_examples: int = 160
    reader_epochs: int = 1
    train_examples: int | None = 96
    candidates: int = 8
    ropg_epochs: int = 2
    rspg_epochs: int = 2

    @classmethod
    def tiny(cls, out: Path, seed: int = 0) -> DemoConfig:
        """A run of every stage at toy size: for tests and a quick look, not for its numbers."""
        return cls(
            out=out,
            users=3,
            profile_size=8,
            questions=(3, 1, 2),
            seed=seed,
            reader_examples=6,
            candidates=4,
            ropg_epochs=1,
            rspg_epochs=1,
        )

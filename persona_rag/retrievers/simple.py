"""Retrievers without an index: none, random (seeded) and recency."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from persona_rag.dates import timestamp
from persona_rag.retrievers.base import RetrievalResult, Retriever
from persona_rag.tasks import Document

__all__ = ["NoRetriever", "RandomRetriever", "RecencyRetriever"]


class NoRetriever(Retriever):
    """The non-personalised baseline: retrieves nothing, so the prompt is the bare input."""

    kind = "none"

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        return np.zeros(len(documents))

    def search(self, query: str, documents: Sequence[Document], k: int = 4) -> RetrievalResult:
        return RetrievalResult(())

    def batch_search(
        self, queries: Sequence[str], documents: Sequence[Sequence[Document]], k: int = 4
    ) -> list[RetrievalResult]:
        return [RetrievalResult(()) for _ in queries]


class RandomRetriever(Retriever):
    """Uniformly random items, reproducible: the order depends only on seed, query and item ids.

    Deriving the random state from the inputs (not from a shared generator) keeps results the same
    under multi-threaded evaluation and across runs.
    """

    kind = "random"

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        ids = "\x01".join(doc.id for doc in documents)
        digest = hashlib.sha256(f"{self.seed}\x00{query}\x00{ids}".encode())
        rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
        return rng.random(len(documents))

    def config(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def apply_config(self, config: Mapping[str, Any]) -> None:
        self.seed = int(config.get("seed", self.seed))


class RecencyRetriever(Retriever):
    """The user's most recent items first.

    Items are ordered by their parsed ``date``; items whose date is missing or unparseable keep
    their profile position and rank below dated ones (LaMP profiles list items oldest first).
    The score is the rank-normalised recency in ``(0, 1]``.
    """

    kind = "recency"

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        keys = []
        for doc in documents:
            stamp = timestamp(doc.date)
            keys.append((stamp is not None, stamp if stamp is not None else 0.0, doc.index))
        order = sorted(range(len(documents)), key=lambda i: keys[i])
        scores = np.empty(len(documents))
        for rank, i in enumerate(order):
            scores[i] = (rank + 1) / len(documents)
        return scores

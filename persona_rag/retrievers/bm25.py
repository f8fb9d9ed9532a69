"""BM25 over a user's profile, with the per-profile index built once and reused."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from persona_rag.cache import LRUCache, text_key
from persona_rag.retrievers.base import Retriever
from persona_rag.tasks import Document

__all__ = ["BM25Retriever", "tokenize"]

# bm25s logs every index build at DEBUG on its own handler; one per profile floods the console.
logging.getLogger("bm25s").setLevel(logging.WARNING)

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without English stopwords."""
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


class BM25Retriever(Retriever):
    """Lexical retrieval with ``bm25s``.

    The authors' code rebuilds a ``rank_bm25`` index for every query. Here a profile's index is
    built once and kept in an LRU cache keyed by the profile's texts, so the many questions of one
    user (and every epoch of training) reuse it.

    Args:
        method: BM25 variant of ``bm25s`` (``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``).
        k1: term-frequency saturation.
        b: length normalisation.
        cache_size: number of profile indexes kept.
    """

    kind = "bm25"

    def __init__(
        self, *, method: str = "lucene", k1: float = 1.5, b: float = 0.75, cache_size: int = 4096
    ) -> None:
        super().__init__()
        self.method, self.k1, self.b = method, k1, b
        self._indexes: LRUCache[str, bm25s.BM25] = LRUCache(cache_size)

    def _index(self, documents: Sequence[Document]) -> bm25s.BM25:
        def build() -> bm25s.BM25:
            index = bm25s.BM25(method=self.method, k1=self.k1, b=self.b)
            # An empty token list would make bm25s drop the document and shift positions.
            index.index([tokenize(doc.text) or [""] for doc in documents], show_progress=False)
            return index

        key = f"{self.method}|{self.k1}|{self.b}|{text_key(doc.text for doc in documents)}"
        return self._indexes.get_or_create(key, build)

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        tokens = tokenize(query)
        if not tokens:
            return np.zeros(len(documents))
        return np.asarray(self._index(documents).get_scores(tokens), dtype=np.float64)

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "k1": self.k1, "b": self.b}

    def apply_config(self, config: Mapping[str, Any]) -> None:
        self.method = config.get("method", self.method)
        self.k1 = float(config.get("k1", self.k1))
        self.b = float(config.get("b", self.b))

    def __deepcopy__(self, memo: dict) -> BM25Retriever:
        copy = BM25Retriever(method=self.method, k1=self.k1, b=self.b, cache_size=self._indexes.maxsize)
        copy._indexes = self._indexes  # keyed by settings and texts, so sharing is safe
        return copy

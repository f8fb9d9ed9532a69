"""BM25 over a user's profile, with the per-profile inverted index built once and reused."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from persona_rag.cache import LRUCache
from persona_rag.errors import ConfigError
from persona_rag.retrievers.base import Retriever
from persona_rag.tasks import Document

__all__ = ["MAX_INDEXED_CHARS", "BM25Retriever", "ProfileIndex", "tokenize"]

_WORD = re.compile(r"\w+")
MAX_INDEXED_CHARS = 100_000
"""Characters of a profile item that BM25 indexes: its first 100,000 (about 15,000 words, more than
any LaMP item holds). A longer item is ranked by that part; indexing all of a 50 MB item held
1.1 GiB of word lists."""
_STOPWORDS = frozenset(STOPWORDS_EN)
_IDF = {
    # Lucene's idf is never negative. Robertson's would be negative for terms in more than half of
    # the documents; as in bm25s (and rank_bm25's BM25Okapi with epsilon=0) it is floored at 0.
    # ATIRE's is log(N / df).
    "lucene": lambda n, df: np.log1p((n - df + 0.5) / (df + 0.5)),
    "robertson": lambda n, df: np.log(np.maximum((n - df + 0.5) / (df + 0.5), 1.0)),
    "atire": lambda n, df: np.log(n / df),
}
# ATIRE keeps the (k1 + 1) factor of the original BM25 numerator; Lucene 8+ and bm25s's
# Robertson drop it. A constant factor leaves rankings unchanged; it is kept to match bm25s.
_SCALE = {"lucene": lambda k1: 1.0, "robertson": lambda k1: 1.0, "atire": lambda k1: k1 + 1.0}


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without English stopwords (the stopword list of ``bm25s``)."""
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


class ProfileIndex:
    """An inverted index of one profile with precomputed BM25 weights.

    Postings are stored term by term in flat arrays (document positions and weights, with an offset
    per term), so scoring a query is one slice-and-add per query term. The scores equal those of
    ``bm25s`` for the same variant and parameters (a test checks it).
    """

    __slots__ = ("documents", "offsets", "size", "vocabulary", "weights")

    def __init__(self, texts: Sequence[str], *, method: str, k1: float, b: float) -> None:
        self.vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        positions: list[int] = []
        frequencies: list[int] = []
        lengths = np.zeros(len(texts))
        for position, text in enumerate(texts):
            tokens = tokenize(text[:MAX_INDEXED_CHARS])
            lengths[position] = len(tokens)
            for term, tf in Counter(tokens).items():
                term_ids.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                positions.append(position)
                frequencies.append(tf)
        self.size = len(texts)
        terms = np.array(term_ids, dtype=np.int64)
        docs = np.array(positions, dtype=np.int64)
        tf = np.array(frequencies, dtype=np.float64)
        df = np.bincount(terms, minlength=len(self.vocabulary)).astype(np.float64)
        average = lengths.mean() if self.size and lengths.mean() > 0 else 1.0
        norm = k1 * (1.0 - b + b * lengths / average)
        weights = _IDF[method](self.size, df)[terms] * _SCALE[method](k1) * tf / (tf + norm[docs])
        order = np.argsort(terms, kind="stable")
        self.documents, self.weights = docs[order], weights[order]
        self.offsets = np.concatenate(([0], np.cumsum(df).astype(np.int64)))

    def scores(self, query_terms: Sequence[str]) -> np.ndarray:
        scores = np.zeros(self.size)
        for term in query_terms:
            t = self.vocabulary.get(term)
            if t is not None:
                start, end = self.offsets[t], self.offsets[t + 1]
                scores[self.documents[start:end]] += self.weights[start:end]
        return scores


class BM25Retriever(Retriever):
    """Lexical retrieval with BM25.

    The authors' code rebuilds a ``rank_bm25`` index for every query. Here each profile's index is
    built once and kept in an LRU cache keyed by its texts, so the many questions of one user (and
    every epoch of training) reuse it.

    Args:
        method: BM25 variant: ``lucene`` (default), ``robertson`` or ``atire`` (as in ``bm25s``).
        k1: term-frequency saturation.
        b: length normalisation.
        cache_size: number of profile indexes kept.
    """

    kind = "bm25"

    def __init__(
        self, *, method: str = "lucene", k1: float = 1.5, b: float = 0.75, cache_size: int = 4096
    ) -> None:
        super().__init__()
        if method not in _IDF:
            raise ConfigError(f"unknown BM25 method {method!r}; choose one of {', '.join(_IDF)}")
        self.method, self.k1, self.b = method, k1, b
        self._indexes: LRUCache[tuple, ProfileIndex] = LRUCache(cache_size)

    def index(self, documents: Sequence[Document]) -> ProfileIndex:
        """The cached index of ``documents`` (built on first use)."""
        texts = tuple(doc.text for doc in documents)
        # The texts themselves are the key: hashing reuses each string's cached hash, and equality
        # on a hit rules out collisions.
        key = (self.method, self.k1, self.b, texts)
        return self._indexes.get_or_create(
            key, lambda: ProfileIndex(texts, method=self.method, k1=self.k1, b=self.b)
        )

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        return self.index(documents).scores(tokenize(query))

    def config(self) -> dict[str, Any]:
        return {"method": self.method, "k1": self.k1, "b": self.b}

    def apply_config(self, config: Mapping[str, Any]) -> None:
        method = config.get("method", self.method)
        if method not in _IDF:
            raise ConfigError(f"unknown BM25 method {method!r}; choose one of {', '.join(_IDF)}")
        self.method = method
        self.k1 = float(config.get("k1", self.k1))
        self.b = float(config.get("b", self.b))

    def __deepcopy__(self, memo: dict) -> BM25Retriever:
        copy = BM25Retriever(method=self.method, k1=self.k1, b=self.b, cache_size=self._indexes.maxsize)
        copy._indexes = self._indexes  # keyed by settings and texts, so sharing is safe
        return copy

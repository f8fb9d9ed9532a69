"""Retrievers: one interface (query + profile -> ranked items), each a DSPy module."""

from __future__ import annotations

from typing import Any

from persona_rag.errors import ConfigError
from persona_rag.retrievers.base import Hit, ProfileSource, RetrievalResult, Retriever, top_k
from persona_rag.retrievers.bm25 import BM25Retriever
from persona_rag.retrievers.dense import DenseRetriever
from persona_rag.retrievers.simple import NoRetriever, RandomRetriever, RecencyRetriever

__all__ = [
    "RETRIEVERS",
    "BM25Retriever",
    "DenseRetriever",
    "Hit",
    "NoRetriever",
    "ProfileSource",
    "RandomRetriever",
    "RecencyRetriever",
    "RetrievalResult",
    "Retriever",
    "make_retriever",
    "top_k",
]

RETRIEVERS: dict[str, type[Retriever]] = {
    cls.kind: cls for cls in (NoRetriever, RandomRetriever, RecencyRetriever, BM25Retriever, DenseRetriever)
}


def make_retriever(kind: str, **kwargs: Any) -> Retriever:
    """Build a retriever by its name: ``none``, ``random``, ``recency``, ``bm25`` or ``dense``."""
    try:
        cls = RETRIEVERS[kind.lower()]
    except KeyError:
        raise ConfigError(f"unknown retriever {kind!r}; choose one of {', '.join(RETRIEVERS)}") from None
    return cls(**kwargs)

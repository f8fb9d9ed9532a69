"""Dense retrieval: dot product of mean-pooled encoder embeddings (Contriever-style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np

from persona_rag.encoders import DEFAULT_ENCODER, TextEncoder, shared_encoder
from persona_rag.retrievers.base import ProfileSource, RetrievalResult, Retriever
from persona_rag.tasks import Document

__all__ = ["DenseRetriever"]


class DenseRetriever(Retriever):
    """Rank profile items by the dot product of query and document embeddings over τ.

    The score ``q·d / τ`` (τ: the encoder's ``temperature``, 1 unless a ROPG checkpoint says
    otherwise) is the logit ROPG's retrieval policy was trained with, so the scores a search returns
    are that policy's logits; the ranking is the dot product's.

    Document embeddings come from the encoder's cache, so a profile is encoded once and reused by
    every later query (the authors' code re-encodes the profile for each query). With a
    :class:`~persona_rag.store.ProfileStore` built with the same encoder, search runs inside Chroma.

    Args:
        encoder: a :class:`~persona_rag.encoders.TextEncoder`, or a model name/path to load (shared
            process-wide); the default is all-MiniLM-L6-v2, offline.
        normalize: with a model name, whether embeddings are L2-normalised (``None``: model default).

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        retriever = DenseRetriever()
        docs = get_task("LaMP-3").documents(profile)
        retriever.search("a western with a slow start", docs, k=4).ids
    """

    kind = "dense"

    def __init__(
        self, *, encoder: TextEncoder | str = DEFAULT_ENCODER, normalize: bool | None = None
    ) -> None:
        super().__init__()
        self.encoder = (
            encoder if isinstance(encoder, TextEncoder) else shared_encoder(encoder, normalize=normalize)
        )

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        return self.batch_scores([query], [documents])[0]

    def batch_scores(
        self, queries: Sequence[str], documents: Sequence[Sequence[Document]]
    ) -> list[np.ndarray]:
        queries_emb = self.encoder.encode(list(queries))
        texts = [doc.text for docs in documents for doc in docs]
        docs_emb = self.encoder.encode(texts)
        out, start, temperature = [], 0, self.encoder.temperature
        for q, docs in zip(queries_emb, documents):
            out.append((docs_emb[start : start + len(docs)] @ q).astype(np.float64) / temperature)
            start += len(docs)
        return out

    def search_store(
        self,
        query: str,
        store: ProfileSource,
        user_id: str,
        k: int = 4,
        *,
        ids: Sequence[str] | None = None,
        before: str | datetime | None = None,
    ) -> RetrievalResult:
        if store.encoder is self.encoder:
            # Chroma returns q·d; the scores of this retriever are q·d / τ wherever the search runs.
            found = store.search(user_id, self.encoder.encode([query])[0], k, ids=ids, before=before)
            temperature = self.encoder.temperature
            return RetrievalResult(tuple(replace(hit, score=hit.score / temperature) for hit in found.hits))
        return super().search_store(query, store, user_id, k, ids=ids, before=before)

    def config(self) -> dict[str, Any]:
        return {"encoder": self.encoder.name, "normalize": self.encoder.normalize}

    def apply_config(self, config: Mapping[str, Any]) -> None:
        name, normalize = config.get("encoder", self.encoder.name), config.get("normalize")
        if name != self.encoder.name or (normalize is not None and normalize != self.encoder.normalize):
            self.encoder = shared_encoder(name, normalize=normalize)

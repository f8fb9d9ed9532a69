"""One interface for every retriever: a query and a user's profile in, top-k items with scores out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol

import dspy
import numpy as np
from dspy.predict.parameter import Parameter

from persona_rag.errors import DataError, StateError
from persona_rag.tasks import Document

__all__ = ["Hit", "ProfileSource", "RetrievalResult", "Retriever", "top_k"]


@dataclass(frozen=True)
class Hit:
    """One retrieved profile item: its position in the profile, id, score and the document."""

    index: int
    id: str
    score: float
    document: Document

    @property
    def item(self) -> Mapping[str, Any]:
        """The raw profile item (what the prompt entry is built from)."""
        return self.document.item


@dataclass(frozen=True)
class RetrievalResult:
    """The ranked hits of one query, best first."""

    hits: tuple[Hit, ...]

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def items(self) -> list[Mapping[str, Any]]:
        return [hit.item for hit in self.hits]

    @property
    def ids(self) -> list[str]:
        return [hit.id for hit in self.hits]

    @property
    def indices(self) -> list[int]:
        return [hit.index for hit in self.hits]

    @property
    def scores(self) -> list[float]:
        return [hit.score for hit in self.hits]


class ProfileSource(Protocol):
    """What a retriever reads from a store of users' profiles (:class:`~persona_rag.store.ProfileStore`
    is one). Defined here, so the store depends on the retrievers and never the other way round.

    Attributes:
        encoder: the encoder that embedded the stored items (a dense retriever with the same
            encoder searches inside the store).
    """

    encoder: Any

    def documents(
        self, user_id: str, *, ids: Sequence[str] | None = None, before: str | datetime | None = None
    ) -> list[Document]:
        """A user's stored profile, or the part of it (``ids``, ``before``) one question may see."""
        ...

    def search(
        self,
        user_id: str,
        query_embedding: np.ndarray,
        k: int = 4,
        *,
        ids: Sequence[str] | None = None,
        before: str | datetime | None = None,
    ) -> RetrievalResult:
        """Top-``k`` of a user's visible items by inner product with ``query_embedding``."""
        ...


def top_k(scores: np.ndarray, documents: Sequence[Document], k: int) -> RetrievalResult:
    """The ``k`` best documents by score; ties keep profile order (a stable sort)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[: max(k, 0)]
    return RetrievalResult(
        tuple(Hit(documents[i].index, documents[i].id, float(scores[i]), documents[i]) for i in order)
    )


class Retriever(dspy.Module, Parameter):
    """Base class: a DSPy module that ranks a user's profile documents for a query.

    Subclasses implement :meth:`scores` (one score per document; higher is better) and, where they
    can do better than a loop, :meth:`batch_scores`. Being a ``dspy`` ``Parameter`` makes the
    retriever's configuration (and, for trained retrievers, a reference to their weights) part of
    ``program.save()``; :meth:`config` lists what is saved.
    """

    kind: ClassVar[str] = "base"

    def scores(self, query: str, documents: Sequence[Document]) -> np.ndarray:
        raise NotImplementedError

    def batch_scores(
        self, queries: Sequence[str], documents: Sequence[Sequence[Document]]
    ) -> list[np.ndarray]:
        return [self.scores(query, docs) for query, docs in zip(queries, documents)]

    def search(self, query: str, documents: Sequence[Document], k: int = 4) -> RetrievalResult:
        """The top ``k`` of ``documents`` for ``query``."""
        if not documents:
            return RetrievalResult(())
        return top_k(self.scores(query, documents), documents, k)

    def batch_search(
        self, queries: Sequence[str], documents: Sequence[Sequence[Document]], k: int = 4
    ) -> list[RetrievalResult]:
        """:meth:`search` for many (query, profile) pairs, sharing work where the retriever can."""
        if len(queries) != len(documents):
            raise DataError(f"{len(queries)} queries for {len(documents)} profiles")
        results: list[RetrievalResult | None] = [None] * len(queries)
        todo = [i for i, docs in enumerate(documents) if docs]
        for i in range(len(queries)):
            if not documents[i]:
                results[i] = RetrievalResult(())
        scores = self.batch_scores([queries[i] for i in todo], [documents[i] for i in todo])
        for i, row in zip(todo, scores):
            results[i] = top_k(row, documents[i], k)
        return results  # type: ignore[return-value]

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
        """Search a user's profile held in a :class:`~persona_rag.store.ProfileStore`.

        ``ids`` (a question's own profile item ids) and ``before`` (a date) limit the search to the
        items that question may see; see :meth:`~persona_rag.store.ProfileStore.documents`.
        """
        return self.search(query, store.documents(user_id, ids=ids, before=before), k)

    def forward(self, query: str, documents: Sequence[Document], k: int = 4) -> RetrievalResult:
        return self.search(query, documents, k)

    # ---------------------------------------------------------------- dspy Parameter protocol
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this retriever (JSON-serialisable)."""
        return {}

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Set the state read back by :meth:`load_state`; the default has nothing to set."""

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {"retriever": self.kind, **self.config()}

    def load_state(self, state: Mapping[str, Any], **kwargs: Any) -> Retriever:
        saved = state.get("retriever")
        if saved != self.kind:
            raise StateError(
                f"saved state is for a {saved!r} retriever, but this program holds a {self.kind!r} one; "
                f"build the program with the same retriever type before load()"
            )
        self.apply_config({key: value for key, value in state.items() if key != "retriever"})
        return self

    def reset(self) -> None:
        """Called by ``reset_copy()``; a retriever's configuration and weights are kept."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.config().items())
        return f"{type(self).__name__}({args})"

"""ProfileStore: users' profiles in Chroma, embedded by default, a Chroma server by URL.

Each user gets a collection of their own, so a query for user A cannot return user B's items
(isolation by construction, not by a metadata filter). Embeddings always come from our encoder:
Chroma's default embedder downloads a model and fails offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from persona_rag.encoders import DEFAULT_ENCODER, TextEncoder, shared_encoder
from persona_rag.errors import DataError, StoreError
from persona_rag.retrievers.base import Hit, RetrievalResult
from persona_rag.tasks import Document, TaskSpec, get_task

__all__ = ["ProfileStore"]

logger = logging.getLogger(__name__)

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored_item(meta: Mapping[str, Any]) -> Any:
    try:
        return json.loads(meta["item"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None  # a corrupt record is rewritten


class ProfileStore:
    """Per-user profile collections in Chroma.

    Args:
        path: directory of the embedded store (``chromadb.PersistentClient``).
        url: a Chroma server, e.g. ``http://127.0.0.1:8000`` (``chroma run``); wins over ``path``.
        task: the task whose fields build each item's text.
        encoder: encoder (or model name) for item embeddings; a :class:`DenseRetriever` with the
            same encoder searches inside Chroma.
        namespace: prefix of collection names, to keep several stores in one Chroma.

    Example:
        >>> store = ProfileStore("./profiles", task="LaMP-3")
        >>> store.add("user-1", profile)            # idempotent upsert by item id
        >>> store.documents("user-1")[:2]
    """

    def __init__(
        self,
        path: str | Path | None = "persona_rag_store",
        *,
        url: str | None = None,
        task: str | TaskSpec,
        encoder: TextEncoder | str = DEFAULT_ENCODER,
        namespace: str = "persona-rag",
    ) -> None:
        import chromadb

        self.task = get_task(task)
        self.encoder = encoder if isinstance(encoder, TextEncoder) else shared_encoder(encoder)
        self.namespace = namespace
        self.location = url or str(path)
        if url:
            parsed = urlparse(url)
            if not parsed.hostname:
                raise ValueError(f"not a Chroma server URL: {url!r} (expected http://host:port)")
            self.client = chromadb.HttpClient(
                host=parsed.hostname, port=parsed.port or 8000, ssl=parsed.scheme == "https"
            )
        else:
            if path is None:
                raise ValueError("give path= for the embedded store or url= for a Chroma server")
            self.client = chromadb.PersistentClient(path=str(path))

    # ------------------------------------------------------------------------- collections
    def _name(self, user_id: str) -> str:
        return f"{self.namespace}-{hashlib.sha256(str(user_id).encode()).hexdigest()[:32]}"

    def _collection(self, user_id: str, *, create: bool) -> Any:
        name = self._name(user_id)
        if create:
            return self.client.get_or_create_collection(
                name,
                metadata={"user_id": str(user_id), "task": self.task.name, "encoder": self.encoder.name},
                configuration={"hnsw": {"space": "ip"}},
                embedding_function=None,
            )
        try:
            return self.client.get_collection(name, embedding_function=None)
        except Exception:  # chromadb raises NotFoundError or ValueError depending on client kind
            return None

    def users(self) -> list[str]:
        """Ids of the users that have a profile in this store."""
        prefix = f"{self.namespace}-"
        return sorted(
            (c.metadata or {}).get("user_id", c.name)
            for c in self.client.list_collections()
            if c.name.startswith(prefix)
        )

    def count(self, user_id: str) -> int:
        collection = self._collection(user_id, create=False)
        return 0 if collection is None else collection.count()

    # ------------------------------------------------------------------------------ writing
    def add(self, user_id: str, profile: Sequence[Mapping[str, Any]]) -> int:
        """Upsert a user's items by id; returns how many were new or changed.

        Unchanged items are neither re-embedded nor rewritten, so adding a user's new items costs
        only those items; an item whose text is the same but whose other fields changed (a LaMP-3
        score, a LaMP-2 tag) is rewritten without re-embedding. All items are checked (fields,
        duplicate ids, JSON-serialisable) and embedded before the first write, so bad input leaves
        the store as it was (a new user's collection is created only at the first write).
        """
        documents = self.task.documents(profile, where=f"user {user_id!r}")
        if not documents:
            return 0
        records = {}
        for doc in documents:
            try:
                records[doc.id] = json.dumps(dict(doc.item))
            except (TypeError, ValueError) as error:
                message = f"user {user_id!r}: profile item {doc.id!r} is not JSON-serialisable: {error}"
                raise DataError(message, item_id=doc.id) from None
        collection = self._collection(user_id, create=False)
        known: dict[str, Mapping[str, Any]] = {}
        next_position = 0
        if collection is not None:
            existing = collection.get(ids=[doc.id for doc in documents], include=["metadatas"])
            known = {i: m for i, m in zip(existing["ids"], existing["metadatas"])}
            next_position = collection.count()
        rows: list[tuple[Document, int]] = []  # new or changed text: embed and write
        retagged: list[tuple[Document, int]] = []  # same text, other fields changed: rewrite metadata
        for doc in documents:
            meta = known.get(doc.id)
            if meta is None:
                rows.append((doc, next_position))
                next_position += 1
            elif meta.get("text_sha") != _digest(doc.text):
                rows.append((doc, int(meta["position"])))
            elif _stored_item(meta) != json.loads(records[doc.id]):
                retagged.append((doc, int(meta["position"])))
        if not rows and not retagged:
            return 0
        embeddings = self.encoder.encode([doc.text for doc, _ in rows]) if rows else None

        def metadata(doc: Document, position: int) -> dict[str, Any]:
            return {"position": position, "text_sha": _digest(doc.text), "item": records[doc.id]}

        if collection is None:
            collection = self._collection(user_id, create=True)
        batch = max(1, self.client.get_max_batch_size())
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            collection.upsert(
                ids=[doc.id for doc, _ in chunk],
                embeddings=embeddings[start : start + batch].tolist(),
                documents=[doc.text for doc, _ in chunk],
                metadatas=[metadata(doc, position) for doc, position in chunk],
            )
        for start in range(0, len(retagged), batch):
            chunk = retagged[start : start + batch]
            collection.update(
                ids=[doc.id for doc, _ in chunk],
                metadatas=[metadata(doc, position) for doc, position in chunk],
            )
        return len(rows) + len(retagged)

    def add_many(
        self, profiles: Iterable[tuple[str, Sequence[Mapping[str, Any]]]], *, progress: bool = True
    ) -> int:
        """Upsert many ``(user_id, profile)`` pairs with a progress bar; returns items written."""
        from tqdm.auto import tqdm

        pairs = list(profiles)
        return sum(
            self.add(user, profile) for user, profile in tqdm(pairs, desc="indexing", disable=not progress)
        )

    def delete_user(self, user_id: str) -> bool:
        """Remove all of a user's data; ``False`` when the store had none."""
        if self._collection(user_id, create=False) is None:
            return False
        self.client.delete_collection(self._name(user_id))
        return True

    # ------------------------------------------------------------------------------ reading
    def documents(self, user_id: str) -> list[Document]:
        """A user's profile in insertion order (empty for an unknown user)."""
        collection = self._collection(user_id, create=False)
        if collection is None:
            return []
        got = collection.get(include=["metadatas", "documents"])
        rows = sorted(
            zip(got["metadatas"], got["documents"], got["ids"]), key=lambda r: int(r[0]["position"])
        )
        documents = []
        for meta, text, item_id in rows:
            try:
                item = json.loads(meta["item"])
            except (KeyError, json.JSONDecodeError) as error:
                raise StoreError(
                    f"{self.location}: user {user_id!r} item {item_id!r} has a corrupt record"
                ) from error
            documents.append(
                Document(index=int(meta["position"]), id=item_id, text=text, date=item.get("date"), item=item)
            )
        return documents

    def search(self, user_id: str, query_embedding: np.ndarray, k: int = 4) -> RetrievalResult:
        """Top-``k`` of a user's items by inner product with ``query_embedding``."""
        collection = self._collection(user_id, create=False)
        if collection is None or k <= 0:
            return RetrievalResult(())
        n = min(k, collection.count())
        if n == 0:
            return RetrievalResult(())
        got = collection.query(
            query_embeddings=[np.asarray(query_embedding, dtype=np.float32).tolist()],
            n_results=n,
            include=["metadatas", "documents", "distances"],
        )
        hits = []
        for item_id, meta, text, distance in zip(
            got["ids"][0], got["metadatas"][0], got["documents"][0], got["distances"][0]
        ):
            item = json.loads(meta["item"])
            doc = Document(
                index=int(meta["position"]), id=item_id, text=text, date=item.get("date"), item=item
            )
            hits.append(
                Hit(doc.index, item_id, 1.0 - float(distance), doc)
            )  # Chroma's ip distance is 1 - dot
        return RetrievalResult(tuple(hits))

    def __deepcopy__(self, memo: dict[int, Any]) -> ProfileStore:
        """Programs are deep-copied by optimizers; they share the store (a client holds locks)."""
        return self

    def __repr__(self) -> str:
        return f"ProfileStore({self.location!r}, task={self.task.name!r}, encoder={self.encoder.name!r})"

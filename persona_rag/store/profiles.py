"""ProfileStore: users' profiles in Chroma, one collection per user.

Each user gets a collection of their own, so a query for user A cannot return user B's items
(isolation by construction, not by a metadata filter). Embeddings always come from our encoder:
Chroma's default embedder downloads a model and fails offline. Every stored vector records the
fingerprint of the encoder that made it, so a user's items are never searched with a query from
another encoder.

A stored profile is a user's whole history, but a LaMP question may only see its own profile:
reads take ``ids`` (the question's profile item ids) and/or ``before`` (a date), applied inside
Chroma. Evaluating through the store then sees exactly what it sees with the profile passed in,
never a later question's item (whose rating or tag is an earlier question's gold answer).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from persona_rag.dates import timestamp
from persona_rag.encoders import DEFAULT_ENCODER, TextEncoder, shared_encoder
from persona_rag.errors import ConfigError, DataError, StoreError
from persona_rag.retrievers.base import Hit, RetrievalResult
from persona_rag.store.chroma import chroma_errors, connect
from persona_rag.store.fingerprint import encoder_fingerprint
from persona_rag.tasks import Document, TaskSpec, get_task

__all__ = ["NAMESPACE_RULE", "ProfileStore"]

logger = logging.getLogger(__name__)

# Collection names are ``{namespace}-{32 hex digits}``; Chroma allows 3-512 characters of
# [a-zA-Z0-9._-] that start and end with a letter or digit and contain no "..".
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,478}")
NAMESPACE_RULE = (
    "a namespace is 1-479 characters of letters, digits, '.', '_' or '-', starting with a letter "
    "or digit, without '..'"
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stored_item(meta: Mapping[str, Any]) -> Any:
    try:
        return json.loads(meta["item"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None  # a corrupt record is rewritten


def _order_key(doc: Document) -> tuple[bool, float, str]:
    """Date order (undated items first, as :class:`RecencyRetriever` counts them oldest), then id:
    a function of the data alone, so concurrent writers cannot make the order ambiguous."""
    stamp = timestamp(doc.date)
    return (stamp is not None, stamp if stamp is not None else 0.0, doc.id)


def _before_stamp(before: str | datetime) -> float:
    stamp = before.timestamp() if isinstance(before, datetime) else timestamp(before)
    if stamp is None:
        raise ConfigError(f"before={before!r} is not a date (expected e.g. 2001-03-09T12:00:00Z)")
    return stamp


class ProfileStore:
    """Per-user profile collections in Chroma.

    Args:
        path: directory of the embedded store (``chromadb.PersistentClient``).
        url: a Chroma server, e.g. ``http://127.0.0.1:8000`` (``chroma run``); wins over ``path``.
            When ``$PERSONA_RAG_CHROMA_TOKEN`` is set it is sent as ``Authorization: Bearer ...``
            (``chroma run`` itself checks no token: put a proxy that does in front, see README).
        task: the task whose fields build each item's text.
        encoder: encoder (or model name) for item embeddings; a :class:`DenseRetriever` with the
            same encoder searches inside Chroma.
        namespace: prefix of collection names, to keep several stores in one Chroma
            (see :data:`NAMESPACE_RULE`).

    Raises:
        StoreError: the namespace is invalid, or the server cannot be reached or refuses the token.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        store = ProfileStore("./profiles", task="LaMP-3")
        store.add("user-1", profile)            # idempotent upsert by item id
        store.documents("user-1", before="2001-03-09")[:2]
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
        if not _NAMESPACE.fullmatch(namespace) or ".." in namespace:
            raise StoreError(f"invalid store namespace {namespace!r}: {NAMESPACE_RULE}")
        self.task = get_task(task)
        self.encoder = encoder if isinstance(encoder, TextEncoder) else shared_encoder(encoder)
        self.fingerprint = encoder_fingerprint(self.encoder)
        self.namespace = namespace
        self.location = url or str(path)
        self.client = connect(path, url, self.location)

    def _chroma(self, action: str) -> AbstractContextManager[None]:
        """Chroma failures while doing ``action`` on this store, as errors that name it."""
        return chroma_errors(self.location, action)

    # ------------------------------------------------------------------------- collections
    def _name(self, user_id: str) -> str:
        return f"{self.namespace}-{hashlib.sha256(str(user_id).encode()).hexdigest()[:32]}"

    def _metadata(self, user_id: str) -> dict[str, Any]:
        return {
            "user_id": str(user_id),
            "task": self.task.name,
            "encoder": self.encoder.name,
            "encoder_fingerprint": self.fingerprint,
        }

    def _collection(self, user_id: str, *, create: bool) -> Any:
        """The user's collection; ``None`` only when Chroma says it does not exist."""
        from chromadb.errors import NotFoundError

        name = self._name(user_id)
        with self._chroma(f"opening user {user_id!r}"):
            if create:
                return self.client.get_or_create_collection(
                    name,
                    metadata=self._metadata(user_id),
                    configuration={"hnsw": {"space": "ip"}},
                    embedding_function=None,
                )
            try:
                return self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None

    def users(self) -> list[str]:
        """Ids of the users that have a profile in this store (this namespace exactly)."""
        own = re.compile(re.escape(self.namespace) + r"-[0-9a-f]{32}")
        with self._chroma("listing users"):
            collections = self.client.list_collections()
        return sorted((c.metadata or {}).get("user_id", c.name) for c in collections if own.fullmatch(c.name))

    def count(self, user_id: str) -> int:
        collection = self._collection(user_id, create=False)
        if collection is None:
            return 0
        with self._chroma(f"counting user {user_id!r}"):
            return collection.count()

    # ------------------------------------------------------------------------------ writing
    def add(self, user_id: str, profile: Sequence[Mapping[str, Any]]) -> int:
        """Upsert a user's items by id; returns how many were new or changed.

        Unchanged items are neither re-embedded nor rewritten, so adding a user's new items costs
        only those items; an item whose text is the same but whose other fields changed (a LaMP-3
        score, a LaMP-2 tag) is rewritten without re-embedding. Items of this user embedded by
        another encoder (see :func:`encoder_fingerprint`) are re-embedded too, passed or not, so
        a user's vectors always come from one encoder. All items are checked (fields, duplicate
        ids, JSON-serialisable) and embedded before the first write, so bad input leaves the
        store as it was (a new user's collection is created only at the first write).
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
        return self._write(user_id, documents, records)

    def reembed(self, user_id: str) -> int:
        """Re-embed a user's items stored by another encoder; returns how many were rewritten."""
        return self._write(user_id, [], {})

    def _write(self, user_id: str, documents: Sequence[Document], records: Mapping[str, str]) -> int:
        collection = self._collection(user_id, create=False)
        if collection is None and not documents:
            return 0
        known: dict[str, Mapping[str, Any]] = {}
        embed: list[tuple[Document, str]] = []  # new text, or another encoder's vector
        retagged: list[tuple[Document, str]] = []  # same text, other fields changed
        if collection is not None:
            with self._chroma(f"reading user {user_id!r}"):
                if documents:
                    existing = collection.get(ids=[doc.id for doc in documents], include=["metadatas"])
                    known = dict(zip(existing["ids"], existing["metadatas"]))
                foreign = collection.get(
                    where={"encoder": {"$ne": self.fingerprint}}, include=["metadatas", "documents"]
                )
            passed = {doc.id for doc in documents}
            for item_id, meta, text in zip(foreign["ids"], foreign["metadatas"], foreign["documents"]):
                if item_id not in passed:  # an item this call does not rewrite: keep its record
                    embed.append((self._document(user_id, item_id, text, meta), meta["item"]))
        for doc in documents:
            meta = known.get(doc.id)
            stale = meta is not None and meta.get("encoder") != self.fingerprint
            if meta is None or stale or meta.get("text_sha") != _digest(doc.text):
                embed.append((doc, records[doc.id]))
            elif _stored_item(meta) != json.loads(records[doc.id]):
                retagged.append((doc, records[doc.id]))
        if not embed and not retagged:
            return 0
        embeddings = self.encoder.encode([doc.text for doc, _ in embed]) if embed else None

        def metadata(doc: Document, record: str) -> dict[str, Any]:
            # None deletes a key: an item that lost its date leaves the ``before`` filter's range.
            return {
                "text_sha": _digest(doc.text),
                "encoder": self.fingerprint,
                "item": record,
                "ts": timestamp(doc.date),
                "position": None,  # the insertion counter of stores written before 2026-11
            }

        with self._chroma(f"writing user {user_id!r}"):
            if collection is None:
                collection = self._collection(user_id, create=True)
            batch = max(1, self.client.get_max_batch_size())
            for start in range(0, len(embed), batch):
                chunk = embed[start : start + batch]
                collection.upsert(
                    ids=[doc.id for doc, _ in chunk],
                    embeddings=embeddings[start : start + batch].tolist(),
                    documents=[doc.text for doc, _ in chunk],
                    metadatas=[metadata(doc, record) for doc, record in chunk],
                )
            for start in range(0, len(retagged), batch):
                chunk = retagged[start : start + batch]
                collection.update(
                    ids=[doc.id for doc, _ in chunk],
                    metadatas=[metadata(doc, record) for doc, record in chunk],
                )
            if (collection.metadata or {}).get("encoder_fingerprint") != self.fingerprint:
                collection.modify(metadata=self._metadata(user_id))
        return len(embed) + len(retagged)

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
        with self._chroma(f"deleting user {user_id!r}"):
            self.client.delete_collection(self._name(user_id))
        return True

    # ------------------------------------------------------------------------------ reading
    def _document(self, user_id: str, item_id: str, text: str, meta: Mapping[str, Any]) -> Document:
        item = _stored_item(meta)
        if not isinstance(item, dict):
            raise StoreError(f"{self.location}: user {user_id!r} item {item_id!r} has a corrupt record")
        return Document(index=0, id=item_id, text=text, date=item.get("date"), item=item)

    def _read(
        self, user_id: str, ids: Sequence[str] | None, before: str | datetime | None
    ) -> tuple[Any, list[Document], list[str | None]]:
        """The collection, the visible documents in order, and the encoder fingerprint of each."""
        collection = self._collection(user_id, create=False)
        wanted = None if ids is None else list(dict.fromkeys(str(i) for i in ids))
        if collection is None or wanted == []:
            return collection, [], []
        where = None if before is None else {"ts": {"$lt": _before_stamp(before)}}
        with self._chroma(f"reading user {user_id!r}"):
            got = collection.get(ids=wanted, where=where, include=["metadatas", "documents"])
        rows = {
            item_id: (self._document(user_id, item_id, text, meta), meta.get("encoder"))
            for item_id, meta, text in zip(got["ids"], got["metadatas"], got["documents"])
        }
        if wanted is None:
            order = sorted(rows, key=lambda item_id: _order_key(rows[item_id][0]))
        else:
            order = [item_id for item_id in wanted if item_id in rows]
            if before is None and len(order) < len(wanted):
                logger.warning(
                    "%s: user %r: %d of %d requested profile items are not in the store (index them first)",
                    self.location, user_id, len(wanted) - len(order), len(wanted),
                )  # fmt: skip
        documents = [
            Document(index=i, id=d.id, text=d.text, date=d.date, item=d.item)
            for i, d in enumerate(rows[item_id][0] for item_id in order)
        ]
        return collection, documents, [rows[item_id][1] for item_id in order]

    def documents(
        self, user_id: str, *, ids: Sequence[str] | None = None, before: str | datetime | None = None
    ) -> list[Document]:
        """A user's stored profile, or the part of it one question may see.

        Args:
            user_id: the user (an unknown user has an empty profile).
            ids: only these items (a question's own profile), in this order; ``[]`` is none.
            before: only items dated strictly before this date (undated items are left out).

        Returns:
            Documents whose ``index`` is their position in what is returned: the order of ``ids``
            when given, else date order (undated first) with ties broken by item id.
        """
        return self._read(user_id, ids, before)[1]

    def search(
        self,
        user_id: str,
        query_embedding: np.ndarray,
        k: int = 4,
        *,
        ids: Sequence[str] | None = None,
        before: str | datetime | None = None,
    ) -> RetrievalResult:
        """Top-``k`` of a user's visible items (``ids``/``before`` as in :meth:`documents`) by
        inner product with ``query_embedding``, searched inside Chroma.

        Raises:
            StoreError: some of these items were embedded by another encoder than this store's.
        """
        if k <= 0:
            return RetrievalResult(())
        collection, documents, encoders = self._read(user_id, ids, before)
        if not documents:
            return RetrievalResult(())
        if any(fingerprint != self.fingerprint for fingerprint in encoders):
            metadata = collection.metadata or {}
            built = (
                repr(metadata["encoder"]) if "encoder_fingerprint" in metadata else "an unrecorded encoder"
            )
            raise StoreError(
                f"{self.location}: user {user_id!r} was embedded with {built}, not with this "
                f"store's encoder {self.encoder.name!r} (fingerprint {self.fingerprint}); re-embed it "
                f"(ProfileStore.reembed, or `persona-rag index` with --encoder {self.encoder.name}) "
                f"or open the store with the encoder it was built with"
            )
        with self._chroma(f"searching user {user_id!r}"):
            got = collection.query(
                query_embeddings=[np.asarray(query_embedding, dtype=np.float32).tolist()],
                n_results=min(k, len(documents)),
                ids=[doc.id for doc in documents],
                include=["distances"],
            )
        by_id = {doc.id: doc for doc in documents}
        hits = [
            Hit(by_id[item_id].index, item_id, 1.0 - float(distance), by_id[item_id])  # ip: 1 - dot
            for item_id, distance in zip(got["ids"][0], got["distances"][0])
        ]
        hits.sort(key=lambda hit: (-hit.score, hit.index))  # ties keep profile order, as top_k does
        return RetrievalResult(tuple(hits))

    def __deepcopy__(self, memo: dict[int, Any]) -> ProfileStore:
        """Programs are deep-copied by optimizers; they share the store (a client holds locks)."""
        return self

    def __repr__(self) -> str:
        return f"ProfileStore({self.location!r}, task={self.task.name!r}, encoder={self.encoder.name!r})"

"""A small thread-safe LRU map, for per-profile indexes and per-text embeddings."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["LRUCache", "text_key"]

K = TypeVar("K")
V = TypeVar("V")


def text_key(texts: Iterable[str]) -> str:
    """A stable digest of a sequence of texts (order matters)."""
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


class LRUCache(Generic[K, V]):
    """Least-recently-used map with a size bound; ``maxsize=0`` disables caching."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: K, value: V) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = create()
            self.put(key, value)
        return value

    def __deepcopy__(self, memo: dict) -> LRUCache[K, V]:
        """A copy starts empty: cached values belong to the object they were computed for."""
        return LRUCache(self.maxsize)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

"""The LRU cache and the text digest used as cache keys."""

from __future__ import annotations

import threading

from persona_rag.cache import LRUCache, text_key


def test_eviction_drops_the_least_recently_used():
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # evicts "b"
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_put_existing_key_refreshes_it():
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)  # update: "a" becomes the most recent
    cache.put("c", 3)  # evicts "b"
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (10, None, 3)


def test_maxsize_zero_disables_caching():
    cache: LRUCache[str, int] = LRUCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
    calls = []
    assert cache.get_or_create("a", lambda: calls.append(1) or 5) == 5
    assert cache.get_or_create("a", lambda: calls.append(1) or 5) == 5
    assert len(calls) == 2


def test_get_or_create_builds_once():
    cache: LRUCache[str, object] = LRUCache(4)
    calls = []

    def build():
        calls.append(1)
        return object()

    first = cache.get_or_create("k", build)
    assert cache.get_or_create("k", build) is first
    assert len(calls) == 1


def test_clear():
    cache: LRUCache[int, int] = LRUCache(3)
    for i in range(3):
        cache.put(i, i)
    cache.clear()
    assert len(cache) == 0 and cache.get(0) is None


def test_concurrent_puts_respect_the_bound():
    cache: LRUCache[int, int] = LRUCache(50)

    def work(offset):
        for i in range(500):
            cache.put(offset + i, i)
            cache.get(offset + i // 2)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50


def test_text_key_is_stable_ordered_and_unambiguous():
    assert text_key(["a", "b"]) == text_key(iter(["a", "b"]))
    assert text_key(["a", "b"]) != text_key(["b", "a"])
    assert text_key(["ab", "c"]) != text_key(["a", "bc"])  # texts are separated
    assert text_key([]) != text_key([""])
    assert len(text_key(["x"])) == 32 and int(text_key(["x"]), 16) >= 0

"""ProfileStore over Chroma: embedded (PersistentClient) and a real ``chroma run`` server.

Every behaviour test runs against both backends; the server ones are marked ``server`` and start
one Chroma server per module on a free loopback port (``pytest -m "not server"`` skips them).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from persona_rag.encoders import TextEncoder
from persona_rag.errors import DataError
from persona_rag.retrievers import DenseRetriever
from persona_rag.store import ProfileStore
from persona_rag.tasks import get_task

TASK = get_task("LaMP-3")
CHROMA = Path(sys.executable).parent / "chroma"
SERVER_START_TIMEOUT = 60.0


def item(item_id: str, text: str, score: int | str, day: int = 1) -> dict[str, Any]:
    return {"id": item_id, "date": f"2001-03-{day:02d}T12:00:00Z", "text": text, "score": str(score)}


# Small hand-written LaMP-3 profiles (MovieLens-style item texts).
ALICE = [
    item("a1", "Toy Story (1995), genres: Adventure, Animation, Children, Comedy, Fantasy", 5, 1),
    item("a2", "Jumanji (1995), genres: Adventure, Children, Fantasy", 3, 2),
    item("a3", "Grumpier Old Men (1995), genres: Comedy, Romance", 2, 3),
    item("a4", "Father of the Bride Part II (1995), genres: Comedy", 3, 4),
    item("a5", "Sabrina (1995), genres: Comedy, Romance", 4, 5),
    item("a6", "Babe (1995), genres: Children, Drama", 4, 6),
]
BOB = [
    item("b1", "Alien (1979), genres: Horror, Sci-Fi", 5, 1),
    item("b2", "Aliens (1986), genres: Action, Adventure, Horror, Sci-Fi", 4, 2),
    item("b3", "Star Wars: Episode IV - A New Hope (1977), genres: Action, Adventure, Sci-Fi", 5, 3),
    item("b4", "The Terminator (1984), genres: Action, Sci-Fi, Thriller", 4, 4),
]
SCI_FI_QUERY = "Alien (1979), genres: Horror, Sci-Fi"  # one of Bob's items, word for word


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def encoder() -> TextEncoder:
    return TextEncoder()  # `embedded_texts` records what the store asks of it, cache or not


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _heartbeat(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"{url}/api/v2/heartbeat", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` on a free loopback port; yields its URL and stops it afterwards."""
    if not CHROMA.exists():
        pytest.skip(f"no chroma binary at {CHROMA}")
    root = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(root / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _heartbeat(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                state = f"exited with {process.returncode}" if process.poll() is not None else "timed out"
                pytest.fail(f"chroma server on {url} {state}; log:\n{tail}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


StoreFactory = Callable[..., ProfileStore]


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, encoder: TextEncoder
) -> Iterator[StoreFactory]:
    """``make_store(namespace=...)``: a ProfileStore on this test's backend; the same arguments
    reopen the same data with a new client. Each test gets its own path (embedded) or its own
    namespace (server), so tests never see each other's users."""
    if request.param == "server":
        location: dict[str, Any] = {"url": request.getfixturevalue("chroma_server")}
    else:
        location = {"path": tmp_path / "chroma"}
    prefix = f"t{uuid.uuid4().hex[:12]}"
    stores: list[ProfileStore] = []

    def factory(namespace: str = "main") -> ProfileStore:
        store = ProfileStore(**location, task=TASK, encoder=encoder, namespace=f"{prefix}-{namespace}")
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.client.close()  # idempotent; a test may have closed it already
    if request.param == "server":  # the server outlives the test: drop what it wrote
        import chromadb

        client = chromadb.HttpClient(host="127.0.0.1", port=int(location["url"].rsplit(":", 1)[1]))
        for collection in client.list_collections():
            if collection.name.startswith(prefix):
                client.delete_collection(collection.name)
        client.close()


@pytest.fixture
def store(make_store: StoreFactory) -> ProfileStore:
    return make_store()


@pytest.fixture
def embedded_texts(monkeypatch: pytest.MonkeyPatch, encoder: TextEncoder) -> list[str]:
    """Every text the store asks the encoder to embed, in order."""
    texts: list[str] = []
    original = encoder.encode

    def recording(batch: Sequence[str], **kwargs: Any) -> np.ndarray:
        texts.extend(batch)
        return original(batch, **kwargs)

    monkeypatch.setattr(encoder, "encode", recording)
    return texts


def snapshot(store: ProfileStore) -> dict[str, list[tuple[int, str, str, dict[str, Any]]]]:
    """Everything a store holds, per user."""
    return {
        user: [(doc.index, doc.id, doc.text, dict(doc.item)) for doc in store.documents(user)]
        for user in store.users()
    }


def doc_text(entry: Mapping[str, Any]) -> str:
    return f"{entry['text']} date: {entry['date']}"


# --------------------------------------------------------------------------------------- tests
def test_isolation_between_users(store: ProfileStore, encoder: TextEncoder) -> None:
    store.add("alice", ALICE)
    store.add("bob", BOB)
    query = encoder.encode([SCI_FI_QUERY])[0]

    bob_hits = store.search("bob", query, k=2)
    alice_hits = store.search("alice", query, k=len(ALICE) + len(BOB))
    assert bob_hits.ids[0] == "b1"
    assert max(alice_hits.scores) < bob_hits.scores[0]  # Bob's items match better ...
    assert sorted(alice_hits.ids) == sorted(entry["id"] for entry in ALICE)  # ... and never show up
    assert [doc.id for doc in store.documents("alice")] == [entry["id"] for entry in ALICE]
    assert [doc.id for doc in store.documents("bob")] == [entry["id"] for entry in BOB]
    assert store.count("alice") == len(ALICE) and store.count("bob") == len(BOB)


def test_same_item_id_in_two_profiles_stays_separate(store: ProfileStore, encoder: TextEncoder) -> None:
    store.add("alice", [item("shared", ALICE[0]["text"], 5)])
    store.add("bob", [item("shared", BOB[0]["text"], 1)])
    assert store.documents("alice")[0].item["text"] == ALICE[0]["text"]
    assert store.documents("bob")[0].item["score"] == "1"
    hit = store.search("alice", encoder.encode([SCI_FI_QUERY])[0], k=4).hits[0]
    assert hit.document.text == doc_text(item("shared", ALICE[0]["text"], 5))


def test_any_user_id_string_is_a_valid_user(store: ProfileStore) -> None:
    odd = ["42", "042", "user/with spaces & ünïcode", "x" * 300]
    for user in odd:
        assert store.add(user, ALICE[:1]) == 1
    assert store.users() == sorted(odd)
    assert all(store.count(user) == 1 for user in odd)


def test_upsert_is_idempotent(store: ProfileStore, embedded_texts: list[str]) -> None:
    assert store.add("alice", ALICE) == len(ALICE)
    assert len(embedded_texts) == len(ALICE)
    before = snapshot(store)

    assert store.add("alice", ALICE) == 0
    assert store.add("alice", list(reversed(ALICE))) == 0  # order of a re-sent profile is irrelevant
    assert len(embedded_texts) == len(ALICE)  # nothing re-embedded
    assert store.count("alice") == len(ALICE)
    assert snapshot(store) == before


def test_new_items_only_embed_the_new_ones(store: ProfileStore, embedded_texts: list[str]) -> None:
    assert store.add("alice", ALICE[:3]) == 3
    embedded_texts.clear()

    # New items may come first in the re-sent profile: old items keep their positions.
    assert store.add("alice", [*ALICE[4:], *ALICE[:4]]) == 3
    assert embedded_texts == [doc_text(entry) for entry in [*ALICE[4:], ALICE[3]]]
    docs = store.documents("alice")
    assert [doc.id for doc in docs] == ["a1", "a2", "a3", "a5", "a6", "a4"]
    assert [doc.index for doc in docs] == [0, 1, 2, 3, 4, 5]
    assert store.count("alice") == len(ALICE)


def test_changed_text_is_re_embedded_in_place(
    store: ProfileStore, encoder: TextEncoder, embedded_texts: list[str]
) -> None:
    store.add("bob", BOB)
    embedded_texts.clear()
    changed = item("b2", "Galaxy Quest (1999), genres: Adventure, Comedy, Sci-Fi", 2, 2)

    assert store.add("bob", [BOB[0], changed, *BOB[2:]]) == 1
    assert embedded_texts == [doc_text(changed)]
    docs = store.documents("bob")
    assert store.count("bob") == len(BOB)
    assert (docs[1].index, docs[1].id, docs[1].text) == (1, "b2", doc_text(changed))
    assert dict(docs[1].item) == changed
    top = store.search("bob", encoder.encode([doc_text(changed)])[0], k=1).hits[0]
    assert top.id == "b2"
    assert top.score == pytest.approx(1.0, abs=1e-4)  # the stored vector is the new text's


def test_changed_fields_other_than_text_are_rewritten_without_embedding(
    store: ProfileStore, embedded_texts: list[str]
) -> None:
    store.add("alice", ALICE)
    embedded_texts.clear()
    rescored = {**ALICE[2], "score": "5"}  # same text (and date), corrected rating

    assert store.add("alice", [*ALICE[:2], rescored, *ALICE[3:]]) == 1
    assert embedded_texts == []
    docs = store.documents("alice")
    assert docs[2].item == rescored and docs[2].index == 2
    assert store.add("alice", [*ALICE[:2], rescored, *ALICE[3:]]) == 0


def test_delete_user(store: ProfileStore, encoder: TextEncoder) -> None:
    store.add("alice", ALICE)
    store.add("bob", BOB)
    assert store.delete_user("alice") is True
    assert store.users() == ["bob"]
    assert store.count("alice") == 0
    assert store.documents("alice") == []
    assert len(store.search("alice", encoder.encode([SCI_FI_QUERY])[0], k=4)) == 0
    assert store.delete_user("alice") is False
    assert store.delete_user("nobody") is False
    assert store.count("bob") == len(BOB)  # the other user is untouched
    # A deleted user can come back, starting from position 0 again.
    assert store.add("alice", ALICE[3:]) == 3
    assert [doc.index for doc in store.documents("alice")] == [0, 1, 2]


def test_documents_keep_insertion_order_and_raw_items(store: ProfileStore) -> None:
    store.add("alice", ALICE[:2])
    store.add("alice", [ALICE[5], ALICE[2]])
    expected = [ALICE[0], ALICE[1], ALICE[5], ALICE[2]]
    docs = store.documents("alice")
    assert [doc.index for doc in docs] == [0, 1, 2, 3]
    assert [doc.id for doc in docs] == [entry["id"] for entry in expected]
    assert [dict(doc.item) for doc in docs] == expected
    assert [doc.text for doc in docs] == [doc_text(entry) for entry in expected]
    assert [doc.date for doc in docs] == [entry["date"] for entry in expected]
    assert store.documents("nobody") == []


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ([*BOB[:2], {"id": "b9", "date": "2001-03-09", "text": "Heat (1995), genres: Action"}], "score"),
        ([*BOB[:2], {"id": "b9", "date": "2001-03-09", "score": "3"}], "text"),
        ([*BOB[:2], {"date": "2001-03-09", "text": "Heat (1995)", "score": "3"}], "id"),
        ([*BOB[:2], item("b9", "Heat (1995), genres: Action", 3), item("b9", "Heat again", 2)], "id"),
        ([item("b9", "Heat (1995), genres: Action", 3), {**BOB[0], "text": "Alien, changed"}, BOB[0]], "id"),
        ([BOB[0], {**item("b9", "Heat", 3), "date": datetime(2001, 3, 9)}], None),  # not JSON
    ],
    ids=["no-score", "no-text", "no-id", "duplicate-new-id", "duplicate-old-id", "not-json"],
)
def test_bad_input_raises_and_writes_nothing(
    store: ProfileStore, embedded_texts: list[str], bad: list[dict[str, Any]], field: str | None
) -> None:
    store.add("alice", ALICE)
    store.add("bob", BOB[:3])
    before = snapshot(store)
    embedded_texts.clear()

    with pytest.raises(DataError) as error:
        store.add("bob", bad)  # an existing user
    assert error.value.field == field
    with pytest.raises(DataError):
        store.add("carol", bad)  # a new user
    assert embedded_texts == []
    assert snapshot(store) == before
    assert store.users() == ["alice", "bob"]
    assert store.count("carol") == 0


def test_search_matches_dense_retriever(store: ProfileStore, encoder: TextEncoder) -> None:
    profile = ALICE + BOB
    store.add("eve", profile)
    retriever = DenseRetriever(encoder=encoder)
    documents = TASK.documents(profile)
    queries = [SCI_FI_QUERY, "a family comedy for children", "romantic comedy", "space war", "pig on a farm"]
    for query in queries:
        for k in (1, 4, len(profile), len(profile) + 5):
            expected = retriever.search(query, documents, k=k)
            got = store.search("eve", encoder.encode([query])[0], k=k)
            assert got.ids == expected.ids, (query, k)
            assert got.indices == expected.indices
            assert got.scores == pytest.approx(expected.scores, abs=1e-4)
            assert [dict(hit.item) for hit in got.hits] == [dict(hit.item) for hit in expected.hits]
        # With the store's own encoder the retriever searches inside Chroma.
        in_chroma = retriever.search_store(query, store, "eve", k=4)
        assert in_chroma.ids == retriever.search(query, documents, k=4).ids
    assert len(store.search("eve", encoder.encode([SCI_FI_QUERY])[0], k=0)) == 0
    assert len(store.search("nobody", encoder.encode([SCI_FI_QUERY])[0], k=4)) == 0


def test_users_lists_this_namespace_only(make_store: StoreFactory) -> None:
    store = make_store("one")
    other = make_store("two")
    assert store.users() == []
    store.add("bob", BOB)
    store.add("alice", ALICE)
    store.add("nobody", [])  # an empty profile creates nothing
    other.add("zed", ALICE[:1])
    assert store.users() == ["alice", "bob"]
    assert other.users() == ["zed"]
    assert other.count("alice") == 0 and other.documents("alice") == []


def test_reopened_store_keeps_the_data(make_store: StoreFactory, encoder: TextEncoder) -> None:
    first = make_store()
    first.add("alice", ALICE)
    first.add("bob", BOB)
    before = snapshot(first)
    query = encoder.encode([SCI_FI_QUERY])[0]
    hits = first.search("bob", query, k=3)
    first.client.close()  # the embedded backend re-reads its files from disk

    again = make_store()
    assert again is not first
    assert again.users() == ["alice", "bob"]
    assert snapshot(again) == before
    reopened_hits = again.search("bob", query, k=3)
    assert reopened_hits.ids == hits.ids
    assert reopened_hits.scores == pytest.approx(hits.scores, abs=1e-5)
    assert again.add("alice", ALICE) == 0  # what was stored is recognised, not re-written
    assert again.add("alice", [*ALICE, item("a7", "Heat (1995), genres: Action, Crime, Thriller", 4, 7)]) == 1
    assert again.documents("alice")[-1].index == len(ALICE)

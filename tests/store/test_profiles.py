"""ProfileStore: per-user collections, upserts, reads as one question may see them, namespaces and
concurrent writers, against the embedded store and a Chroma server (``tests/store/conftest.py``)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from persona_rag.encoders import TextEncoder
from persona_rag.errors import DataError, StoreError
from persona_rag.retrievers import BM25Retriever, DenseRetriever, RecencyRetriever
from persona_rag.store import NAMESPACE_RULE, ProfileStore
from tests.conftest import REPO_ROOT
from tests.store.sample import ALICE, BOB, SCI_FI_QUERY, TASK, StoreFactory, item


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

    # New items may come first in the re-sent profile: the order is the items' dates, not arrival.
    assert store.add("alice", [*ALICE[4:], *ALICE[:4]]) == 3
    assert embedded_texts == [doc_text(entry) for entry in [*ALICE[4:], ALICE[3]]]
    docs = store.documents("alice")
    assert [doc.id for doc in docs] == ["a1", "a2", "a3", "a4", "a5", "a6"]
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


def test_documents_are_in_date_then_id_order_with_raw_items(store: ProfileStore) -> None:
    undated = {"id": "a0", "text": "Heat (1995), genres: Action", "score": "4"}
    same_day = item("a25", "Casino (1995), genres: Crime, Drama", 3, 2)  # a2's date: ties go by id
    store.add("alice", [ALICE[5], ALICE[1]])
    store.add("alice", [same_day, ALICE[2], undated, ALICE[0]])
    expected = [undated, ALICE[0], ALICE[1], same_day, ALICE[2], ALICE[5]]
    docs = store.documents("alice")
    assert [doc.index for doc in docs] == [0, 1, 2, 3, 4, 5]
    assert [doc.id for doc in docs] == [entry["id"] for entry in expected]
    assert [dict(doc.item) for doc in docs] == expected
    assert [doc.text for doc in docs] == [TASK.documents([entry])[0].text for entry in expected]
    assert [doc.date for doc in docs] == [entry.get("date") for entry in expected]
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
    # Indices are positions in what the store reads: its date-then-id order, or the ids given.
    scopes = {None: store.documents("eve"), tuple(e["id"] for e in profile): TASK.documents(profile)}
    queries = [SCI_FI_QUERY, "a family comedy for children", "romantic comedy", "space war", "pig on a farm"]
    for query in queries:
        for (ids, documents), k in itertools.product(scopes.items(), (1, 4, len(profile), len(profile) + 5)):
            expected = retriever.search(query, documents, k=k)
            got = store.search("eve", encoder.encode([query])[0], k=k, ids=ids)
            assert got.ids == expected.ids, (query, k)
            assert got.indices == expected.indices
            assert got.scores == pytest.approx(expected.scores, abs=1e-4)
            assert [dict(hit.item) for hit in got.hits] == [dict(hit.item) for hit in expected.hits]
        # With the store's own encoder the retriever searches inside Chroma.
        in_chroma = retriever.search_store(query, store, "eve", k=4)
        assert in_chroma.ids == retriever.search(query, TASK.documents(profile), k=4).ids
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


# ------------------------------------------------------------- what one question may see
def test_ids_and_before_limit_reads_to_one_questions_profile(
    store: ProfileStore, encoder: TextEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    undated = {"id": "a0", "text": "Heat (1995), genres: Action", "score": "4"}
    store.add("alice", [*ALICE, undated])
    question = [ALICE[2], ALICE[0], ALICE[1]]  # a question on day 4 sees a1..a3, in its own order
    ids = [entry["id"] for entry in question]

    docs = store.documents("alice", ids=ids)
    assert [doc.id for doc in docs] == ids and [doc.index for doc in docs] == [0, 1, 2]
    assert [dict(doc.item) for doc in docs] == question
    assert store.documents("alice", ids=[]) == []
    before = store.documents("alice", before="2001-03-04T12:00:00Z")  # strictly before; undated out
    assert [doc.id for doc in before] == ["a1", "a2", "a3"]
    assert [doc.id for doc in store.documents("alice", ids=ids, before="2001-03-02")] == ["a1"]
    with caplog.at_level(logging.WARNING, logger="persona_rag.store.profiles"):
        assert [doc.id for doc in store.documents("alice", ids=["a3", "gone"])] == ["a3"]
    assert "1 of 2 requested profile items are not in the store" in caplog.text
    with pytest.raises(ValueError, match="not a date"):
        store.documents("alice", before="soon")

    # a5, a later item, is the best match for its own text, but no search of this question finds it.
    query = ALICE[4]["text"]
    assert store.search("alice", encoder.encode([query])[0], k=1).ids == ["a5"]
    for scope in ({"ids": ids}, {"before": "2001-03-04T12:00:00Z"}):
        hits = store.search("alice", encoder.encode([query])[0], k=7, **scope)
        assert sorted(hits.ids) == ["a1", "a2", "a3"]
    # Every retriever searches exactly the question's profile, as if it were passed in.
    documents = TASK.documents(question)
    for retriever in (BM25Retriever(), DenseRetriever(encoder=encoder), RecencyRetriever()):
        expected = retriever.search(query, documents, k=2)
        got = retriever.search_store(query, store, "alice", k=2, ids=ids)
        assert (got.ids, got.indices) == (expected.ids, expected.indices), retriever
        assert got.scores == pytest.approx(expected.scores, abs=1e-5)


def _movielens_dev_with_later_items(root: Path, n: int) -> tuple[list[Any], dict[str, list[dict[str, Any]]]]:
    """The first ``n`` dev questions whose user also has a (later) test question, with small
    profiles (embedding cost), and each user's dev and test profile items merged: a test profile
    holds the dev question's own movie with the user's rating, the dev gold."""
    from persona_rag.data import load_lamp

    dev = load_lamp(root, "dev").examples()
    test = {ex.user_id: ex for ex in load_lamp(root, "test").examples()}
    picked, merged = [], {}
    for ex in dev:
        later = test.get(ex.user_id)
        items = {entry["id"]: entry for entry in [*ex.profile, *(later.profile if later else [])]}
        if later is None or len(items) > 50:
            continue
        picked.append(ex)
        merged[ex.user_id] = list(items.values())
        if len(picked) == n:
            break
    return picked, merged


def test_store_reads_equal_in_memory_profiles_on_movielens(
    lamp_real: Path, tmp_path: Path, encoder: TextEncoder
) -> None:
    from persona_rag.program import PersonalizedRAG

    examples, merged = _movielens_dev_with_later_items(lamp_real / "movielens_rating", 20)
    assert len(examples) == 20
    store = ProfileStore(tmp_path / "s", task=TASK, encoder=encoder)
    store.add_many(merged.items(), progress=False)
    leaked = 0
    for retriever in (BM25Retriever(), DenseRetriever(encoder=encoder), RecencyRetriever()):
        program = PersonalizedRAG(task=TASK, retriever=retriever, store=store, k=4)
        for ex in examples:
            ids = [entry["id"] for entry in ex.profile]
            expected = program.retrieve(ex.input, ex.profile)
            got = program.retrieve(ex.input, user_id=ex.user_id, profile_ids=ids)
            assert (got.ids, got.indices) == (expected.ids, expected.indices), (retriever, ex.id)
            assert got.scores == pytest.approx(expected.scores, abs=1e-5)
            assert [dict(item) for item in got.items] == [dict(item) for item in expected.items]
            unscoped = program.retrieve(ex.input, user_id=ex.user_id)
            leaked += bool(set(unscoped.ids) - set(ids))
    assert leaked > 0  # without the question's ids the store shows later items: the scope matters


# ------------------------------------------------------------------------ encoder fingerprints
def test_a_store_never_mixes_two_encoders(
    make_store: StoreFactory, encoder: TextEncoder, retrained: dict
) -> None:
    old = make_store()
    old.add("alice", ALICE)
    old.add("bob", BOB)
    second = retrained["second"]
    new = make_store(encoder=second)  # the same data, opened with the retrained checkpoint
    query = second.encode([SCI_FI_QUERY])[0]

    with pytest.raises(StoreError, match="re-embed") as error:
        new.search("alice", query, k=2)
    assert "'alice' was embedded with 'all-MiniLM-L6-v2'" in str(error.value)
    assert DenseRetriever(encoder=second).search_store(SCI_FI_QUERY, old, "alice").ids  # not the store's
    assert [doc.id for doc in new.documents("alice")] == [entry["id"] for entry in ALICE]  # no vectors

    # Adding re-embeds all of the user's items, also those not passed; reembed() needs no data.
    assert new.add("alice", ALICE[:1]) == len(ALICE)
    assert new.reembed("bob") == len(BOB) and new.reembed("bob") == 0
    retriever = DenseRetriever(encoder=second)
    for user, profile in (("alice", ALICE), ("bob", BOB)):
        expected = retriever.search(SCI_FI_QUERY, TASK.documents(profile), k=3)
        got = new.search(user, query, k=3)
        assert got.ids == expected.ids and got.scores == pytest.approx(expected.scores, abs=1e-4)
    with pytest.raises(StoreError, match="re-embed"):  # now the old encoder is the foreign one
        old.search("bob", encoder.encode([SCI_FI_QUERY])[0], k=2)


# -------------------------------------------------------------------------------- namespaces
def test_users_match_the_namespace_exactly(make_store: StoreFactory) -> None:
    short, longer = make_store("ns"), make_store("ns-x")
    short.add("alice", ALICE[:1])
    longer.add("bob", BOB[:1])
    assert short.users() == ["alice"]
    assert longer.users() == ["bob"]


@pytest.mark.parametrize("namespace", ["", "-ns", "a..b", "a b", "ns/x", "é", "x" * 480])
def test_an_invalid_namespace_states_the_rule(namespace: str, tmp_path: Path, encoder: TextEncoder) -> None:
    with pytest.raises(StoreError, match=re.escape(NAMESPACE_RULE)):
        ProfileStore(tmp_path, task=TASK, encoder=encoder, namespace=namespace)


def test_the_longest_valid_namespace_works(tmp_path: Path, encoder: TextEncoder) -> None:
    store = ProfileStore(tmp_path, task=TASK, encoder=encoder, namespace="x" * 479)
    store.add("alice", ALICE[:1])
    assert store.users() == ["alice"]


WRITER = """
import json, sys, time
from pathlib import Path
from persona_rag.store import ProfileStore

spec = json.loads(sys.argv[1])
stores = [ProfileStore(**where, task="LaMP-3", namespace=spec["namespace"]) for where in spec["stores"]]
Path(spec["ready"]).touch()
while not Path(spec["go"]).exists():  # every writer starts together, after loading its encoder
    time.sleep(0.01)
for entry in spec["items"]:
    for store in stores:
        store.add("shared", [entry])
"""


@pytest.mark.server
def test_concurrent_writers_keep_one_order(chroma_server: str, tmp_path: Path, encoder: TextEncoder) -> None:
    """Four processes write 50 items each to one user, embedded and on a server (one set of
    processes for both backends: each loads its encoder once)."""
    writers, per_writer = 4, 50
    items = {
        w: [
            item(f"w{w}-{i:02d}", f"Movie {w}-{i} (2001), genres: Drama", 1 + i % 5, 1 + i % 20)
            for i in range(per_writer)
        ]
        for w in range(writers)
    }  # 20 dates shared by all writers, so order ties are broken by id
    namespace = f"t{uuid.uuid4().hex[:12]}"
    where = [{"path": str(tmp_path / "chroma")}, {"url": chroma_server}]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    processes = []
    for w in range(writers):
        spec = {
            "stores": where,
            "namespace": namespace,
            "items": items[w],
            "ready": str(tmp_path / f"ready{w}"),
            "go": str(tmp_path / "go"),
        }
        processes.append(subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(spec)], env=env))
    deadline = time.monotonic() + 600
    while not all((tmp_path / f"ready{w}").exists() for w in range(writers)):
        assert all(p.poll() is None for p in processes), "a writer died while starting"
        assert time.monotonic() < deadline, "writers did not start"
        time.sleep(0.1)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=600) for p in processes] == [0] * writers

    everything = [entry for w in range(writers) for entry in items[w]]
    expected = [entry["id"] for entry in sorted(everything, key=lambda entry: (entry["date"], entry["id"]))]
    for location in where:
        store = ProfileStore(**location, task=TASK, encoder=encoder, namespace=namespace)
        docs = store.documents("shared")
        assert store.count("shared") == writers * per_writer, location
        assert [doc.id for doc in docs] == expected, location
        assert [doc.index for doc in docs] == list(range(writers * per_writer))  # one position each
        store.delete_user("shared")

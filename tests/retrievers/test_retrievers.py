"""Retrievers: the shared interface, each retriever's ranking, caching, state and copying."""

from __future__ import annotations

import copy
import json
import uuid

import dspy
import numpy as np
import pytest

from persona_rag.retrievers import (
    RETRIEVERS,
    BM25Retriever,
    DenseRetriever,
    NoRetriever,
    RandomRetriever,
    RecencyRetriever,
    RetrievalResult,
    Retriever,
    make_retriever,
    top_k,
)
from persona_rag.tasks import Document, get_task

SPEC = get_task("LaMP-3")
PROFILE = [
    {
        "id": "p0",
        "text": "a western film with cowboys and horses on the prairie",
        "score": "5",
        "date": "2020-01-01",
    },
    {
        "id": "p1",
        "text": "a recipe book for chocolate cake with butter and sugar",
        "score": "2",
        "date": "2021-06-01T10:00:00Z",
    },
    {"id": "p2", "text": "the quarterly financial report of a large bank", "score": "1"},
    {
        "id": "p3",
        "text": "romantic comedy set in paris during the spring",
        "score": "4",
        "date": "2019/05/05",
    },
    {
        "id": "p4",
        "text": "a thriller about a detective and a stolen painting",
        "score": "3",
        "date": "not a date",
    },
    {
        "id": "p5",
        "text": "science fiction adventure with robots in space",
        "score": "4",
        "date": "2018-12-31",
    },
]
DOCS = SPEC.documents(PROFILE)
KINDS = ["none", "random", "recency", "bm25", "dense"]


@pytest.fixture(scope="module")
def dense() -> DenseRetriever:
    return DenseRetriever()  # the shared, packaged all-MiniLM-L6-v2 (loads in about a second)


def build(kind: str, dense: DenseRetriever) -> Retriever:
    return dense if kind == "dense" else make_retriever(kind)


# ---------------------------------------------------------------------------- the interface
def test_registry_names():
    assert set(RETRIEVERS) == set(KINDS)
    assert isinstance(make_retriever("BM25", k1=1.2), BM25Retriever)
    assert make_retriever("random", seed=5).seed == 5


def test_make_retriever_unknown_name():
    with pytest.raises(ValueError, match="unknown retriever 'tfidf'") as info:
        make_retriever("tfidf")
    for kind in KINDS:
        assert kind in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_search_interface(kind, dense):
    retriever = build(kind, dense)
    result = retriever.search("cowboys riding horses", DOCS, k=3)
    assert isinstance(result, RetrievalResult)
    if kind == "none":
        assert len(result) == 0 and result.ids == [] and result.items == []
        return
    assert len(result) == 3
    assert result.scores == sorted(result.scores, reverse=True)
    assert all(isinstance(score, float) for score in result.scores)
    assert len(set(result.ids)) == 3
    assert [PROFILE[i]["id"] for i in result.indices] == result.ids
    assert result.items == [PROFILE[i] for i in result.indices]
    assert retriever(query="cowboys riding horses", documents=DOCS, k=3) == result  # forward()


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_profile_and_empty_profile(kind, dense):
    retriever = build(kind, dense)
    everything = retriever.search("space robots", DOCS, k=50)
    assert sorted(everything.ids) == ([] if kind == "none" else sorted(p["id"] for p in PROFILE))
    assert retriever.search("space robots", [], k=4) == RetrievalResult(())
    assert retriever.search("space robots", DOCS, k=0) == RetrievalResult(())


@pytest.mark.parametrize("kind", KINDS)
def test_batch_search_equals_search(kind, dense):
    retriever = build(kind, dense)
    tag = uuid.uuid4().hex  # queries never seen before, so dense batch and single encodings both run
    queries = [f"cowboys {tag}", f"chocolate dessert {tag}", f"money {tag}", f"robots {tag}"]
    profiles = [DOCS, DOCS[1:4], [], SPEC.documents(PROFILE[::-1])]
    batch = retriever.batch_search(queries, profiles, k=2)
    assert len(batch) == 4
    assert batch[2] == RetrievalResult(())
    for query, docs, result in zip(queries, profiles, batch, strict=True):
        single = retriever.search(query, docs, k=2)
        assert result.ids == single.ids
        np.testing.assert_allclose(result.scores, single.scores, rtol=1e-5, atol=1e-6)


def test_batch_search_length_mismatch():
    with pytest.raises(ValueError, match="2 queries for 1 profiles"):
        BM25Retriever().batch_search(["a", "b"], [DOCS])


def test_top_k_ties_keep_profile_order():
    result = top_k(np.array([0.5, 1.0, 0.5, 1.0]), DOCS[:4], 3)
    assert result.ids == ["p1", "p3", "p0"]


# --------------------------------------------------------------------------- each retriever
def test_no_retriever_is_always_empty():
    retriever = NoRetriever()
    assert retriever.search("anything", DOCS) == RetrievalResult(())
    assert retriever.batch_search(["a", "b"], [DOCS, []]) == [RetrievalResult(()), RetrievalResult(())]


def test_random_is_seeded_and_reproducible():
    first = RandomRetriever(seed=1).search("query", DOCS, k=6)
    assert RandomRetriever(seed=1).search("query", DOCS, k=6) == first  # a fresh instance: same order
    assert RandomRetriever(seed=1).search("query", DOCS, k=6).scores == first.scores
    assert RandomRetriever(seed=2).search("query", DOCS, k=6).ids != first.ids
    assert RandomRetriever(seed=1).search("another query", DOCS, k=6).ids != first.ids
    assert all(0.0 <= s < 1.0 for s in first.scores)


def test_recency_orders_by_date_with_undated_last():
    result = RecencyRetriever().search("ignored", DOCS, k=6)
    # dated, newest first: 2021-06-01 (p1), 2020-01-01 (p0), 2019/05/05 (p3), 2018-12-31 (p5);
    # then missing/unparseable dates, later profile position first: p4 ("not a date"), p2 (none)
    assert result.ids == ["p1", "p0", "p3", "p5", "p4", "p2"]
    assert result.scores == pytest.approx([6 / 6, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


def test_recency_ignores_the_query():
    retriever = RecencyRetriever()
    assert retriever.search("a", DOCS).ids == retriever.search("b", DOCS).ids


def test_bm25_ranks_the_lexical_match_first():
    result = BM25Retriever().search("Cowboys on horses", DOCS, k=6)
    assert result.ids[0] == "p0"
    assert result.scores[0] > 0 and result.scores[1:] == [0.0] * 5


def test_bm25_stopword_only_and_unknown_queries_score_zero():
    retriever = BM25Retriever()
    for query in ("the of and", "zyzzyva quux"):
        result = retriever.search(query, DOCS, k=6)
        assert result.scores == [0.0] * 6
        assert result.ids == [p["id"] for p in PROFILE]  # ties keep profile order


def test_bm25_keeps_positions_with_an_empty_document():
    profile = [
        {"id": "e", "text": "the of and", "score": "1"},
        {"id": "m", "text": "robots in space", "score": "2"},
    ]
    assert BM25Retriever().search("robots", SPEC.documents(profile), k=1).ids == ["m"]


def test_bm25_index_cache_is_reused():
    retriever = BM25Retriever()
    retriever.search("cowboys", DOCS)
    index = retriever.index(DOCS)
    retriever.search("bank report", DOCS)
    assert retriever.index(SPEC.documents(PROFILE)) is index  # same texts: the same index object
    assert len(retriever._indexes) == 1
    retriever.search("cowboys", DOCS[:3])
    assert len(retriever._indexes) == 2
    other = BM25Retriever(k1=0.9)  # the settings are part of the key
    other._indexes = retriever._indexes
    assert other.index(DOCS) is not index


def test_dense_ranks_the_semantic_match_first(dense):
    assert dense.search("a movie about the wild west", DOCS, k=1).ids == ["p0"]
    assert dense.search("money and banking", DOCS, k=1).ids == ["p2"]
    assert dense.search("baking a dessert", DOCS, k=1).ids == ["p1"]


def test_dense_encodes_each_profile_text_once(dense, monkeypatch):
    calls: list[list[str]] = []
    original = dense.encoder._encode_uncached

    def counting(texts, batch_size):
        calls.append(list(texts))
        return original(texts, batch_size)

    monkeypatch.setattr(dense.encoder, "_encode_uncached", counting)
    tag = uuid.uuid4().hex
    profile = [
        {"id": str(i), "text": f"{text} {tag}", "score": "3"}
        for i, text in enumerate(["cats", "dogs", "fish"])
    ]
    docs = SPEC.documents(profile)
    dense.search(f"pets {tag}", docs)
    dense.search(f"animals {tag}", docs)
    dense.batch_search([f"kittens {tag}", f"pets {tag}"], [docs, docs])
    encoded = [text for call in calls for text in call]
    assert sorted(encoded) == sorted(
        [d.text for d in docs] + [f"pets {tag}", f"animals {tag}", f"kittens {tag}"]
    )


# ---------------------------------------------------------------------------- state and copy
@pytest.mark.parametrize(
    ("retriever", "fresh"),
    [
        (BM25Retriever(method="robertson", k1=1.2, b=0.5), BM25Retriever()),
        (RandomRetriever(seed=42), RandomRetriever()),
        (RecencyRetriever(), RecencyRetriever()),
        (NoRetriever(), NoRetriever()),
    ],
    ids=["bm25", "random", "recency", "none"],
)
def test_dump_and_load_state_round_trip(retriever, fresh):
    state = json.loads(json.dumps(retriever.dump_state()))  # JSON-serialisable
    assert state["retriever"] == retriever.kind
    assert fresh.load_state(state) is fresh
    assert fresh.config() == retriever.config()
    assert fresh.search("cowboys", DOCS).ids == retriever.search("cowboys", DOCS).ids


def test_dense_state(dense):
    state = dense.dump_state()
    assert state == {"retriever": "dense", "encoder": "all-MiniLM-L6-v2", "normalize": True}
    other = DenseRetriever(encoder=dense.encoder)
    other.load_state(state)
    assert other.encoder is dense.encoder  # same model: nothing reloaded


def test_load_state_of_another_kind_fails():
    with pytest.raises(ValueError, match="'random' retriever, but this program holds a 'bm25'"):
        BM25Retriever().load_state(RandomRetriever(seed=3).dump_state())


def test_repr_shows_config():
    assert repr(RandomRetriever(seed=3)) == "RandomRetriever(seed=3)"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["copy.deepcopy", "Module.deepcopy", "reset_copy"])
def test_retrievers_survive_deep_copies(kind, how, dense):
    retriever = build(kind, dense)
    retriever.search("cowboys", DOCS)  # fill caches (they hold locks, which cannot be deep-copied)
    copied = {
        "copy.deepcopy": copy.deepcopy,
        "Module.deepcopy": lambda r: r.deepcopy(),
        "reset_copy": lambda r: r.reset_copy(),
    }[how](retriever)
    assert type(copied) is type(retriever) and copied is not retriever
    assert copied.config() == retriever.config()
    assert copied.search("cowboys", DOCS, k=6) == retriever.search("cowboys", DOCS, k=6)
    if kind == "dense":
        assert copied.encoder is retriever.encoder  # frozen weights are shared, not copied


def test_retriever_is_a_dspy_parameter_of_its_program():
    class Program(dspy.Module):
        def __init__(self):
            super().__init__()
            self.retriever = RandomRetriever(seed=9)

    program = Program()
    assert ("retriever", program.retriever) in program.named_parameters()
    program.retriever.seed = 11
    restored = Program()
    restored.load_state(program.dump_state())
    assert restored.retriever.seed == 11


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_bm25_scores_equal_bm25s(method):
    import bm25s

    from persona_rag.retrievers.bm25 import tokenize

    # "film" is in most documents: Robertson's idf would be negative there and is floored at 0.
    docs = SPEC.documents([{**item, "text": f"{item['text']} film"} for item in PROFILE])
    texts = [doc.text for doc in docs]
    reference = bm25s.BM25(method=method, k1=1.2, b=0.6)
    reference.index([tokenize(t) for t in texts], show_progress=False)
    for query in ("cowboys in the west film", "bank report money", "dessert baking cake film"):
        ours = BM25Retriever(method=method, k1=1.2, b=0.6).scores(query, docs)
        assert np.allclose(ours, reference.get_scores(tokenize(query)), atol=1e-5)


def test_bm25_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown BM25 method"):
        BM25Retriever(method="bm42")


def test_bm25_indexes_a_huge_item_by_its_start(monkeypatch):
    from persona_rag.retrievers import bm25

    lengths, tokenize = [], bm25.tokenize

    def recording(text):
        lengths.append(len(text))
        return tokenize(text)

    monkeypatch.setattr(bm25, "tokenize", recording)  # ProfileIndex tokenizes through the module name
    huge = Document(index=0, id="huge", text="horses " + "filler " * 1_000_000, date=None, item={})
    other = Document(index=1, id="other", text="a quiet drama", date=None, item={})
    result = bm25.BM25Retriever().search("horses", [huge, other], k=1)
    assert result.ids == ["huge"] and max(lengths) <= bm25.MAX_INDEXED_CHARS

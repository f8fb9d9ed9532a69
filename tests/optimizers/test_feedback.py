"""Feedback: per-candidate Eval, batched, cached on disk, resumable after an interruption."""

from __future__ import annotations

import pytest

from optimizers.feedback import CandidateFeedback, Feedback, FeedbackCache, FeedbackTrainingConfig
from persona_rag import BM25Retriever, GenerationError, Generator, PersonalizedRAG
from persona_rag.errors import CacheError, ConfigError, NoSpaceError
from persona_rag.retrievers import RetrievalResult
from persona_rag.retrievers.base import Hit
from persona_rag.tasks import Document
from tests.optimizers.key_item_task import TASK, make_examples, reply


class CountingReply:
    """The key-item LLM, counting calls and optionally failing after ``fail_after`` of them."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, messages):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise ConnectionError("server went away")
        self.calls += 1
        return reply(messages)


def make_feedback(scripted_lm, tmp_path, answer, **options):
    program = PersonalizedRAG(
        task=TASK, retriever=BM25Retriever(), generator=Generator(lm=scripted_lm(answer))
    )
    options = {"candidates": 6, "batch_size": 4, "progress": False, "num_threads": 2, **options}
    return Feedback(program=program, cache=tmp_path / "feedback.sqlite", **options)


def test_scores_each_candidate_with_eval(scripted_lm, tmp_path):
    examples = make_examples(5, profile_size=6)
    rows = make_feedback(scripted_lm, tmp_path, CountingReply()).compute(examples)
    for example, row in zip(examples, rows):
        assert len(row.candidates) == 6 and len(row.scores) == 6
        for hit, score, output in zip(row.candidates.hits, row.scores, row.outputs):
            assert score == (1.0 if hit.id == example.key else 0.0)
            assert output == (example.output if hit.id == example.key else "none")
        assert row.rewards[0] == 0.0
        assert row.rewards == tuple(s - row.scores[0] for s in row.scores)


def test_second_run_reads_everything_from_the_cache(scripted_lm, tmp_path):
    examples = make_examples(4, profile_size=6)
    counting = CountingReply()
    first = make_feedback(scripted_lm, tmp_path, counting)
    rows = first.compute(examples)
    assert counting.calls == 24 and first.computed == 24
    again = make_feedback(scripted_lm, tmp_path, counting)
    assert again.compute(examples) == rows
    assert counting.calls == 24 and again.computed == 0


def test_interrupted_run_resumes_without_repeating_finished_batches(scripted_lm, tmp_path):
    examples = make_examples(4, profile_size=6)
    with pytest.raises(GenerationError):
        make_feedback(scripted_lm, tmp_path, CountingReply(fail_after=10), num_threads=1).compute(examples)
    done = len(FeedbackCache(tmp_path / "feedback.sqlite"))
    assert done == 8  # two committed batches of 4; the third failed half-way and was not kept
    counting = CountingReply()
    make_feedback(scripted_lm, tmp_path, counting).compute(examples)
    assert counting.calls == 24 - done


def test_changed_generation_settings_are_not_served_from_the_cache(scripted_lm, tmp_path):
    examples = make_examples(2, profile_size=6)
    counting = CountingReply()
    make_feedback(scripted_lm, tmp_path, counting).compute(examples)
    feedback = make_feedback(scripted_lm, tmp_path, counting)
    feedback.program.generator.max_new_tokens = 64
    feedback.compute(examples)
    assert counting.calls == 24


def test_likelihood_signal_needs_a_local_model(scripted_lm, tmp_path):
    with pytest.raises(ValueError, match="in-process model"):
        make_feedback(scripted_lm, tmp_path, CountingReply(), signal="likelihood")


def test_a_file_that_is_not_a_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "feedback.sqlite"
    path.write_bytes(b"not an SQLite database at all " * 64)
    with pytest.raises(CacheError, match="delete or move the cache file") as info:
        FeedbackCache(path)
    assert str(path) in str(info.value) and "DatabaseError" in str(info.value)


def test_a_corrupt_value_in_the_cache_is_a_clear_error(tmp_path):
    import sqlite3

    path = tmp_path / "feedback.sqlite"
    cache = FeedbackCache(path)
    cache.put_many({"good": {"output": "4"}})
    cache.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO feedback (key, value) VALUES ('bad', '{\"output\": ')")
    cache = FeedbackCache(path)
    assert cache.get_many(["good"]) == {"good": {"output": "4"}}
    with pytest.raises(CacheError, match=f"delete or move the cache file {path}") as info:
        cache.get_many(["good", "bad"])
    assert "JSONDecodeError" in str(info.value)


# ------------------------------------------------------------- a full disk is not a corrupt cache
ANSWERS = {f"key-{i}": {"output": str(i % 5 + 1), "label_scores": None} for i in range(192)}


def filled_cache(tmp_path):
    path = tmp_path / "feedback.sqlite"
    cache = FeedbackCache(path)
    cache.put_many(ANSWERS)
    cache.close()
    return path


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk()``: from then on, SQLite connections cannot grow their file by a page: SQLite's
    own SQLITE_FULL, as on a full file system (``PRAGMA max_page_count``), without mounting one."""
    import sqlite3

    connect = sqlite3.connect

    def no_room(database, *args, **kwargs):
        db = connect(database, *args, **kwargs)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")
        return db

    return lambda: monkeypatch.setattr(sqlite3, "connect", no_room)


def assert_full_disk_message(error, path):
    message = str(error)
    assert message.startswith(f"{path}: no space left on the device") and "\n" not in message
    assert "committed before are kept" in message and "delete" not in message


def test_a_full_disk_keeps_every_committed_answer_and_never_advises_deleting_them(
    tmp_path, full_disk, monkeypatch
):
    path = filled_cache(tmp_path)
    full_disk()
    cache = FeedbackCache(path)  # opening needs no new page
    with pytest.raises(NoSpaceError) as info:
        cache.put_many({f"new-{i}": {"output": "x" * 2000} for i in range(64)})
    assert_full_disk_message(info.value, path)
    assert cache.get_many(list(ANSWERS)) == ANSWERS
    cache.close()
    monkeypatch.undo()  # space freed: every answer committed before is there
    assert FeedbackCache(path).get_many(list(ANSWERS)) == ANSWERS


def test_a_new_cache_on_a_full_disk_says_no_space_left(tmp_path, full_disk):
    full_disk()
    with pytest.raises(NoSpaceError) as info:
        FeedbackCache(tmp_path / "feedback.sqlite")
    assert_full_disk_message(info.value, tmp_path / "feedback.sqlite")


class FailingWrites:
    """A cache connection whose writes fail with ``error``, reads working: a disk that refuses."""

    def __init__(self, db, error) -> None:
        self.db, self.error = db, error

    def executemany(self, *args):
        raise self.error

    def __getattr__(self, name):
        return getattr(self.db, name)

    def __enter__(self):
        return self.db.__enter__()

    def __exit__(self, *exc):
        return self.db.__exit__(*exc)


def disk_io_error(monkeypatch, *, free: int):
    """Writes to the cache fail with SQLite's "disk I/O error" (SQLITE_IOERR_WRITE, what an existing
    cache reports on a full disk); the file system has ``free`` bytes left."""
    import shutil
    import sqlite3
    from collections import namedtuple

    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode, error.sqlite_errorname = 778, "SQLITE_IOERR_WRITE"
    connect = sqlite3.connect

    def failing(database, *args, **kwargs):
        db = connect(database, *args, **kwargs)
        return db if str(database).startswith("file:") else FailingWrites(db, error)

    monkeypatch.setattr(sqlite3, "connect", failing)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - free, free))


def test_a_disk_io_error_on_a_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    path = filled_cache(tmp_path)
    disk_io_error(monkeypatch, free=0)
    cache = FeedbackCache(path)
    with pytest.raises(NoSpaceError) as info:
        cache.put_many({"new": {"output": "4"}})
    assert_full_disk_message(info.value, path)


def test_an_intact_cache_that_cannot_be_written_is_kept_on_its_integrity_check(tmp_path, monkeypatch):
    path = filled_cache(tmp_path)
    disk_io_error(monkeypatch, free=10**9)
    cache = FeedbackCache(path)
    with pytest.raises(CacheError) as info:
        cache.put_many({"new": {"output": "4"}})
    message = str(info.value)
    assert (
        message.startswith(f"{path}: ") and "integrity check passes" in message and "keep the file" in message
    )
    assert "delete" not in message
    monkeypatch.undo()
    assert FeedbackCache(path).get_many(list(ANSWERS)) == ANSWERS


def test_a_cache_damaged_inside_is_what_deleting_is_advised_for(tmp_path):
    path = filled_cache(tmp_path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page : 3 * page] = b"\xff" * (2 * page)  # overwrite table pages, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(
        CacheError, match=f"corrupt .*integrity check: .*delete or move the cache file {path}"
    ):
        FeedbackCache(path).get_many(list(ANSWERS))


def test_checkpoints_in_folders_of_the_same_name_get_their_own_feedback(tmp_path, tiny_checkpoint):
    from persona_rag.lm import local_lm

    a = tiny_checkpoint(tmp_path / "a" / "best", seed=1)
    b = tiny_checkpoint(tmp_path / "b" / "best", seed=2)
    examples = make_examples(2, profile_size=4)

    def outputs(path, cache):
        generator = Generator(lm=local_lm(str(path)), label_scoring=False, max_new_tokens=4)
        program = PersonalizedRAG(task=TASK, retriever=BM25Retriever(), generator=generator)
        rows = Feedback(program=program, candidates=3, cache=cache, progress=False).compute(examples)
        return [row.outputs for row in rows]

    shared = tmp_path / "feedback.sqlite"
    assert outputs(a, shared) != outputs(b, tmp_path / "b-alone.sqlite")
    # b after a in one cache file: b's own answers, not a's (the key was the folder name's model)
    assert outputs(b, shared) == outputs(b, tmp_path / "b-alone.sqlite")


def test_the_packaged_model_is_keyed_by_its_content_not_its_name(tmp_path, tiny_checkpoint, monkeypatch):
    from persona_rag.lm import DEFAULT_LM, local_lm, release_local_lm

    examples = make_examples(2, profile_size=4)

    def outputs(machine_cache, seed):
        # The default model's copy under $PERSONA_RAG_CACHE, e.g. rebuilt by a newer transformers.
        monkeypatch.setenv("PERSONA_RAG_CACHE", str(tmp_path / machine_cache))
        tiny_checkpoint(tmp_path / machine_cache / "models" / DEFAULT_LM, seed=seed)
        release_local_lm(DEFAULT_LM)
        try:
            generator = Generator(lm=local_lm(DEFAULT_LM), label_scoring=False, max_new_tokens=4)
            program = PersonalizedRAG(task=TASK, retriever=BM25Retriever(), generator=generator)
            feedback = Feedback(
                program=program, candidates=3, cache=tmp_path / "feedback.sqlite", progress=False
            )
            return [row.outputs for row in feedback.compute(examples)], feedback.computed
        finally:
            release_local_lm(DEFAULT_LM)  # later tests get the real default model again

    first, _ = outputs("machine-1", seed=1)
    second, computed = outputs("machine-2", seed=2)
    assert computed == 6 and second != first  # the name alone served the first copy's answers


@pytest.mark.parametrize(
    ("option", "value"), [("label_normalization", "mean"), ("answer_extraction", "none")]
)
def test_generator_settings_that_change_answers_are_in_the_cache_fingerprint(scripted_lm, option, value):
    def fingerprint(**options):
        return Generator(lm=scripted_lm("x"), **options).fingerprint()

    base = {"label_normalization": "sum", "answer_extraction": "first-line"}
    assert fingerprint(**{**base, option: value}) != fingerprint(**base)


def test_rows_whose_scores_all_tie_are_what_skip_uniform_drops_for_ropg_kd_and_rspg():
    from optimizers import ROPG_KD, ROPG_RL, ROPGKDConfig
    from optimizers.feedback import CandidateFeedback, PoolFeedback, carries_preference
    from persona_rag.retrievers import RetrievalResult
    from persona_rag.retrievers.base import Hit
    from persona_rag.tasks import Document

    hits = tuple(Hit(i, str(i), 0.0, Document(i, str(i), "text", None, {})) for i in range(2))

    def row(*scores):
        return CandidateFeedback("q", "query", RetrievalResult(hits), ("a", "b"), scores)

    tied, preferring = row(0.5, 0.5), row(0.5, 0.75)
    assert not carries_preference(tied) and carries_preference(preferring)
    assert carries_preference(PoolFeedback("q", ("x", "y"), ("p", "p"), ("a", "b"), (0.0, 1.0)))
    assert not ROPG_KD(config=ROPGKDConfig()).keep(tied)  # skip_uniform is on by default
    assert ROPG_KD(config=ROPGKDConfig(skip_uniform=False)).keep(tied)
    assert ROPG_RL().keep(tied)  # RL learns from rewards relative to the baseline, ties included
    assert ROPG_KD().keep(preferring)


def _row(scores: tuple[float, ...], ids: tuple[str, ...] = ("a", "b")) -> CandidateFeedback:
    hits = tuple(
        Hit(i, item_id, score, Document(index=i, id=item_id, text=f"text {item_id}", date=None, item={}))
        for i, (item_id, score) in enumerate(zip(ids, scores))
    )
    return CandidateFeedback("q1", "query", RetrievalResult(hits), ("1", "2"), (0.5, 0.25))


def test_a_row_identity_ignores_retrieval_score_noise_but_not_the_candidates():
    """A resumed run re-retrieves its candidates; scores that moved in their last bits (another
    thread count) must not make it look like another run."""
    assert _row((0.91, 0.52)).identity() == _row((0.91 + 1e-7, 0.52 - 1e-7)).identity()
    assert _row((0.91, 0.52)).identity() != _row((0.91, 0.52), ids=("b", "a")).identity()


def test_pool_rows_carry_every_members_answer_whatever_the_signal(local_generator, sample_task, tmp_path):
    """RSPG-Post reads each member's answer and RSPG is validated on its metric: with the
    likelihood signal (which alone needs no answer) a pool row once held empty answers, so the
    selector read nothing and every validation score was 0."""
    from persona_rag.data import load_lamp
    from persona_rag.retrievers import NoRetriever, RecencyRetriever

    split = load_lamp(sample_task, "train", limit=2)
    program = PersonalizedRAG(task=split.task, retriever=BM25Retriever(), generator=local_generator)
    feedback = Feedback(program=program, cache=tmp_path / "f.sqlite", signal="likelihood", progress=False)
    rows = feedback.compute_pool(split.examples(), {"none": NoRetriever(), "recency": RecencyRetriever()})
    for row in rows:
        assert all(output.strip() for output in row.outputs)
        assert all(score <= 0 for score in row.scores)  # log p(gold): the signal is still likelihood


def _rating_feedback(reader, sample_task, cache, signal):
    """ROPG feedback with label scoring on the sample task's ratings (LaMP-3 format)."""
    from persona_rag.data import load_lamp
    from persona_rag.lm import local_lm

    examples = load_lamp(sample_task, "train", limit=6).examples()
    generator = Generator(lm=local_lm(str(reader)), batch_size=8)
    program = PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), generator=generator)
    feedback = Feedback(program=program, candidates=4, cache=cache, signal=signal, progress=False)
    return examples, feedback, feedback.compute(examples)


def test_the_expected_signal_is_eval_under_the_label_distribution(tiny_checkpoint, sample_task, tmp_path):
    """``expected`` = sum over labels of softmax(label scores) x Eval(gold, label), from the label
    scoring pass that ``metric`` makes anyway: no model call of its own."""
    import math

    reader, cache = tiny_checkpoint(tmp_path / "reader", seed=3), tmp_path / "f.sqlite"
    _rating_feedback(reader, sample_task, cache, "metric")
    examples, feedback, rows = _rating_feedback(reader, sample_task, cache, "expected")
    assert feedback.computed == 0
    program = feedback.program
    task = program.task
    for example, row in zip(examples, rows):
        prompts = [
            program.build_prompt(example.input, RetrievalResult((hit,))) for hit in row.candidates.hits
        ]
        answers = program.generator.generate_batch(prompts, [task.labels_for(example.input)] * len(prompts))
        for answer, score in zip(answers, row.scores):
            top = max(answer.label_scores.values())
            weights = {label: math.exp(s - top) for label, s in answer.label_scores.items()}
            by_hand = sum(
                w / sum(weights.values()) * task.eval(str(example.output), task.parse(label, example.input))
                for label, w in weights.items()
            )
            assert math.isclose(score, by_hand, rel_tol=1e-9, abs_tol=1e-12)


def test_the_expected_signal_ties_where_the_argmax_metric_does(tiny_checkpoint, sample_task, tmp_path):
    """A reader whose argmax answer barely moves ties on ``metric`` for most questions; the label
    distribution still moves with every candidate, so ``expected`` separates them."""
    reader, cache = tiny_checkpoint(tmp_path / "reader", seed=3), tmp_path / "f.sqlite"
    _, _, metric = _rating_feedback(reader, sample_task, cache, "metric")
    _, _, expected = _rating_feedback(reader, sample_task, cache, "expected")
    tied = [max(row.scores) == min(row.scores) for row in metric]
    assert sum(tied) >= len(tied) // 2  # the weak reader's answers rarely depend on the item
    assert not any(max(row.scores) == min(row.scores) for row in expected)


def test_the_expected_signal_is_refused_where_there_is_no_label_distribution(
    scripted_lm, tiny_checkpoint, tmp_path
):
    """Free text has no labels to take an expectation over; a server without log-probabilities
    gives no label scores: both are refused before any call, naming what to use instead."""
    from optimizers.feedback import resolve_signal
    from persona_rag.lm import local_lm

    local = Generator(lm=local_lm(str(tiny_checkpoint(tmp_path / "reader", seed=3))))
    with pytest.raises(ConfigError, match=r"expected signal.*free text.*--signal likelihood"):
        resolve_signal("expected", PersonalizedRAG(task="LaMP-6", generator=local))
    server = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("4")))
    with pytest.raises(ConfigError, match=r"expected signal.*--signal metric"):
        resolve_signal("expected", server)
    assert resolve_signal("expected", PersonalizedRAG(task="LaMP-3", generator=local)) == "expected"


def test_auto_is_metric_likelihood_where_the_reader_gives_log_p_gold(scripted_lm, tiny_checkpoint, tmp_path):
    """The default benchmarks/README.md ("Signals without ties") chose on training feedback, for
    free text as for labels; a server without log-probabilities falls back to the metric."""
    from optimizers.feedback import resolve_signal
    from persona_rag.lm import local_lm

    local = Generator(lm=local_lm(str(tiny_checkpoint(tmp_path / "reader", seed=3))))
    assert resolve_signal("auto", PersonalizedRAG(task="LaMP-6", generator=local)) == "metric+likelihood"
    assert resolve_signal("auto", PersonalizedRAG(task="LaMP-3", generator=local)) == "metric+likelihood"
    server = PersonalizedRAG(task="LaMP-6", generator=Generator(lm=scripted_lm("a subject")))
    assert resolve_signal("auto", server) == "metric"


def test_tie_advice_offers_only_the_signals_the_reader_can_give(scripted_lm, tmp_path, tiny_checkpoint):
    from optimizers.feedback import tie_advice
    from persona_rag.lm import local_lm

    server = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=scripted_lm("3")))  # 1-char labels
    advice = tie_advice(server, "metric", "more --max-examples")
    assert "--signal" not in advice and "no log-probabilities" in advice
    assert advice.startswith("Use a reader that uses its profile") and "or more --max-examples" in advice
    local = PersonalizedRAG(task=TASK, generator=Generator(lm=local_lm(str(tiny_checkpoint(tmp_path, 1)))))
    assert "--signal metric+likelihood or likelihood" in tie_advice(local, "metric")
    assert "--signal" not in tie_advice(local, "metric+likelihood")  # already breaking ties with it


@pytest.mark.parametrize("bad", [{"max_examples": 0}, {"max_val_examples": 0}, {"signal": "eval"}])
def test_feedback_training_settings_are_checked_at_construction(bad):
    [name] = bad
    with pytest.raises(ConfigError, match=f"^FeedbackTrainingConfig: {name}="):
        FeedbackTrainingConfig(**bad)

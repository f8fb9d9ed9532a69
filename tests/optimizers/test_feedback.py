"""Feedback: per-candidate Eval, batched, cached on disk, resumable after an interruption."""

from __future__ import annotations

import pytest

from optimizers.feedback import CandidateFeedback, Feedback, FeedbackCache, FeedbackTrainingConfig
from persona_rag import BM25Retriever, GenerationError, Generator, PersonalizedRAG
from persona_rag.errors import CacheError, ConfigError
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


@pytest.mark.parametrize("bad", [{"max_examples": 0}, {"max_val_examples": 0}, {"signal": "eval"}])
def test_feedback_training_settings_are_checked_at_construction(bad):
    [name] = bad
    with pytest.raises(ConfigError, match=f"^FeedbackTrainingConfig: {name}="):
        FeedbackTrainingConfig(**bad)

"""Feedback: per-candidate Eval, batched, cached on disk, resumable after an interruption."""

from __future__ import annotations

import pytest

from optimizers.feedback import Feedback, FeedbackCache
from persona_rag import BM25Retriever, GenerationError, Generator, PersonalizedRAG
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


@pytest.mark.parametrize(
    ("option", "value"), [("label_normalization", "mean"), ("answer_extraction", "none")]
)
def test_generator_settings_that_change_answers_are_in_the_cache_fingerprint(scripted_lm, option, value):
    from optimizers.feedback import generator_fingerprint

    def fingerprint(**options):
        generator = Generator(lm=scripted_lm("x"), **options)
        return generator_fingerprint(PersonalizedRAG(task=TASK, generator=generator))

    base = {"label_normalization": "sum", "answer_extraction": "first-line"}
    assert fingerprint(**{**base, option: value}) != fingerprint(**base)

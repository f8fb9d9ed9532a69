"""optimizers.feedback.compute: per-candidate Eval, batched, cached on disk, resumable after an
interruption, keyed by what changes the answers, and the expected signal."""

from __future__ import annotations

import pytest

from optimizers.feedback import Feedback, FeedbackCache
from persona_rag import BM25Retriever, GenerationError, Generator, PersonalizedRAG
from persona_rag.retrievers import RetrievalResult
from tests.optimizers.feedback.scripted import CountingReply, make_feedback
from tests.optimizers.key_item_task import TASK, make_examples


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

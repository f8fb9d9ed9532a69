"""optimizers.training.validation: the score a checkpoint is chosen by, computed as evaluation does."""

from __future__ import annotations

import pytest


def test_validation_scores_survive_a_failed_llm_call_as_evaluation_does(scripted_lm):
    """Validation is evaluation's run: a failed call scores its example as an empty answer (as
    ``evaluate_program`` does) instead of ending the training run."""
    import dspy

    from optimizers.training import validation_scores
    from persona_rag import BM25Retriever, Generator, PersonalizedRAG
    from persona_rag.evaluation import evaluate_program

    def flaky(messages):
        if "horror" in messages[-1]["content"]:
            raise ConnectionError("connection reset")
        return "3"

    profile = [{"id": "a", "text": "a western in the snow", "score": "1"}]
    question = "What is the score of the following review on a scale of 1 to 5? review: {}"
    valset = [
        dspy.Example(id=i, input=question.format(text), profile=profile, output=gold).with_inputs(
            "input", "profile"
        )
        for i, (text, gold) in enumerate([("a slow western", "3"), ("a horror remake", "2")])
    ]
    program = PersonalizedRAG(
        task="LaMP-3", retriever=BM25Retriever(), generator=Generator(lm=scripted_lm(flaky)), k=1
    )
    scores = validation_scores(program, valset)
    evaluated = evaluate_program(program, valset, progress=False)
    assert evaluated.failed == ["1"]
    assert scores == {"score": pytest.approx((1.0 + 0.0) / 2), **evaluated.metrics}

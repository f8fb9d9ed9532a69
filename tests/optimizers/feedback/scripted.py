"""A Feedback on the key-item task whose scripted LLM counts its calls, for the feedback tests."""

from __future__ import annotations

from optimizers.feedback import Feedback
from persona_rag import BM25Retriever, Generator, PersonalizedRAG
from tests.optimizers.key_item_task import TASK, reply


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

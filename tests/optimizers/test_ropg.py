"""ROPG-KD and ROPG-RL teach the retriever what the LLM's metric rewards."""

from __future__ import annotations

import pytest

from optimizers import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.encoders import TextEncoder
from tests.optimizers.key_item_task import TASK, make_examples, reply


def recall_at_1(retriever: DenseRetriever, examples) -> float:
    hits = 0
    for example in examples:
        top = retriever.search(TASK.query(example.input), TASK.documents(example.profile), k=1)
        hits += top.ids[0] == example.key
    return hits / len(examples)


@pytest.fixture
def key_item_program(scripted_lm):
    def make():
        # A private encoder, so that tuning cannot touch the shared default one.
        return PersonalizedRAG(
            task=TASK,
            retriever=DenseRetriever(encoder=TextEncoder()),
            generator=Generator(lm=scripted_lm(reply)),
            k=1,
        )

    return make


@pytest.mark.slow
@pytest.mark.parametrize(
    ("optimizer_class", "config_class", "epochs", "learning_rate"),
    [(ROPG_KD, ROPGKDConfig, 4, 1e-4), (ROPG_RL, ROPGConfig, 6, 1e-4)],
)
def test_tuned_retriever_ranks_the_key_item_first(
    optimizer_class, config_class, epochs, learning_rate, key_item_program, tmp_path
):
    train, val, test = make_examples(64, seed=1), make_examples(16, seed=2), make_examples(40, seed=3)
    student = key_item_program()
    before = recall_at_1(student.retriever, test)
    config = config_class(
        output_dir=tmp_path / "run",
        feedback_cache=tmp_path / "feedback.sqlite",
        candidates=8,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=8,
        gradient_accumulation_steps=1,
        patience=None,
        progress=False,
    )
    optimizer = optimizer_class(config=config)
    tuned = optimizer.compile(student, trainset=train, valset=val)
    after = recall_at_1(tuned.retriever, test)
    print(f"{optimizer_class.__name__}: recall@1 {before:.3f} -> {after:.3f}")
    assert after >= before + 0.4
    assert recall_at_1(student.retriever, test) == before  # the input program is untouched
    assert tuned.retriever.encoder.name == str(tmp_path / "run" / "best")
    history = optimizer.result.history
    assert history[-1]["score"] > history[0]["score"]
    assert (tmp_path / "run" / "curves.png").exists()

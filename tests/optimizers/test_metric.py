"""Any DSPy metric drives any optimizer: checked before training, named when it fails, followed
when it trains."""

from __future__ import annotations

import re

import pytest

from optimizers import (
    ROPG_KD,
    ROPG_RL,
    RSPG,
    MetricError,
    ROPGConfig,
    ROPGKDConfig,
    RSPGConfig,
    SetPL,
    SetPLConfig,
)
from persona_rag import DenseRetriever, Generator, PersonalizedRAG
from persona_rag.encoders import TextEncoder
from tests.optimizers.key_item_task import labelled_task, make_examples, selector_program

# The key-item profiles, with each item's label in the text the retriever reads; the scripted
# reader answers with the label of the item it is shown. The task's Eval rewards the gold label,
# the custom metric below "alpha", whatever the gold: two metrics that want different items.
SHOWN = labelled_task(
    "shown-label",
    "test task: the reader repeats the label of the item it reads",
    document_template="{text}, labelled {label}",
)


def repeat_label(messages):
    match = re.search(r"is labelled (\w+)", messages[-1]["content"])
    return match.group(1) if match else "none"


def wants_alpha(example, prediction, trace=None):
    return float(prediction.output == "alpha")


def settings(tmp_path, **extra):
    return {
        "output_dir": tmp_path / "run",
        "feedback_cache": tmp_path / "feedback.sqlite",
        "candidates": 8,
        "batch_size": 8,
        "gradient_accumulation_steps": 1,
        "patience": None,
        "progress": False,
        **extra,
    }


@pytest.fixture
def shown_program(tiny_encoder_dir, scripted_lm):
    def make(reply=repeat_label):
        return PersonalizedRAG(
            task=SHOWN,
            retriever=DenseRetriever(encoder=TextEncoder(str(tiny_encoder_dir))),
            generator=Generator(lm=scripted_lm(reply)),
            k=1,
        )

    return make


def top_labels(program, examples):
    results = program.batch_retrieve([e.input for e in examples], [e.profile for e in examples], k=1)
    return [result.items[0]["label"] for result in results]


def test_ropg_trained_on_a_custom_metric_ranks_what_that_metric_rewards(shown_program, tmp_path):
    train, val, test = make_examples(32, seed=1), make_examples(8, seed=2), make_examples(40, seed=3)
    # Questions on which the two metrics disagree: an item carries the gold, another "alpha".
    test = [e for e in test if e.output != "alpha" and "alpha" in {p["label"] for p in e.profile}]
    student = shown_program()
    before = top_labels(student, test)
    config = ROPGKDConfig(**settings(tmp_path, epochs=4, learning_rate=3e-2))
    optimizer = ROPG_KD(config=config, metric=wants_alpha)
    tuned = optimizer.compile(student, trainset=train, valset=val)
    after = top_labels(tuned, test)
    alpha = sum(label == "alpha" for label in after) / len(test)
    gold = sum(label == e.output for label, e in zip(after, test)) / len(test)
    print(f"top-1 alpha {sum(b == 'alpha' for b in before) / len(test):.2f} -> {alpha:.2f}; gold {gold:.2f}")
    assert alpha >= 0.8 > 0.2 >= gold  # it follows the custom metric, not the task's Eval
    best = optimizer.result.history[optimizer.result.best_epoch]
    assert best["score"] > best["accuracy"]  # the checkpoint was chosen by the metric's mean


@pytest.mark.parametrize("bad", [lambda e, p, trace=None: "good", lambda e, p, trace=None: 1 / 0])
@pytest.mark.parametrize("name", ["ropg-rl", "ropg-kd", "rspg", "set-pl"])
def test_a_metric_of_the_wrong_shape_is_one_line_before_any_reader_call(
    name, bad, shown_program, scripted_lm, tmp_path
):
    calls = []

    def reply(messages):
        calls.append(1)
        return "alpha"

    examples = make_examples(4)
    common = {"output_dir": tmp_path / "run", "feedback_cache": tmp_path / "fb.sqlite", "progress": False}
    optimizer, program = {
        "ropg-rl": lambda: (ROPG_RL(config=ROPGConfig(**common), metric=bad), shown_program(reply)),
        "ropg-kd": lambda: (ROPG_KD(config=ROPGKDConfig(**common), metric=bad), shown_program(reply)),
        "set-pl": lambda: (SetPL(config=SetPLConfig(**common), metric=bad), shown_program(reply)),
        "rspg": lambda: (
            RSPG(config=RSPGConfig(**common), metric=bad),
            selector_program(scripted_lm(reply), "pre"),
        ),
    }[name]()
    with pytest.raises(MetricError, match="example '0'") as error:
        optimizer.compile(program, trainset=examples, valset=examples)
    message = str(error.value)
    assert "\n" not in message and ("returned 'good'" in message or "ZeroDivisionError" in message)
    assert calls == []


def test_a_metric_failing_on_one_example_names_it_and_loses_no_reader_call(shown_program, tmp_path):
    calls = []

    def counted(messages):
        calls.append(1)
        return repeat_label(messages)

    def fails_on_five(example, prediction, trace=None):
        if example.id == "5":
            raise KeyError("rating")
        return wants_alpha(example, prediction)

    train, val = make_examples(8, seed=1), make_examples(2, seed=2)
    config = ROPGKDConfig(**settings(tmp_path, epochs=1, validation_feedback=False))
    with pytest.raises(MetricError, match=r"failed on example '5' .*KeyError.*answers are cached"):
        ROPG_KD(config=config, metric=fails_on_five).compile(
            shown_program(counted), trainset=train, valset=val
        )
    asked = len(calls)
    assert asked >= 8 * len(train)  # every candidate of every training question was answered
    optimizer = ROPG_KD(config=config, metric=wants_alpha)
    optimizer.compile(shown_program(counted), trainset=train, valset=val)
    assert optimizer.feedback_cost[0] == 0  # the training feedback all came from the cache

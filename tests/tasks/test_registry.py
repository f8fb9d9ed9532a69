"""The task registry: every LaMP task by name and alias, and a user's own task registered."""

from __future__ import annotations

import dataclasses

import dspy
import pytest

from persona_rag.errors import UnknownTaskError
from persona_rag.tasks import TaskSpec, get_task, register_task
from persona_rag.tasks import registry as task_registry
from tests.tasks.inputs import LAMP_NAMES, TOK, words


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the task registry, restored after the test."""
    monkeypatch.setattr(task_registry, "TASKS", dict(task_registry.TASKS))
    return task_registry.TASKS


@pytest.mark.parametrize("name", LAMP_NAMES)
def test_every_lamp_task_is_registered(name):
    spec = get_task(name)
    assert spec.name == name
    assert get_task(spec) is spec


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("LaMP_3", "LaMP-3"),
        ("lamp3", "LaMP-3"),
        ("LAMP-3", "LaMP-3"),
        ("lamp 3", "LaMP-3"),
        ("product-rating", "LaMP-3"),
        ("LaMP_1", "LaMP-1"),
        ("LaMP_2", "LaMP-2"),
        ("LaMP-2M", "LaMP-2"),
        ("lamp_2n", "LaMP-2N"),
        ("LaMP_7", "LaMP-7"),
        ("tweet-paraphrasing", "LaMP-7"),
    ],
)
def test_aliases(alias, name):
    assert get_task(alias) is get_task(name)


def test_unknown_task_lists_known_tasks():
    with pytest.raises(UnknownTaskError) as info:
        get_task("LaMP-9")
    message = str(info.value)
    assert "'LaMP-9'" in message
    for name in LAMP_NAMES:
        assert name in message
    assert isinstance(info.value, KeyError)  # callers catching KeyError still work
    assert not message.startswith('"')  # not KeyError's quoted repr


def test_user_defined_task_end_to_end(registry):
    spec = TaskSpec(
        name="Cuisine",
        aliases=("cuisine-tagging",),
        kind="classification",
        profile_fields=("dish", "cuisine"),
        document_template="{dish}",
        entry_template='"{dish}" is {cuisine}',
        truncate_field="dish",
        combine=lambda input, entries: f"Past dishes: {entries}\n{input}",
        query_marker="dish:",
        labels=("italian", "thai", "mexican"),
    )
    assert register_task(spec) is spec
    assert get_task("cuisine") is spec and get_task("Cuisine_Tagging") is spec

    input = "Which cuisine is this dish? dish: green curry with rice"
    assert spec.query(input) == "green curry with rice"
    profile = [
        {"id": "d1", "dish": "pad thai", "cuisine": "thai", "date": "2021-01-01"},
        {"id": "d2", "dish": "lasagna", "cuisine": "italian"},
    ]
    docs = spec.documents(profile)
    assert [d.text for d in docs] == ["pad thai date: 2021-01-01", "lasagna"]
    assert (
        spec.prompt(input, profile) == f'Past dishes: "pad thai" is thai, and "lasagna" is italian\n{input}'
    )
    cut = spec.prompt(
        input, [{"id": "d3", "dish": words("w", 100), "cuisine": "thai"}], tokenizer=TOK, max_tokens=30
    )
    assert cut.startswith('Past dishes: "w0') and len(TOK.encode(cut)) <= 30

    assert spec.parse("I'd say Thai.", input) == "I'd say Thai."  # LaMP's reading: not a label
    assert dataclasses.replace(spec, parsing="lenient").parse("I'd say Thai.", input) == "thai"
    assert spec.evaluate(["thai", "italian"], ["thai", "mexican"], [input, input]) == pytest.approx(
        {"accuracy": 0.5, "F1": (1 + 0 + 0) / 3}
    )
    example = dspy.Example(input=input, profile=profile, output="thai").with_inputs("input", "profile")
    assert spec.metric(example, dspy.Prediction(output=" thai ")) == 1.0
    assert spec.metric(example, dspy.Prediction(output="Thai cuisine")) == 0.0
    assert spec.metric(example, dspy.Prediction(output="mexican")) == 0.0


def test_register_task_refuses_to_shadow_a_name(registry):
    clash = TaskSpec(
        name="Mine",
        aliases=("LaMP_3",),
        kind="generation",
        profile_fields=("text",),
        document_template="{text}",
        entry_template="{text}",
    )
    with pytest.raises(ValueError, match="already registered"):
        register_task(clash)
    register_task(clash, overwrite=True)
    assert get_task("LaMP_3") is clash


def test_registry_fixture_restored():
    assert get_task("LaMP_3").name == "LaMP-3"
    with pytest.raises(UnknownTaskError):
        get_task("Cuisine")

"""TaskSpec: its checks, the query, the profile's documents, reading answers and scoring them."""

from __future__ import annotations

import dataclasses

import dspy
import pytest

from persona_rag import tasks
from persona_rag.errors import DataError
from persona_rag.tasks import Document, TaskSpec, get_task
from tests.tasks.inputs import RATING_INPUT, TAGGING_INPUT, lenient


def test_taskspec_validation():
    with pytest.raises(ValueError, match="needs labels"):
        TaskSpec(
            name="x",
            kind="classification",
            profile_fields=("a",),
            document_template="{a}",
            entry_template="{a}",
        )
    with pytest.raises(ValueError, match="truncate_field"):
        TaskSpec(
            name="x",
            kind="generation",
            profile_fields=("a",),
            document_template="{a}",
            entry_template="{a}",
            truncate_field="b",
        )


def test_query_without_marker_or_colon_is_the_whole_input():
    assert get_task("LaMP-4").query("  just some text  ") == "just some text"
    assert get_task("LaMP-1").query("no references here") == "no references here"


def test_documents_text_id_date_and_item():
    profile = [
        {"id": 7, "title": "Graph kernels", "abstract": "We compare kernels.", "date": "2019"},
        {"id": "8", "title": "Ranking", "abstract": "Neural ranking."},
    ]
    docs = get_task("LaMP-1").documents(profile)
    assert docs == [
        Document(
            index=0, id="7", text="Graph kernels We compare kernels. date: 2019", date="2019", item=profile[0]
        ),
        Document(index=1, id="8", text="Ranking Neural ranking.", date=None, item=profile[1]),
    ]
    assert docs[0].item is profile[0]


def test_documents_accept_numeric_fields():
    docs = get_task("LaMP-3").documents([{"id": "1", "text": "ok", "score": 4}])
    assert docs[0].text == "ok"


def test_documents_missing_field_names_item_and_field():
    profile = [{"id": "a1", "text": "fine", "score": "4"}, {"id": "a2", "text": "no score"}]
    with pytest.raises(DataError) as info:
        get_task("LaMP-3").documents(profile, where="question 'q9'")
    error = info.value
    assert (error.item_id, error.field) == ("a2", "score")
    assert "'a2'" in str(error) and "'score'" in str(error) and "question 'q9'" in str(error)
    assert "LaMP-3" in str(error)


def test_documents_mistyped_field():
    with pytest.raises(DataError, match="must be text") as info:
        get_task("LaMP-7").documents([{"id": "t1", "text": ["a", "list"]}])
    assert info.value.field == "text"


def test_documents_missing_id():
    with pytest.raises(DataError, match="without an 'id'") as info:
        get_task("LaMP-7").documents([{"text": "hello"}])
    assert info.value.field == "id"


def test_documents_duplicate_ids():
    with pytest.raises(DataError, match="duplicate profile item id '1'") as info:
        get_task("LaMP-7").documents([{"id": "1", "text": "a"}, {"id": 1, "text": "b"}])
    assert info.value.item_id == "1"


def test_documents_empty_profile():
    assert get_task("LaMP-3").documents([]) == []


# ----------------------------------------------------------------------------------- parsing
def test_default_parsing_is_lamps():
    assert {spec.parsing for spec in tasks.TASKS.values()} == {"lamp"}
    assert "LaMP" in get_task("LaMP-3").parsing_note
    assert "not comparable" in lenient("LaMP-3").parsing_note
    with pytest.raises(ValueError, match="parsing must be one of"):
        dataclasses.replace(get_task("LaMP-3"), parsing="loose")


def test_label_inside_a_sentence_is_wrong_under_lamp_parsing():
    example = dspy.Example(input=TAGGING_INPUT, output="dark comedy").with_inputs("input")
    sentence = dspy.Prediction(output="I would say dark comedy.")
    assert get_task("LaMP-2").metric(example, sentence) == 0.0
    assert lenient("LaMP-2").metric(example, sentence) == 1.0
    assert get_task("LaMP-2").metric(example, dspy.Prediction(output=" dark comedy ")) == 1.0
    spec = get_task("LaMP-2")
    outputs = [spec.parse(t, TAGGING_INPUT) for t in ("I would say dark comedy.", "dark comedy")]
    assert spec.evaluate(outputs, ["dark comedy"] * 2, [TAGGING_INPUT] * 2)["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("text", "lamp", "lenient_rating"),
    [
        ("4", "4", "4"),
        (" 2 ", "2", "2"),
        ("4.5", "4.5", "4.5"),
        ("4.0", "4.0", "4"),
        ("I think 4.", "I think 4.", "4"),
        ("1. 1", "1. 1", "1"),
        ("seven", "seven", "seven"),
        ("6", "6", "6"),
        ("", "", ""),
    ],
)
def test_parse_ratings(text, lamp, lenient_rating):
    assert get_task("LaMP-3").parse(text) == lamp
    assert lenient("LaMP-3").parse(text) == lenient_rating


def test_rating_answer_1_dot_1_is_unparseable_under_lamp_parsing():
    # "1. 1" (the 135M model's favourite free-generation answer) is not a number for LaMP: it
    # becomes the farther end of the scale (gold 2 -> 5: error 3); leniently it is 1 (error 1).
    spec = get_task("LaMP-3")
    assert spec.evaluate([spec.parse("1. 1")], ["2"], [RATING_INPUT])["MAE"] == 3.0
    loose = lenient("LaMP-3")
    assert loose.evaluate([loose.parse("1. 1")], ["2"], [RATING_INPUT])["MAE"] == 1.0


def test_generation_rouge_is_unstemmed_by_default():
    # "Cats running" vs "the cat runs": no shared token unstemmed; stemmed F = 0.8 (see test_metrics).
    assert get_task("LaMP-4").evaluate(["Cats running"], ["the cat runs"], [""])["rouge-1"] == 0.0
    assert get_task("LaMP-4").eval("the cat runs", "Cats running") == 0.0
    assert lenient("LaMP-4").evaluate(["Cats running"], ["the cat runs"], [""])["rouge-1"] == pytest.approx(
        0.8
    )
    assert lenient("LaMP-4").eval("the cat runs", "Cats running") == pytest.approx(0.8)


def test_parse_generation_strips():
    assert get_task("LaMP-4").parse("  A headline \n") == "A headline"
    assert get_task("LaMP-4").parse(None) == ""  # type: ignore[arg-type]


# --------------------------------------------------------------------------- evaluate / eval
def test_evaluate_per_kind():
    rating = get_task("LaMP-3").evaluate(["4", "seven"], ["5", "2"], ["", ""])
    assert rating == pytest.approx({"MAE": (1 + 3) / 2, "RMSE": ((1 + 9) / 2) ** 0.5})
    inputs = ["tags: [a, b] description: x", "tags: [b, c] description: y"]
    classification = get_task("LaMP-2").evaluate(["a", "a"], ["a", "c"], inputs)
    # labels = union {a, b, c}: a: tp1 fp1 -> 2/3; b: 0; c: fn1 -> 0
    assert classification == pytest.approx({"accuracy": 0.5, "F1": (2 / 3) / 3})
    generation = get_task("LaMP-4").evaluate(["the cat lay on the mat"], ["the cat sat on the mat"], [""])
    assert generation == pytest.approx({"rouge-1": 5 / 6, "rouge-L": 5 / 6})


def test_eval_per_kind():
    assert get_task("LaMP-3").eval("5", "4") == pytest.approx(0.75)
    assert get_task("LaMP-2").eval("comedy", "comedy") == 1.0
    assert get_task("LaMP-1").eval("[1]", "[2]") == 0.0
    assert get_task("LaMP-7").eval("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)


def test_metric_parses_the_prediction():
    example = dspy.Example(input=TAGGING_INPUT, output="dark comedy").with_inputs("input")
    assert get_task("LaMP-2").metric(example, dspy.Prediction(output="dark comedy\n")) == 1.0
    assert lenient("LaMP-2").metric(example, dspy.Prediction(output="Probably Dark Comedy.")) == 1.0
    example = dspy.Example(input=RATING_INPUT, output="3").with_inputs("input")
    assert get_task("LaMP-3").metric(example, dspy.Prediction(output=" 1 ")) == 0.0
    assert get_task("LaMP-3").metric(example, dspy.Prediction(output=" 3 ")) == 1.0
    assert lenient("LaMP-3").metric(example, dspy.Prediction(output="3 stars")) == 1.0

"""Reading LaMP-format directories: records, dspy.Examples, task detection and located errors."""

from __future__ import annotations

import dataclasses
import logging
import re

import dspy
import pytest

from persona_rag.data import LampSplit, Question, load_lamp, read_questions
from persona_rag.data.lamp import KNOWN_DEFECTS
from persona_rag.errors import DataError, UnknownTaskError
from persona_rag.tasks import TaskSpec, get_task


def item(item_id: str, text: str = "nice", score: str | int = "4", date: str | None = "2020-01-01") -> dict:
    out = {"id": item_id, "text": text, "score": score}
    if date is not None:
        out["date"] = date
    return out


@pytest.fixture
def rating_dir(tmp_path, write_split, rating_question):
    """A LaMP-3 directory: train and dev with outputs, test without."""
    train = [
        rating_question("q1", "good", [item("p1"), item("p2", score=2, date=None)]),
        rating_question("q2", "bad", [item("p3")], user_id="u2"),
    ]
    write_split(tmp_path, "train", train, golds=[{"id": "q1", "output": "4"}, {"id": "q2", "output": 1}])
    dev = [rating_question("q3", "fine", [item("p1"), item("p4")]), rating_question("q4", "meh", [])]
    write_split(tmp_path, "dev", dev, golds=[{"id": "q3", "output": "5"}, {"id": "q4", "output": "2"}])
    write_split(tmp_path, "test", [rating_question("q5", "hmm", [item("p9")])], task=None)
    return tmp_path


# -------------------------------------------------------------------------------- loading
def test_load_records_and_golds(rating_dir):
    split = load_lamp(rating_dir, "train")
    assert isinstance(split, LampSplit)
    assert split.task is get_task("LaMP-3")
    assert split.split == "train" and len(split) == 2
    assert split.path == rating_dir / "train_questions.json"
    assert split.golds == {"q1": "4", "q2": "1"}  # numbers are read as text
    first = next(iter(split))
    assert isinstance(first, Question)
    assert (first.id, first.user_id) == ("q1", "u1")
    assert first.input.endswith("review: good")
    assert [p.id for p in first.profile] == ["p1", "p2"]
    assert first.profile[0].model_dump()["text"] == "nice"  # task fields kept as extras


def test_examples_have_inputs_and_output(rating_dir):
    examples = load_lamp(rating_dir, "train").examples()
    assert len(examples) == 2
    example = examples[0]
    assert isinstance(example, dspy.Example)
    assert set(example.inputs().keys()) == {"input", "profile", "user_id"}
    assert set(example.labels().keys()) == {"id", "output"}
    assert example.output == "4" and example.id == "q1" and example.user_id == "u1"
    assert example.profile == [
        {"id": "p1", "date": "2020-01-01", "text": "nice", "score": "4"},
        {"id": "p2", "text": "nice", "score": 2},  # no date: the key is left out, not None
    ]
    assert all(isinstance(p, dict) for p in example.profile)
    # The profile is usable by the task as is.
    assert [d.text for d in get_task("LaMP-3").documents(example.profile)] == [
        "nice date: 2020-01-01",
        "nice",
    ]


def test_empty_profile_is_allowed(rating_dir):
    examples = load_lamp(rating_dir, "dev").examples()
    assert examples[1].profile == [] and examples[1].output == "2"


def test_limit(rating_dir):
    split = load_lamp(rating_dir, "dev", limit=1)
    assert [q.id for q in split] == ["q3"]
    assert len(split.examples()) == 1


def test_task_detected_from_sibling_split_for_test(rating_dir):
    split = load_lamp(rating_dir, "test")
    assert split.task is get_task("LaMP-3")
    assert split.golds is None
    (example,) = split.examples()
    assert "output" not in example
    assert set(example.inputs().keys()) == {"input", "profile", "user_id"}


def test_task_argument_wins(rating_dir, caplog):
    spec = TaskSpec(
        name="MyRating",
        kind="rating",
        profile_fields=("text",),
        document_template="{text}",
        entry_template="{text}",
    )
    with caplog.at_level("WARNING"):
        split = load_lamp(rating_dir, "dev", task=spec)
    assert split.task is spec
    assert "using MyRating" in caplog.text
    assert load_lamp(rating_dir, "test", task="LaMP_3").task is get_task("LaMP-3")


def test_no_outputs_anywhere_needs_a_task(tmp_path, write_split, rating_question):
    write_split(tmp_path, "test", [rating_question("q1", "x", [])], task=None)
    with pytest.raises(DataError, match="names the task; give it with --task"):
        load_lamp(tmp_path, "test")
    assert len(load_lamp(tmp_path, "test", task="LaMP-3")) == 1


@pytest.mark.parametrize("task", [None, "LaMP-3"])
def test_a_missing_data_folder_is_not_found(tmp_path, task):
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'nope'))}: data folder not found$"):
        load_lamp(tmp_path / "nope", "dev", task=task)


@pytest.mark.parametrize("given", [None, "LaMP-3"])
def test_unknown_task_in_outputs_names_the_file(tmp_path, write_split, rating_question, given):
    write_split(tmp_path, "dev", [rating_question("q1", "x", [])], task="LaMP_99")
    outputs = re.escape(str(tmp_path / "dev_outputs.json"))
    with pytest.raises(UnknownTaskError, match=rf"^{outputs}: unknown task 'LaMP_99'"):
        load_lamp(tmp_path, "dev", task=given)


def test_user_task_validates_its_own_fields(tmp_path, write_split):
    spec = TaskSpec(
        name="Notes",
        kind="generation",
        profile_fields=("note",),
        document_template="{note}",
        entry_template="{note}",
    )
    questions = [{"id": "n1", "input": "Write: x", "profile": [{"id": "a", "note": "hi"}]}]
    write_split(tmp_path, "dev", questions, task=None)
    split = load_lamp(tmp_path, "dev", task=spec)
    assert split.examples()[0].profile == [{"id": "a", "note": "hi"}]
    write_split(
        tmp_path, "dev", [{"id": "n1", "input": "x", "profile": [{"id": "a", "text": "hi"}]}], task=None
    )
    with pytest.raises(DataError, match="'note'"):
        load_lamp(tmp_path, "dev", task=spec)


def test_read_questions_without_task_skips_field_checks(tmp_path, write_split):
    path = write_split(
        tmp_path, "dev", [{"id": 1, "input": "x", "profile": [{"id": 2, "anything": 1}]}], task=None
    )
    (question,) = read_questions(path)
    assert question.id == "1" and question.profile[0].id == "2"


# --------------------------------------------------------------------------- located errors
def load_error(tmp_path, write_split, questions, golds=None, task="LaMP_3") -> DataError:
    write_split(tmp_path, "dev", questions, task=task, golds=golds)
    with pytest.raises(DataError) as info:
        load_lamp(tmp_path, "dev")
    return info.value


def test_missing_file(tmp_path, write_split):
    (tmp_path / "dev_outputs.json").write_text('{"task": "LaMP_3", "golds": []}')
    with pytest.raises(DataError, match="file not found") as info:
        load_lamp(tmp_path, "dev")
    assert info.value.file == str(tmp_path / "dev_questions.json")


def test_malformed_json_names_line_and_column(tmp_path, write_split):
    (tmp_path / "dev_outputs.json").write_text('{"task": "LaMP_3", "golds": []}')
    write_split(tmp_path, "dev", '[\n  {"id": "q1",\n   "input": }\n]', task=None)
    with pytest.raises(DataError) as info:
        load_lamp(tmp_path, "dev")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "dev_questions.json"))
    assert "line 3 column 13" in message


def test_malformed_outputs_file(tmp_path, write_split, rating_question):
    write_split(tmp_path, "dev", [rating_question("q1", "x", [])], task=None)
    (tmp_path / "dev_outputs.json").write_text('{"task": "LaMP_3", "golds": [')
    with pytest.raises(DataError, match="malformed JSON") as info:
        load_lamp(tmp_path, "dev")
    assert info.value.file == str(tmp_path / "dev_outputs.json")


def test_missing_input(tmp_path, write_split):
    error = load_error(tmp_path, write_split, [{"id": "q7", "profile": []}])
    assert (error.file, error.item_id, error.field) == (str(tmp_path / "dev_questions.json"), "q7", "input")
    assert "question 'q7'" in str(error) and "'input'" in str(error)


def test_profile_item_missing_id(tmp_path, write_split, rating_question):
    error = load_error(
        tmp_path, write_split, [rating_question("q1", "x", [item("p1"), {"text": "t", "score": "3"}])]
    )
    assert error.field == "id"
    assert "question 'q1', profile item #1, field 'id'" in str(error)
    assert str(error).startswith(str(tmp_path / "dev_questions.json"))


def test_profile_is_a_string(tmp_path, write_split):
    error = load_error(tmp_path, write_split, [{"id": "q2", "input": "x", "profile": "oops"}])
    assert (error.item_id, error.field) == ("q2", "profile")
    assert "question 'q2'" in str(error) and "valid list" in str(error)


def test_profile_item_missing_task_field(tmp_path, write_split, rating_question):
    # A LaMP-3 profile item without "score".
    error = load_error(
        tmp_path, write_split, [rating_question("q1", "x", [item("p1"), {"id": "p2", "text": "t"}])]
    )
    assert (error.file, error.item_id, error.field) == (str(tmp_path / "dev_questions.json"), "p2", "score")
    assert "question 'q1'" in str(error) and "'p2'" in str(error) and "'score'" in str(error)


def test_duplicate_profile_item_ids(tmp_path, write_split, rating_question):
    error = load_error(tmp_path, write_split, [rating_question("q1", "x", [item("p1"), item("p1")])])
    assert (error.item_id, error.field) == ("p1", "id")
    assert "question 'q1'" in str(error) and "duplicate profile item id 'p1'" in str(error)


def test_duplicate_question_ids(tmp_path, write_split, rating_question):
    questions = [rating_question("q1", "x", []), rating_question("q1", "y", [])]
    error = load_error(tmp_path, write_split, questions, golds=[{"id": "q1", "output": "3"}])
    assert (error.item_id, error.field) == ("q1", "id")
    assert "duplicate question id 'q1'" in str(error)
    assert error.file == str(tmp_path / "dev_questions.json")


def test_missing_gold(tmp_path, write_split, rating_question):
    questions = [rating_question("q1", "x", []), rating_question("q2", "y", [])]
    error = load_error(tmp_path, write_split, questions, golds=[{"id": "q1", "output": "3"}])
    assert (error.file, error.item_id, error.field) == (str(tmp_path / "dev_outputs.json"), "q2", "output")
    assert "q2" in str(error)


def test_gold_missing_output_field(tmp_path, write_split, rating_question):
    error = load_error(tmp_path, write_split, [rating_question("q1", "x", [])], golds=[{"id": "q1"}])
    assert (error.item_id, error.field) == ("q1", "output")
    assert "gold 'q1'" in str(error)


# ------------------------------------------------------------------------------ gold checks
OUTPUTS = "dev_outputs.json"


@pytest.mark.parametrize("gold", ["banana", "9", "0", "", "nan", "1. 1"])
def test_rating_gold_off_the_scale_is_an_error(tmp_path, write_split, rating_question, gold):
    questions = [rating_question("q1", "x", []), rating_question("q2", "y", [])]
    golds = [{"id": "q1", "output": "4"}, {"id": "q2", "output": gold}]
    error = load_error(tmp_path, write_split, questions, golds=golds)
    assert (error.file, error.item_id, error.field) == (str(tmp_path / OUTPUTS), "q2", "output")
    assert f"gold 'q2': field 'output' is {gold!r}, not a rating from 1 to 5" in str(error)


def test_rating_gold_on_the_scale_is_accepted(tmp_path, write_split, rating_question):
    questions = [rating_question("q1", "x", []), rating_question("q2", "y", [])]
    write_split(
        tmp_path, "dev", questions, golds=[{"id": "q1", "output": 5}, {"id": "q2", "output": " 1.0 "}]
    )
    assert load_lamp(tmp_path, "dev").golds == {"q1": "5", "q2": " 1.0 "}


def test_duplicate_gold_id_is_an_error(tmp_path, write_split, rating_question):
    golds = [{"id": "q1", "output": "4"}, {"id": "q1", "output": "2"}]
    error = load_error(tmp_path, write_split, [rating_question("q1", "x", [])], golds=golds)
    assert (error.file, error.item_id, error.field) == (str(tmp_path / OUTPUTS), "q1", "id")
    assert "duplicate gold id 'q1'" in str(error)


def test_gold_without_a_question_is_an_error(tmp_path, write_split, rating_question):
    golds = [{"id": "q1", "output": "4"}, {"id": "q9", "output": "2"}, {"id": "q8", "output": "2"}]
    error = load_error(tmp_path, write_split, [rating_question("q1", "x", [])], golds=golds)
    assert (error.file, error.item_id, error.field) == (str(tmp_path / OUTPUTS), "q9", "id")
    assert "gold 'q9' has no question in dev_questions.json (nor have 1 more)" in str(error)


def test_limit_does_not_hide_a_bad_gold(tmp_path, write_split, rating_question):
    questions = [rating_question("q1", "x", []), rating_question("q2", "y", [])]
    write_split(tmp_path, "dev", questions, golds=[{"id": "q1", "output": "4"}, {"id": "q2", "output": "9"}])
    with pytest.raises(DataError, match="'9', not a rating"):
        load_lamp(tmp_path, "dev", limit=1)
    with pytest.raises(ValueError, match="at least 1"):
        load_lamp(tmp_path, "dev", limit=-34)


@pytest.mark.parametrize("gold", ["", "   "])
def test_an_empty_text_to_generate_is_an_error(tmp_path, write_split, gold):
    """ROUGE against an empty gold is 0 for every answer and log p(gold) has no token to score:
    training on it would learn nothing, so the file is refused naming the question."""
    questions = [{"id": "c1", "input": "Generate a subject for the following email: hi", "profile": []}]
    error = load_error(tmp_path, write_split, questions, golds=[{"id": "c1", "output": gold}], task="LaMP_6")
    assert (error.file, error.item_id, error.field) == (str(tmp_path / OUTPUTS), "c1", "output")
    assert "field 'output' is empty" in str(error)


def test_a_split_without_golds_says_which_file_training_needs(rating_dir):
    split = load_lamp(rating_dir, "test", task="LaMP-3")
    with pytest.raises(
        DataError, match=r"training needs the gold outputs, and there is no test_outputs\.json"
    ) as info:
        split.require_golds("training")
    assert info.value.file == str(rating_dir / "test_outputs.json")
    assert load_lamp(rating_dir, "train").require_golds("training").golds


def tagging_question(qid: str, tags: str = "comedy, drama") -> dict:
    return {"id": qid, "input": f"Which tag? tags: [{tags}] description: a film", "profile": []}


def test_label_gold_outside_the_inputs_labels_is_an_error(tmp_path, write_split):
    questions = [tagging_question("m1"), tagging_question("m2")]
    golds = [{"id": "m1", "output": "drama"}, {"id": "m2", "output": "Comedy"}]  # LaMP: case-sensitive
    error = load_error(tmp_path, write_split, questions, golds=golds, task="LaMP_2")
    assert (error.file, error.item_id, error.field) == (str(tmp_path / OUTPUTS), "m2", "output")
    assert "field 'output' is 'Comedy', not one of the input's labels (comedy, drama)" in str(error)
    citation = {"id": "c1", "input": 'which reference? [1]: "a" [2]: "b"', "profile": []}
    error = load_error(
        tmp_path, write_split, [citation], golds=[{"id": "c1", "output": "[3]"}], task="LaMP_1"
    )
    assert error.item_id == "c1" and "'[3]', not one of the input's labels ([1], [2])" in str(error)


@pytest.mark.parametrize("score", ["7", "0", "banana", -1, "4 stars"])
def test_rating_profile_score_off_the_scale_is_an_error(tmp_path, write_split, rating_question, score):
    error = load_error(
        tmp_path, write_split, [rating_question("q1", "x", [item("p1"), item("p2", score=score)])]
    )
    assert (error.file, error.item_id, error.field) == (str(tmp_path / "dev_questions.json"), "p2", "score")
    assert f"question 'q1': profile item 'p2' field 'score' is {score!r}, not a rating from 1 to 5" in str(
        error
    )


def test_several_malformed_questions_are_counted(tmp_path, write_split, rating_question):
    questions = [rating_question(f"q{i}", "x", []) for i in range(3)]
    golds = [{"id": f"q{i}", "output": "banana"} for i in range(3)]
    error = load_error(tmp_path, write_split, questions, golds=golds)
    assert error.item_id == "q0" and "(and 2 more malformed question(s))" in str(error)


def test_file_without_questions_is_an_error(tmp_path, write_split):
    error = load_error(tmp_path, write_split, [], golds=[])
    assert "holds no questions" in str(error)


# --------------------------------------------------------- the known malformed LaMP-2 dev question
def official_tagging_dev(tmp_path, write_split, defect: dict) -> None:
    """A synthetic LaMP-2 dev split whose question "110" carries ``defect``."""
    questions = [tagging_question("109"), {**tagging_question("110"), **defect.get("question", {})}]
    questions.append(tagging_question("111"))
    golds = [{"id": q["id"], "output": "drama"} for q in questions]
    golds = [g if g["id"] != "110" else {**g, **defect.get("gold", {})} for g in golds]
    write_split(tmp_path, "dev", questions, golds=golds, task="LaMP_2")


@pytest.mark.parametrize(
    "defect",
    [
        {"gold": {"output": "not a tag"}},  # a gold outside the input's tags
        {"question": {"profile": [{"id": "p1", "description": "a film"}]}},  # an item without its tag
        {"question": {"profile": "oops"}},  # a profile that is not a list
        {"question": {"input": None}},  # no input
    ],
    ids=["gold-not-a-tag", "item-without-tag", "profile-not-a-list", "no-input"],
)
def test_known_malformed_lamp2_dev_question_is_skipped_with_a_warning(tmp_path, write_split, caplog, defect):
    assert ("LaMP-2", "dev", "110") in KNOWN_DEFECTS
    official_tagging_dev(tmp_path, write_split, defect)
    with caplog.at_level(logging.WARNING):
        split = load_lamp(tmp_path, "dev")
    assert [q.id for q in split] == ["109", "111"]
    assert [ex.id for ex in split.examples()] == ["109", "111"]
    assert "skipping question '110'" in caplog.text and "LaMP-2 (movie tagging) dev set" in caplog.text


def test_known_defect_is_skipped_only_in_its_own_split_and_task(tmp_path, write_split):
    defect = {"gold": {"output": "not a tag"}}
    official_tagging_dev(tmp_path, write_split, defect)
    for name in ("dev_questions.json", "dev_outputs.json"):  # the same defect in the train split
        (tmp_path / name).rename(tmp_path / name.replace("dev", "train"))
    with pytest.raises(DataError, match="'not a tag', not one of") as info:
        load_lamp(tmp_path, "train")
    assert info.value.item_id == "110"


def test_a_well_formed_question_110_is_kept(tmp_path, write_split):
    official_tagging_dev(tmp_path, write_split, {})
    assert [q.id for q in load_lamp(tmp_path, "dev")] == ["109", "110", "111"]


# ------------------------------------------------------------------------------- real data
def test_real_movielens_rating_dev(lamp_real):
    split = load_lamp(lamp_real / "movielens_rating", "dev")
    spec = get_task("LaMP-3")
    assert split.task is spec and len(split) == 500
    examples = split.examples()
    assert all(example.output in {"1", "2", "3", "4", "5"} for example in examples)
    assert len({example.id for example in examples}) == 500
    example = examples[0]
    assert set(example.inputs().keys()) == {"input", "profile", "user_id"}
    query = spec.query(example.input)
    assert query == example.input.split("movie:", 1)[1].strip()
    assert "just answer" not in query
    docs = spec.documents(example.profile)
    assert len(docs) == len(example.profile) > 0 and all(" date: " in d.text for d in docs)


def test_real_movielens_tagging_dev(lamp_real):
    split = load_lamp(lamp_real / "movielens_tagging", "dev")
    spec = get_task("LaMP-2")
    assert split.task is spec and len(split) == 32
    for example in split.examples():
        labels = spec.labels_for(example.input)
        assert len(labels) == 15 and "atmospheric" in labels  # the dataset's own tag list
        assert example.output in labels
        lenient = dataclasses.replace(spec, parsing="lenient")
        assert lenient.parse(example.output.upper(), example.input) == example.output
        assert spec.documents(example.profile)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'[{"id": "q1", "input": "review: fine", "prof', "malformed JSON at line 1"),  # cut mid-write
        (b'[{"id": "q1", "input": "caf\xe9", "profile": []}]', "not UTF-8 text"),  # latin-1 bytes
    ],
)
def test_a_truncated_or_non_utf8_file_is_one_error_naming_it(tmp_path, write_split, raw, message):
    write_split(tmp_path, "dev", [{"id": "q1", "input": "x", "profile": []}])
    (tmp_path / "dev_questions.json").write_bytes(raw)
    with pytest.raises(DataError, match=rf"dev_questions\.json: {message}"):
        load_lamp(tmp_path, "dev")

"""PersonalizedRAG: retrieval into the prompt, store-backed calls, DSPy composition, save/load."""

from __future__ import annotations

import json

import dspy
import pytest

from persona_rag import (
    BM25Retriever,
    DenseRetriever,
    Generator,
    PersonalizedRAG,
    ProfileStore,
    RecencyRetriever,
)
from persona_rag.errors import ConfigError, GenerationError, StateError
from persona_rag.evaluation import evaluate_program

QUESTION = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
    "without further explanation. review: a slow western with a great score"
)
PROFILE = [
    {"id": "a", "date": "2020-01-01", "text": "a romantic comedy in Paris", "score": "2"},
    {"id": "b", "date": "2020-02-01", "text": "a western with a slow start and a great score", "score": "5"},
    {"id": "c", "date": "2020-03-01", "text": "a horror film in a cabin", "score": "1"},
]


@pytest.fixture
def make_program(scripted_lm):
    """A LaMP-3 program whose LM always answers "4"."""

    def make(**kwargs) -> PersonalizedRAG:
        kwargs.setdefault("generator", Generator(lm=scripted_lm("4")))
        return PersonalizedRAG(task="LaMP-3", **kwargs)

    return make


def test_forward_retrieves_k_items_into_the_prompt(make_program):
    program = make_program(retriever=BM25Retriever(), k=2)
    prediction = program(input=QUESTION, profile=PROFILE)
    assert prediction.output == "4"
    assert prediction.ids[0] == "b" and len(prediction.ids) == 2
    assert prediction.indices[0] == 1
    assert prediction.scores == sorted(prediction.scores, reverse=True)
    assert prediction.prompt.startswith('5 is the score for "a western with a slow start and a great score"')
    assert prediction.prompt.endswith(QUESTION)


def test_empty_profile_falls_back_to_the_bare_input(make_program):
    prediction = make_program()(input=QUESTION, profile=[])
    assert prediction.prompt == QUESTION and prediction.ids == []


def test_needs_a_profile_or_a_store(make_program):
    with pytest.raises(ValueError, match="profile"):
        make_program()(input=QUESTION)
    with pytest.raises(ValueError, match="no store"):
        make_program()(input=QUESTION, user_id="u1")


def test_user_id_calls_read_the_store(tmp_path, make_program):
    store = ProfileStore(tmp_path / "store", task="LaMP-3")
    store.add("user-1", PROFILE)
    store.add(
        "user-2", [{"id": "z", "date": "2020-01-01", "text": "a western with a slow start", "score": "3"}]
    )
    retriever = DenseRetriever(encoder=store.encoder)
    program = make_program(retriever=retriever, store=store, k=2)
    from_store = program(input=QUESTION, user_id="user-1")
    in_memory = program(input=QUESTION, profile=PROFILE)
    assert from_store.ids == in_memory.ids
    assert "z" not in from_store.ids
    # Non-dense retrievers read the stored profile and run as usual.
    recency = make_program(retriever=RecencyRetriever(), store=store, k=1)
    assert recency(input=QUESTION, user_id="user-1").ids == ["c"]


def test_batch_forward_equals_forward(make_program):
    program = make_program(retriever=BM25Retriever(), k=2)
    single = program(input=QUESTION, profile=PROFILE)
    [batched] = program.batch_forward([QUESTION], [PROFILE])
    assert batched.ids == single.ids and batched.prompt == single.prompt and batched.output == single.output


def test_save_and_load_round_trip(tmp_path, scripted_lm):
    # The LM comes from dspy.context, as usual in DSPy, so the saved state holds no LM.
    program = PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(method="robertson", k1=1.2), k=3)
    program.generator.predict.signature = program.generator.predict.signature.with_instructions("Rate as me.")
    path = tmp_path / "program.json"
    program.save(str(path))

    fresh = PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever())
    fresh.load(str(path))
    assert fresh.task.name == "LaMP-3" and fresh.k == 3
    assert fresh.retriever.config() == {"method": "robertson", "k1": 1.2, "b": 0.75}
    assert fresh.generator.predict.signature.instructions == "Rate as me."
    with dspy.context(lm=scripted_lm("4")):
        assert fresh(input=QUESTION, profile=PROFILE).ids == program(input=QUESTION, profile=PROFILE).ids

    wrong = PersonalizedRAG(task="LaMP-3", retriever=DenseRetriever())
    with pytest.raises(ValueError, match="bm25"):
        wrong.load(str(path))


def test_a_saved_program_never_changes_the_task_naming_both(tmp_path):
    path = tmp_path / "program.json"
    PersonalizedRAG(task="LaMP-3", k=3).save(str(path))
    lamp2 = PersonalizedRAG(task="LaMP-2", k=2)
    with pytest.raises(StateError, match=r"program\.json: .*a LaMP-3 program .* is for LaMP-2"):
        lamp2.load(str(path))
    assert lamp2.task.name == "LaMP-2" and lamp2.settings.task == "LaMP-2" and lamp2.k == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"k": -5}, "k must be a whole number of at least 1, got -5"),
        ({"k": "4"}, "k must be"),
        ({"max_input_tokens": 0}, "max_input_tokens must be"),
        ({"task": "LaMP-99"}, "unknown task 'LaMP-99'"),
        ({"k": None}, "k must be"),
    ],
)
def test_loaded_settings_pass_the_constructors_checks(tmp_path, edit, message):
    path = tmp_path / "program.json"
    PersonalizedRAG(task="LaMP-3").save(str(path))
    state = json.loads(path.read_text())
    state["settings"].update(edit)
    path.write_text(json.dumps(state))
    fresh = PersonalizedRAG(task="LaMP-3")
    with pytest.raises(StateError, match=rf"program\.json: .*{message}"):
        fresh.load(str(path))
    assert fresh.k == 4


@pytest.mark.parametrize("settings", [{"k": 0}, {"k": -5}, {"k": 2.5}, {"max_input_tokens": -1}])
def test_the_constructor_refuses_settings_that_retrieve_or_fit_nothing(settings):
    with pytest.raises(ConfigError, match="must be a whole number of at least 1"):
        PersonalizedRAG(task="LaMP-3", **settings)


def test_saved_program_keeps_the_local_model_reference(tmp_path):
    from persona_rag.lm import LocalEngine, local_lm

    program = PersonalizedRAG(task="LaMP-3", generator=Generator(lm=local_lm()))
    program.save(str(tmp_path / "p.json"))
    fresh = PersonalizedRAG(task="LaMP-3")
    fresh.load(str(tmp_path / "p.json"))
    engine = fresh.generator.predict.lm.engine
    assert isinstance(engine, LocalEngine) and engine.model == "SmolLM2-135M-Instruct"


class TwoStep(dspy.Module):
    """A larger program: a personalised rating, then an explanation of it."""

    def __init__(self, rag: PersonalizedRAG) -> None:
        super().__init__()
        self.rag = rag
        self.explain = dspy.Predict("rating -> explanation")

    def forward(self, input, profile):
        rating = self.rag(input=input, profile=profile)
        return dspy.Prediction(
            output=rating.output, explanation=self.explain(rating=rating.output).explanation
        )


def test_works_as_a_sub_module_of_a_larger_program(tmp_path, scripted_lm):
    outer = TwoStep(PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), k=2))
    names = [name for name, _ in outer.named_parameters()]
    assert {"rag.settings", "rag.retriever", "rag.generator.predict", "explain"} <= set(names)

    def reply(messages):  # the rating step gets a plain prompt, the explain step DSPy's chat format
        if "[[ ## rating ## ]]" in messages[-1]["content"]:
            return "[[ ## explanation ## ]]\nliked westerns\n[[ ## completed ## ]]"
        return "4"

    with dspy.context(lm=scripted_lm(reply)):
        result = outer(input=QUESTION, profile=PROFILE)
    assert result.output == "4" and result.explanation == "liked westerns"
    outer.save(str(tmp_path / "outer.json"))
    copy = TwoStep(PersonalizedRAG(task="LaMP-3", retriever=BM25Retriever(), k=4))
    copy.load(str(tmp_path / "outer.json"))
    assert copy.rag.k == 2


def test_dspy_evaluate_with_threads(make_program):
    program = make_program(retriever=BM25Retriever(), k=2)
    examples = [
        dspy.Example(input=QUESTION, profile=PROFILE, user_id="u", output=gold).with_inputs(
            "input", "profile"
        )
        for gold in ("4", "5", "4", "1", "4", "4")
    ]
    evaluate = dspy.Evaluate(
        devset=examples, metric=program.task.metric, num_threads=4, display_progress=False
    )
    result = evaluate(program)
    # Eval (Eq. 8) of answering 4: gold 4 -> 1, gold 5 -> 0.75, gold 1 -> 0.25.
    assert result.score == pytest.approx(100 * (4 * 1.0 + 0.75 + 0.25) / 6, abs=0.01)  # Evaluate rounds


def test_failed_calls_are_reported_and_scored_as_unparseable(make_program, scripted_lm):
    def flaky(messages):
        if "horror" in messages[-1]["content"]:
            raise ConnectionError("connection reset")
        return "3"

    program = make_program(retriever=BM25Retriever(), k=1, generator=Generator(lm=scripted_lm(flaky)))
    good = dspy.Example(id="q1", input=QUESTION, profile=PROFILE, output="3").with_inputs("input", "profile")
    bad_input = QUESTION.replace("a slow western with a great score", "a horror film in a cabin")
    bad = dspy.Example(id="q2", input=bad_input, profile=PROFILE, output="2").with_inputs("input", "profile")
    with pytest.raises(GenerationError, match="connection reset"):
        program(input=bad.input, profile=bad.profile)
    result = evaluate_program(program, [good, bad], progress=False)
    assert result.failed == ["q2"]
    # q1 exact (0 error); q2 unparseable -> 5 (farther from gold 2) -> error 3.
    assert result.metrics["MAE"] == pytest.approx(1.5)


@pytest.mark.slow
def test_local_model_end_to_end_under_threads(local_generator, sample_task):
    from persona_rag.data import load_lamp

    split = load_lamp(sample_task, "dev", limit=8)
    program = PersonalizedRAG(task=split.task, retriever=DenseRetriever(), generator=local_generator, k=4)
    examples = split.examples()
    evaluate = dspy.Evaluate(
        devset=examples, metric=program.task.metric, num_threads=4, display_progress=False
    )
    threaded = evaluate(program)
    batched = program.batch_forward([e.input for e in examples], [e.profile for e in examples])
    singles = [program(input=e.input, profile=e.profile) for e in examples]
    assert [p.output for p in batched] == [p.output for p in singles]
    assert all(p.output in {"1", "2", "3", "4", "5"} for p in batched)
    expected = sum(program.task.metric(e, p) for e, p in zip(examples, singles)) / len(examples)
    assert threaded.score == pytest.approx(100 * expected, abs=0.01)  # Evaluate rounds to 2 places


def test_personalized_rag_in_finds_the_one_program_inside_a_larger_one(make_program):
    from persona_rag.program import personalized_rag_in

    class Wrapper(dspy.Module):
        def __init__(self, *programs: PersonalizedRAG) -> None:
            super().__init__()
            self.programs = list(programs)

    inner = make_program()
    assert personalized_rag_in(inner, "tests") is inner
    assert personalized_rag_in(Wrapper(inner), "tests") is inner
    with pytest.raises(TypeError, match="RSPG trains the selector of one PersonalizedRAG; Wrapper holds 2"):
        personalized_rag_in(Wrapper(inner, make_program()), "RSPG trains the selector of")

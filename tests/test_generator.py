"""Generator: the prompt adapter, label scoring with the local model, server LMs, failures."""

from __future__ import annotations

import pytest

from persona_rag.errors import GenerationError
from persona_rag.generator import Generator, PersonalizedAnswer, PromptAdapter, extract_answer
from persona_rag.tasks import ApproxTokenizer, HFTokenizer


def test_prompt_adapter_sends_the_prompt_as_the_user_turn():
    messages = PromptAdapter().format(
        PersonalizedAnswer, [{"prompt": "demo in", "output": "demo out"}], {"prompt": "the question"}
    )
    assert messages[0] == {"role": "system", "content": PersonalizedAnswer.instructions}
    assert messages[1:] == [
        {"role": "user", "content": "demo in"},
        {"role": "assistant", "content": "demo out"},
        {"role": "user", "content": "the question"},
    ]
    assert PromptAdapter().parse(PersonalizedAnswer, "  4 \n") == {"output": "4"}


def test_any_dspy_lm_generates_through_predict(scripted_lm):
    lm = scripted_lm(" comedy\n")
    generator = Generator(lm=lm)
    prediction = generator(prompt="Which tag?")
    assert prediction.output == "comedy"
    assert isinstance(generator.tokenizer, ApproxTokenizer)  # no local tokenizer for remote models
    # The request carried the plain prompt, not DSPy's field markers.
    assert lm.engine.requests[-1][-1] == {"role": "user", "content": "Which tag?"}


def test_failing_lm_call_raises_generation_error_with_cause(scripted_lm):
    def timeout(messages):
        raise TimeoutError("the server did not answer in 60 s")

    with pytest.raises(GenerationError, match="the server did not answer"):
        Generator(lm=scripted_lm(timeout))(prompt="Which tag?")


def test_remote_batch_runs_concurrently_and_keeps_order(scripted_lm):
    generator = Generator(
        lm=scripted_lm(lambda messages: messages[-1]["content"].replace("question", "answer"))
    )
    outputs = [p.output for p in generator.generate_batch([f"question {i}" for i in range(6)], num_threads=3)]
    assert outputs == [f"answer {i}" for i in range(6)]


@pytest.mark.slow
def test_local_label_scoring_constrains_answers_to_the_label_set(local_generator):
    prompts = ["Is the sky blue? Answer yes or no.", "Which tag fits a movie about space travel?"]
    labels = [("yes", "no"), ("sci-fi", "romance", "dark comedy")]
    predictions = local_generator.generate_batch(prompts, labels)
    for prediction, allowed in zip(predictions, labels):
        assert prediction.output in allowed
        assert set(prediction.label_scores) == set(allowed)
        assert prediction.output == max(prediction.label_scores, key=prediction.label_scores.get)
    single = local_generator(prompt=prompts[1], labels=labels[1])
    assert single.output == predictions[1].output  # one call and the batch agree
    assert isinstance(local_generator.tokenizer, HFTokenizer)


@pytest.mark.slow
def test_local_free_generation_batch_matches_single_calls(local_generator):
    prompts = ["Name a fruit.", "Write a short title for an article about rain in Paris."]
    batch = [p.output for p in local_generator.generate_batch(prompts)]
    assert all(isinstance(text, str) and text for text in batch)
    assert local_generator.generate_batch(prompts[:1])[0].output == batch[0]  # padding changes nothing


@pytest.mark.slow
def test_calibration_removes_the_content_free_bias(local_generator):
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm

    calibrated = Generator(lm=local_lm(), calibrate=True)
    prompt = "Rate from 1 to 5. just answer with 1, 2, 3, 4, or 5. review: a wonderful, moving film"
    content_free = "Rate from 1 to 5. just answer with 1, 2, 3, 4, or 5. review: N/A"
    labels = ("1", "2", "3", "4", "5")
    raw = local_generator(prompt=prompt, labels=labels).label_scores
    bias = local_generator(prompt=content_free, labels=labels).label_scores
    fixed = calibrated(prompt=prompt, labels=labels, content_free_prompt=content_free).label_scores

    def log_softmax(scores):
        import numpy as np

        values = np.array([scores[label] for label in labels])
        return values - np.log(np.exp(values - values.max()).sum()) - values.max()

    expected = log_softmax(raw) - log_softmax(bias)
    assert [fixed[label] for label in labels] == pytest.approx(list(expected), abs=1e-4)
    with pytest.raises(ValueError, match="content-free"):
        calibrated(prompt=prompt, labels=labels)


@pytest.mark.slow
def test_mean_decision_answers_the_expected_rating(local_generator):
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm

    generator = Generator(lm=local_lm(), label_decision="mean")
    prediction = generator(prompt="Rate from 1 to 5: a fine film", labels=("1", "2", "3", "4", "5"))
    assert 1.0 <= float(prediction.output) <= 5.0
    with pytest.raises(ValueError, match="numeric labels"):
        generator(prompt="Pick a tag", labels=("comedy", "drama"))


# ------------------------------------------------------------------------ answer extraction
@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        # Replies of SmolLM2-135M-Instruct on numpy_commit_subjects dev (LaMP-6 format).
        (
            'The title for this commit is: "Fix typo in module-level comment."',
            "Fix typo in module-level comment.",
        ),
        (
            "DOC: add release note for f2py --f2cmap\nDOC: adjust ILP64 openblas release note\nDOC:",
            "DOC: add release note for f2py --f2cmap",
        ),
        (
            "The subject for this commit is:\n\nhttps://github.com/jerry-jerry/jerry-jerry-python",
            "https://github.com/jerry-jerry/jerry-jerry-python",
        ),
        ("The subject for this commit is:\n\n```c\n#include <cstdint>\n", "#include <cstdint>"),
        # Typical replies of larger chat models.
        ("Title: Fix ldexp on 64 bits", "Fix ldexp on 64 bits"),
        ("Subject: BUG: fix ldexp on 64 bits", "BUG: fix ldexp on 64 bits"),
        (
            'Sure! Here is a possible subject line:\n\n"ENH: support dtype changes in views"',
            "ENH: support dtype changes in views",
        ),
        ("Here's the headline:\n**Rain returns to Paris**\n\nThe article says ...", "Rain returns to Paris"),
        ('"Fix typo" is the title for "files: numpy/core/numeric.py"', "Fix typo"),
        ("The commit title would be 'MAINT: tidy imports'.", "MAINT: tidy imports"),
        (
            "  \n\nTST: add tests for non-int slice deprecation\n",
            "TST: add tests for non-int slice deprecation",
        ),
        # Real subjects that look like preambles stay whole.
        ("BUG: fix title bar: crash on resize", "BUG: fix title bar: crash on resize"),
        ("DOC: Added links to text and table", "DOC: Added links to text and table"),
        # Nothing but a lead-in: its first line, not an empty answer.
        (
            "The user has requested a subject for the following commit:\n\n```",
            "The user has requested a subject for the following commit:",
        ),
        ("", ""),
    ],
)
def test_extract_answer_on_realistic_replies(reply, answer):
    assert extract_answer(reply) == answer


def test_server_replies_to_free_text_prompts_are_extracted(scripted_lm):
    reply = 'The title for the commit is: "BUG: fix ldexp on 64 bits"\nThis commit fixes the ldexp ...'
    extracted = Generator(lm=scripted_lm(reply))
    assert extracted.answer_extraction == "first-line"  # the default, stated by results tables
    assert [p.output for p in extracted.generate_batch(["Generate a subject", "Another"])] == [
        "BUG: fix ldexp on 64 bits"
    ] * 2
    assert extracted(prompt="Generate a subject").output == "BUG: fix ldexp on 64 bits"
    # With labels the parser reads the reply; "none" keeps the whole reply.
    assert extracted(prompt="Which tag?", labels=("comedy", "sci-fi")).output == reply
    assert Generator(lm=scripted_lm(reply), answer_extraction="none")(prompt="Generate").output == reply
    with pytest.raises(ValueError, match="answer_extraction"):
        Generator(answer_extraction="last-line")
    with pytest.raises(ValueError, match="label_normalization"):
        Generator(label_normalization="max")


@pytest.mark.slow
def test_local_first_line_answers_equal_the_extracted_whole_replies(local_generator):
    from persona_rag.lm import local_lm

    prompts = [
        "Generate a subject for the following commit: files: numpy/core/numeric.py",
        "List three fruits, one per line.",
    ]
    whole = Generator(lm=local_lm(), answer_extraction="none").generate_batch(prompts)
    first_line = local_generator.generate_batch(prompts)  # stops at the end of the answer line
    assert any("\n" in p.output for p in whole)
    assert [p.output for p in first_line] == [extract_answer(p.output) for p in whole]


@pytest.mark.slow
def test_label_normalization_reaches_the_scorer(local_generator):
    from persona_rag.lm import local_lm

    labels = ("thought-provoking", "comedy", "twist ending")
    prompt = (
        "Which tag fits Inception (2010), genres: Sci-Fi? tags: [thought-provoking, comedy, twist ending]"
    )
    tokenizer = local_generator.local_model.tokenizer
    counts = [len(tokenizer.encode(label, add_special_tokens=False)) for label in labels]
    summed = Generator(lm=local_lm(), label_normalization="sum")(prompt=prompt, labels=labels).label_scores
    mean = Generator(lm=local_lm(), label_normalization="mean")(prompt=prompt, labels=labels).label_scores
    assert [mean[label] for label in labels] == pytest.approx(
        [summed[label] / n for label, n in zip(labels, counts)], rel=1e-6
    )


@pytest.mark.parametrize(
    "setting",
    [
        {"stop": ["\n"]},
        {"top_k": 1},
        {"extra_body": {"repetition_penalty": 1.3}},
        {"logit_bias": {"50256": -100}},
        {"max_tokens": 8},
    ],
)
def test_every_request_setting_of_a_server_lm_is_in_the_generator_fingerprint(setting):
    """The feedback cache is keyed by this fingerprint: a setting that changes the server's answer
    but not the fingerprint would serve answers computed under another setting."""
    import dspy

    from persona_rag.fingerprint import stable_hash

    def fingerprint(**settings):
        lm = dspy.LM("openai/served", api_base="http://localhost:8000/v1", temperature=0.0, **settings)
        return stable_hash(Generator(lm=lm).fingerprint())

    assert fingerprint(**setting) != fingerprint()


def test_credentials_stay_out_of_the_generator_fingerprint():
    import json

    import dspy

    def fingerprint(key):
        lm = dspy.LM("openai/served", api_base="http://localhost:8000/v1", api_key=key, headers={"x": key})
        return Generator(lm=lm).fingerprint()

    assert fingerprint("sk-one") == fingerprint("sk-two")
    assert "sk-one" not in json.dumps(fingerprint("sk-one"))

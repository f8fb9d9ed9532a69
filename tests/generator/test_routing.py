"""persona_rag.generator.routing: the Generator with server LMs and the local model, failures, and
its fingerprint."""

from __future__ import annotations

import pytest

from persona_rag.errors import GenerationError
from persona_rag.generator import Generator
from persona_rag.tasks import ApproxTokenizer


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
def test_local_free_generation_batch_matches_single_calls(local_generator):
    prompts = ["Name a fruit.", "Write a short title for an article about rain in Paris."]
    batch = [p.output for p in local_generator.generate_batch(prompts)]
    assert all(isinstance(text, str) and text for text in batch)
    assert local_generator.generate_batch(prompts[:1])[0].output == batch[0]  # padding changes nothing


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

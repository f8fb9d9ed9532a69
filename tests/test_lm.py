"""LocalLM scoring against a plain, unbatched full-sequence reference."""

import numpy as np
import pytest
import torch

from persona_rag.lm import LocalLM, shared_local_lm


def _reference(lm, conversation, answer_text: str) -> float:
    prompt = lm._encode_prompt(conversation)
    answer = lm.tokenizer.encode(answer_text, add_special_tokens=False)
    with torch.inference_mode():
        logprobs = lm.model(input_ids=torch.tensor([prompt + answer])).logits[0].float().log_softmax(-1)
    return sum(float(logprobs[len(prompt) - 1 + t, token]) for t, token in enumerate(answer))


@pytest.mark.parametrize("rows_per_tail_pass", [None, 3])
def test_multi_token_labels_share_the_prompt_pass_and_match_full_sequence_scores(
    monkeypatch, rows_per_tail_pass
):
    lm = shared_local_lm()
    if rows_per_tail_pass:  # several tail passes per prompt batch, as with long prompts and many labels
        chunks = LocalLM._tail_chunks
        monkeypatch.setattr(
            LocalLM, "_tail_chunks", staticmethod(lambda n, width: chunks(n, width, budget=width * 3))
        )
    # Prompts of different lengths (left padding) and labels of 1-4 tokens (right padding of the tail).
    conversations = [[{"role": "user", "content": "Which tag fits Toy Story? " * n}] for n in (1, 4, 9)]
    labels = [["based on a book", "sci-fi", "twist ending", "a"], ["dystopia", "a"], ["true story", "comedy"]]
    scores = lm.score(conversations, labels, batch_size=2)
    for conversation, answers, got in zip(conversations, labels, scores):
        expected = np.array([_reference(lm, conversation, a) for a in answers])
        np.testing.assert_allclose(got, expected, atol=1e-3)


def test_empty_candidate_is_rejected():
    with pytest.raises(ValueError, match="prompt 0"):
        shared_local_lm().score([[{"role": "user", "content": "hi"}]], [["", "b c"]])


def test_generation_with_the_shared_prefix_cache_matches_plain_greedy_decoding():
    lm = shared_local_lm()
    questions = [
        "Rate this movie from 1 to 5: a slow but moving western.",
        "Which tag fits Toy Story? Answer with one word.",
        "Say hello.",
        "What is the score of the following review on a scale of 1 to 5? review: " + "great fun " * 20,
        "Name a colour.",
    ]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    # Batches of two: rows of different lengths share a batch and finish at different steps.
    answers = lm.generate(conversations, max_new_tokens=12, batch_size=2)
    for conversation, answer in zip(conversations, answers):
        prompt = lm._encode_prompt(conversation)
        with torch.inference_mode():
            out = lm.model.generate(
                input_ids=torch.tensor([prompt]),
                max_new_tokens=12,
                do_sample=False,
                pad_token_id=lm.tokenizer.pad_token_id,
            )[0, len(prompt) :].tolist()
        eos = lm.tokenizer.eos_token_id
        expected = lm.tokenizer.decode(out[: out.index(eos)] if eos in out else out, skip_special_tokens=True)
        assert answer.text == expected.strip()
        assert answer.input_tokens == len(prompt)


def test_mean_normalization_divides_each_label_score_by_its_token_count():
    lm = shared_local_lm()
    conversations = [[{"role": "user", "content": "Which tag fits Inception (2010), genres: Sci-Fi?"}]]
    labels = [["thought-provoking", "comedy", "twist ending"]]
    counts = np.array([len(lm.tokenizer.encode(label, add_special_tokens=False)) for label in labels[0]])
    assert len(set(counts)) > 1  # labels of different lengths, where sum and mean disagree
    [summed] = lm.score(conversations, labels)
    [mean] = lm.score(conversations, labels, normalization="mean")
    np.testing.assert_allclose(mean, summed / counts, rtol=1e-6)
    ratings = [["1", "2", "3", "4", "5"]]  # single tokens: the same either way
    np.testing.assert_array_equal(
        lm.score(conversations, ratings)[0], lm.score(conversations, ratings, normalization="mean")[0]
    )
    with pytest.raises(ValueError, match="normalization"):
        lm.score(conversations, labels, normalization="max")


def test_stop_rule_ends_a_row_at_its_first_line_break():
    lm = shared_local_lm()
    conversations = [
        [{"role": "user", "content": "List three fruits, one per line."}],
        [
            {
                "role": "user",
                "content": "Generate a subject for the following commit: files: "
                "numpy/core/src/umath/umathmodule.c.src, numpy/core/tests/test_umath.py",
            }
        ],
    ]
    full = lm.generate(conversations, max_new_tokens=24, batch_size=2)
    asked: list[str] = []

    def stop(text: str) -> bool:
        asked.append(text)
        return True

    stopped = lm.generate(conversations, max_new_tokens=24, batch_size=2, stop=stop)
    for whole, cut in zip(full, stopped):
        assert "\n" in whole.text  # the prompts do produce several lines
        assert whole.text.startswith(cut.text) and "\n" not in cut.text
        assert cut.output_tokens < whole.output_tokens
    assert asked and all("\n" in text for text in asked)  # asked only at line breaks


def test_bfloat16_is_a_separate_copy_with_its_own_fingerprint_and_nearly_the_same_scores(
    tiny_checkpoint, tmp_path
):
    model = str(tiny_checkpoint(tmp_path / "tiny", seed=0))
    full, half = shared_local_lm(model), shared_local_lm(model, "bfloat16")
    assert half is not full and half is shared_local_lm(model, "bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.dtype == "bfloat16"
    # float32 adds nothing to the fingerprint (caches from before the option stay valid); bfloat16 does.
    assert "dtype" not in full.fingerprint() and half.fingerprint()["dtype"] == "bfloat16"
    conversations = [[{"role": "user", "content": "Rate it from 1 to 5."}]]
    labels = [["1", "2", "3", "4", "5"]]
    np.testing.assert_allclose(
        half.score(conversations, labels)[0], full.score(conversations, labels)[0], atol=0.1
    )


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16"):
        LocalLM(dtype="float16")


def test_auto_precision_follows_the_hardware(monkeypatch):
    from persona_rag.lm import loading

    assert loading.resolve_dtype("float32") == "float32"
    monkeypatch.setattr(loading, "native_bfloat16", lambda device=None: True)
    assert loading.resolve_dtype("auto") == "bfloat16"
    monkeypatch.setattr(loading, "native_bfloat16", lambda device=None: False)
    assert loading.resolve_dtype("auto") == "float32"

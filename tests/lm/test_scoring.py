"""persona_rag.lm.scoring: label scoring against a plain, unbatched full-sequence reference."""

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

"""persona_rag.generator.labels: label scoring with the local model, calibration, the label decision
and normalization."""

from __future__ import annotations

import pytest

from persona_rag.generator import Generator
from persona_rag.tasks import HFTokenizer


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

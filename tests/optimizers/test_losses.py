"""distillation_kl is KL(p_t || softmax(logits)) with p_t = softmax(scores / tau)."""

import math

import torch

from optimizers.losses import distillation_kl


def test_kl_matches_the_definition_and_ignores_padding():
    scores = torch.tensor([[1.0, 0.0, 0.5, 0.0]])
    logits = torch.tensor([[0.2, -0.1, 0.4, 9.0]])
    mask = torch.tensor([[True, True, True, False]])
    target = [math.exp(s / 0.5) for s in (1.0, 0.0, 0.5)]
    target = [t / sum(target) for t in target]
    student = [math.exp(v) for v in (0.2, -0.1, 0.4)]
    student = [s / sum(student) for s in student]
    expected = sum(t * math.log(t / s) for t, s in zip(target, student))
    assert math.isclose(float(distillation_kl(scores, logits, mask, temperature=0.5)), expected, rel_tol=1e-5)


def test_kl_is_zero_when_the_student_matches_the_target():
    scores = torch.tensor([[0.3, 0.9, 0.1]])
    mask = torch.ones_like(scores, dtype=torch.bool)
    assert float(distillation_kl(scores, scores / 0.1, mask, temperature=0.1)) < 1e-6

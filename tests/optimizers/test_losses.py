"""distillation_kl is KL(p_t || softmax(logits)) with p_t = softmax(scores / tau)."""

import math

import torch

from optimizers.losses import distillation_kl, expected_reward_loss


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


def test_free_ties_is_the_kl_between_the_score_groups_masses():
    scores = torch.tensor([[1.0, 0.75, 1.0, 1.0, 0.0]])  # groups {0, 2, 3} and {1}; 4 is padding
    logits = torch.tensor([[0.3, -0.2, 1.1, -0.7, 5.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    target = torch.softmax(scores[0, :4] / 0.1, dim=-1)
    student = torch.softmax(logits[0, :4], dim=-1)
    groups = [[0, 2, 3], [1]]
    expected = sum(float(target[g].sum() * torch.log(target[g].sum() / student[g].sum())) for g in groups)
    got = float(distillation_kl(scores, logits, mask, temperature=0.1, free_ties=True))
    assert math.isclose(got, expected, rel_tol=1e-5)
    # Dropped: the within-group part, which only asks tied candidates for equal scores.
    assert got < float(distillation_kl(scores, logits, mask, temperature=0.1))


def test_free_ties_leaves_the_order_inside_a_group_alone_and_is_eq4_without_ties():
    mask = torch.ones((1, 3), dtype=torch.bool)
    tied = torch.tensor([[0.5, 0.5, 0.5]])
    logits = torch.tensor([[2.0, -1.0, 0.0]], requires_grad=True)
    loss = distillation_kl(tied, logits, mask, temperature=0.1, free_ties=True)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and float(logits.grad.abs().max()) < 1e-6  # nothing to learn
    distinct = torch.tensor([[1.0, 0.25, 0.5]])
    assert math.isclose(
        distillation_kl(distinct, logits, mask, temperature=0.1, free_ties=True).item(),
        distillation_kl(distinct, logits, mask, temperature=0.1).item(),
        rel_tol=1e-6,
    )


def test_the_anchor_mixes_the_start_policy_into_the_target():
    """With weight λ the target is (1 − λ) p_t + λ softmax(anchor): a student that stays at its start
    pays only for the teacher's share, and λ = 0 is Eq. 4."""
    scores = torch.tensor([[1.0, 0.0, 0.5, 0.0]])
    start = torch.tensor([[2.0, 0.5, -1.0, 7.0]])
    mask = torch.tensor([[True, True, True, False]])
    teacher = torch.softmax(scores[0, :3] / 0.5, dim=-1)
    mixture = 0.7 * teacher + 0.3 * torch.softmax(start[0, :3], dim=-1)
    student = torch.softmax(start[0, :3], dim=-1)
    expected = float((mixture * torch.log(mixture / student)).sum())
    got = distillation_kl(scores, start, mask, temperature=0.5, anchor=start, anchor_weight=0.3)
    assert math.isclose(float(got), expected, rel_tol=1e-5)
    assert float(got) < float(distillation_kl(scores, start, mask, temperature=0.5))
    plain = distillation_kl(scores, start, mask, temperature=0.5, anchor=start, anchor_weight=0.0)
    assert float(plain) == float(distillation_kl(scores, start, mask, temperature=0.5))


def test_the_expected_reward_gradient_is_reinforce_in_expectation():
    """∇ of -Σ π r over the logits is -π (r - E_π r): what REINFORCE's one-sample estimate
    (r_c - b) ∇log π(c) averages to over c ~ π, whatever the baseline b; padding gets none."""
    scores = torch.tensor([[0.2, 0.9, 0.4, 0.0]])
    logits = torch.tensor([[0.5, -0.3, 1.2, 4.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True, False]])
    loss = expected_reward_loss(scores, logits, mask)
    loss.backward()
    policy = torch.softmax(logits.detach()[0, :3], dim=-1)
    assert math.isclose(float(loss.detach()), -float(policy @ scores[0, :3]), rel_tol=1e-6)
    reinforce = torch.zeros(3)
    for c in range(3):  # E_c[(r_c - b) ∇ log π(c)] with b = 0.3, exactly
        reinforce += policy[c] * (scores[0, c] - 0.3) * (torch.eye(3)[c] - policy)
    assert torch.allclose(logits.grad[0, :3], -reinforce, atol=1e-6)
    assert float(logits.grad[0, 3]) == 0.0

"""Losses shared by the optimizers."""

from __future__ import annotations

import torch

from persona_rag.errors import ConfigError

__all__ = ["distillation_kl", "expected_reward_loss"]

# Scores closer than this tie (Eval values are sums of a few exact fractions, or ROUGE ratios).
TIE_TOLERANCE = 1e-6


def distillation_kl(
    scores: torch.Tensor,
    logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    free_ties: bool = False,
    anchor: torch.Tensor | None = None,
    anchor_weight: float = 0.0,
) -> torch.Tensor:
    """Mean over rows of KL(p_t ‖ softmax(logits)), with p_t = softmax(scores / τ) over the masked-in
    candidates (docs/method.md: Eq. 4 for ROPG-KD, Eq. 7 for RSPG).

    A real KL between two distributions: the authors' code instead feeds probabilities as logits
    to a cross-entropy (a double softmax) or divides log-probabilities by τ; neither is Eq. 4/7.

    ``free_ties`` drops the part of the KL that only says how to order candidates with equal scores.
    Grouping a row's candidates by score, KL(p_t ‖ π) = KL(P_t ‖ Π) + Σ_g P_t(g) · KL(p_t(·|g) ‖ π(·|g)),
    with P_t, Π the group masses. The teacher is uniform inside a group, so the second term only
    pulls tied candidates to the same score: with a reader that gives most candidates the same
    answer, that term dominates and flattens the student's whole ranking (the held-out entropy of
    the policy reached log l within an epoch on every task, benchmarks/README.md). With
    ``free_ties`` the loss is KL(P_t ‖ Π) alone: mass moves between groups the LLM tells apart, and
    the order inside a group stays the student's own. Rows whose candidates all tie add 0.

    Args:
        scores: the LLM's signal per candidate (e.g. Eval), shape (rows, candidates).
        logits: the student's scores per candidate, same shape.
        mask: ``True`` for real candidates, ``False`` for padding.
        temperature: τ of the target; Eval lies in [0, 1], so τ = 1 leaves p_t close to uniform.
        free_ties: compare group masses instead of candidates (see above); ``False`` is Eq. 4/7.
        anchor: the logits of the policy training started from, same shape: with ``anchor_weight``
            λ > 0 the target becomes (1 − λ) p_t + λ softmax(anchor). The cross-entropy to that
            mixture is the KL to p_t plus λ/(1 − λ) times the KL from the start policy, a trust region:
            where the LLM's preferences are noise that no feature of the text predicts, the best
            student under Eq. 4 alone is the flat average of the teachers (the held-out entropy rose
            toward log l on every real task), while the anchored optimum keeps λ of the start's
            policy. It bounds the target, not the weights: Adam still moves them by about the
            learning rate per step, so in practice it slows the flattening (halved it on
            numpy_commit_subjects, benchmarks/README.md) rather than stopping it. Not combined
            with ``free_ties``.
        anchor_weight: λ in [0, 1); 0 is Eq. 4.
    """
    target = torch.softmax(scores.masked_fill(~mask, -1e9) / temperature, dim=-1)
    if anchor_weight:
        if anchor is None or free_ties:
            raise ConfigError("anchor_weight needs the anchor logits, and does not combine with free_ties")
        start = torch.softmax(anchor.masked_fill(~mask, -1e9), dim=-1)
        target = (1 - anchor_weight) * target + anchor_weight * start
    log_student = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)
    if free_ties:
        # same[r, i, j]: candidates i and j of row r are both real and tie; each candidate then
        # stands for its group: Σ_i p_t(i) log(P_t(g(i)) / Π(g(i))) = Σ_g P_t(g) log(P_t(g) / Π(g)).
        same = (scores[:, :, None] - scores[:, None, :]).abs() <= TIE_TOLERANCE
        same &= mask[:, :, None] & mask[:, None, :]
        log_target = torch.log((same * target[:, None, :]).sum(-1).clamp_min(1e-12))
        log_student = torch.logsumexp(log_student[:, None, :].masked_fill(~same, -1e9), dim=-1)
    else:
        log_target = torch.log(target.clamp_min(1e-12))
    # Σ p_t (log p_t − log π); terms with p_t = 0 (padding) contribute nothing.
    kl = torch.where(target > 0, target * (log_target - log_student), 0.0)
    return kl.sum(dim=-1).mean()


def expected_reward_loss(scores: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Minus the mean over rows of the expected score under softmax(logits): Σ_c π(c) · score(c).

    Where every candidate's score is known (ROPG's feedback holds each candidate's, RSPG's each
    pool member's), this is the exact gradient of the expected reward that REINFORCE (Eq. 1-3)
    estimates from one sampled candidate: E_{c~π}[(r_c − b) ∇log π(c)] = ∇ Σ_c π(c) r_c, for any
    baseline b. Unlike the distillation target of Eq. 4 / 7, its optimum when the text predicts
    nothing is not the teachers' flat average but all mass on the candidate (or member) that scores
    best on average, so a policy it trains does not flatten toward log l.
    """
    policy = torch.softmax(logits.masked_fill(~mask, -1e9), dim=-1)
    expected = (policy * scores).masked_fill(~mask, 0.0).sum(dim=-1)
    return -expected.mean()

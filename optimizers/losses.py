"""Losses shared by the optimizers."""

from __future__ import annotations

import torch

__all__ = ["distillation_kl"]


def distillation_kl(
    scores: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor, *, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over rows of KL(p_t ‖ softmax(logits)), with p_t = softmax(scores / τ) over the masked-in
    candidates (PAPER.md Eq. 4 for ROPG-KD, Eq. 7 for RSPG).

    A real KL between two distributions: the authors' code instead feeds probabilities as logits
    to a cross-entropy (a double softmax) or divides log-probabilities by τ; neither is Eq. 4/7.

    Args:
        scores: the LLM's signal per candidate (e.g. Eval), shape (rows, candidates).
        logits: the student's scores per candidate, same shape.
        mask: ``True`` for real candidates, ``False`` for padding.
        temperature: τ of the target; Eval lies in [0, 1], so τ = 1 leaves p_t close to uniform.
    """
    target = torch.softmax(scores.masked_fill(~mask, -1e9) / temperature, dim=-1)
    log_student = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)
    # Σ p_t (log p_t − log π); terms with p_t = 0 (padding) contribute nothing.
    kl = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-12)) - log_student), 0.0)
    return kl.sum(dim=-1).mean()

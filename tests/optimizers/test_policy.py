"""The ROPG policy can express the teacher's preference (issue: cosine logits at τ = 1 cannot)."""

from __future__ import annotations

import torch

from optimizers import ROPGConfig, ROPGKDConfig
from optimizers.losses import distillation_kl


def _fit_free_embeddings(policy_temperature: float, *, steps: int = 100) -> tuple[float, float]:
    """Fit unit-norm query/document vectors (the most a normalised encoder could ever do) to a
    teacher that prefers one candidate per row by Eval 1 against 0 for the rest; return the final
    KL(p_t ‖ π) and the share of rows whose top-1 is the teacher's choice."""
    torch.manual_seed(0)
    rows, candidates, dim = 32, 16, 32
    target_temperature = ROPGKDConfig().temperature  # the KD default
    scores = torch.zeros(rows, candidates)
    best = torch.randint(0, candidates, (rows,))
    scores[torch.arange(rows), best] = 1.0
    queries = torch.nn.Parameter(torch.randn(rows, dim))
    documents = torch.nn.Parameter(torch.randn(rows, candidates, dim))
    mask = torch.ones(rows, candidates, dtype=torch.bool)
    optimizer = torch.optim.Adam([queries, documents], lr=0.05)

    def logits() -> torch.Tensor:
        q = torch.nn.functional.normalize(queries, dim=-1)
        d = torch.nn.functional.normalize(documents, dim=-1)
        return torch.einsum("rd,rcd->rc", q, d) / policy_temperature

    for _ in range(steps):
        optimizer.zero_grad()
        loss = distillation_kl(scores, logits(), mask, temperature=target_temperature)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = logits()
        kl = float(distillation_kl(scores, final, mask, temperature=target_temperature))
        recall = float((final.argmax(dim=-1) == best).float().mean())
    return kl, recall


def test_default_policy_temperature_reaches_the_kd_target():
    default = ROPGConfig().policy_temperature or 0.05  # None resolves to 0.05 for normalised encoders
    kl, recall = _fit_free_embeddings(default)
    assert kl < 0.05
    assert recall == 1.0


def test_cosine_logits_at_temperature_one_cannot():
    # The old policy: even perfectly placed unit vectors leave KL far above the bar.
    kl, _ = _fit_free_embeddings(1.0)
    assert kl > 0.5

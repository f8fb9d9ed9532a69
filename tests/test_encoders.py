"""TextEncoder.embed: grouped by length for speed, yet each text's embedding is its own."""

from __future__ import annotations

import torch

from persona_rag.encoders import EMBED_GROUP, TextEncoder


def test_embed_groups_by_length_but_keeps_order_values_and_gradients():
    encoder = TextEncoder(cache_size=0)
    # Uneven lengths in shuffled order, more texts than one group holds.
    texts = [("numpy core " * (1 + (7 * i) % 23)).strip() + f" item {i}" for i in range(EMBED_GROUP * 2 + 3)]
    encoder.model.eval()
    grouped = encoder.embed(texts)
    alone = torch.cat([encoder.embed([text]) for text in texts])
    assert grouped.shape == (len(texts), encoder.dim)
    assert torch.allclose(grouped, alone, atol=1e-5)
    grouped.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.model.parameters())
    assert encoder.embed([]).shape == (0, encoder.dim)

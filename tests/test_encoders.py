"""TextEncoder.embed: grouped by length for speed, yet each text's embedding is its own."""

from __future__ import annotations

import numpy as np
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


class RecordingTokenizer:
    """A Hugging Face tokenizer, remembering the length of every text handed to it in a list."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def __call__(self, *args, **kwargs):
        self.lengths += [len(text) for batch in args if isinstance(batch, list) for text in batch]
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_huge_text_is_cut_before_the_tokenizer_sees_it_and_embeds_as_its_start():
    from persona_rag.tasks.truncation import MAX_CHARS_PER_TOKEN

    encoder = TextEncoder(cache_size=0, max_length=32)
    encoder.tokenizer = RecordingTokenizer(encoder.tokenizer)
    huge, start = "word " * 1_000_000, "word " * 100  # 5 MB; both longer than 32 tokens
    embeddings = encoder.encode([huge, start])
    assert max(encoder.tokenizer.lengths) <= 32 * MAX_CHARS_PER_TOKEN
    assert np.allclose(embeddings[0], embeddings[1], atol=1e-6)  # what the 32 tokens were anyway

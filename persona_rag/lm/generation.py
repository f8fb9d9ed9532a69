"""Batched generation with a shared-prefix key/value cache.

Every prompt starts with the same chat-template tokens (SmolLM2's system prompt alone is 24 of a
typical 115), so the token prefix all prompts share is run once and its key/value cache copied into
every batch; each batch then prefills only its rows' own tokens. Rows leave the batch as soon as
they end, so a few long answers do not keep finished rows computing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from persona_rag.lm.core import LMCore, Message

__all__ = ["BatchedGeneration", "Generation"]

_MIN_SHARED_PREFIX = 8  # below this, a separate prefix pass costs more than it saves

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Generation:
    """One generated answer and its token counts."""

    text: str
    input_tokens: int
    output_tokens: int


class BatchedGeneration(LMCore):
    """The generation half of :class:`~persona_rag.lm.LocalLM`."""

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        batch_size: int | None = None,
        stop: Callable[[str], bool] | None = None,
    ) -> list[Generation]:
        """Greedy (or sampled, with ``temperature > 0``) answers, in batches of similar length.

        ``stop``, when given, is called with a row's answer so far each time its newest token
        holds a line break; ``True`` ends that row there (e.g. once a complete answer line is out,
        so a one-line answer does not pay for the lines of chatter after it).

        The token prefix all prompts share runs once (see the module docstring).
        """
        encoded = [self._encode_prompt(c) for c in conversations]
        if not encoded:
            return []
        shared = _common_prefix(encoded)
        prefix = self._prefill(shared) if len(shared) >= _MIN_SHARED_PREFIX else None
        cut = len(shared) if prefix is not None else 0
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths per batch
        results: list[Generation | None] = [None] * len(encoded)
        for batch in self._batches(len(order), batch_size):
            members = [order[i] for i in batch]
            answers = self._decode(
                [encoded[m][cut:] for m in members], prefix, max_new_tokens, temperature, stop
            )
            for m, tokens in zip(members, answers):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                results[m] = Generation(text, len(encoded[m]), len(tokens))
        return results  # type: ignore[return-value]

    def _prefill(self, tokens: list[int]) -> KeyValues:
        """Keys and values of ``tokens`` (one row), per layer."""
        ids = torch.tensor([tokens], device=self.device)
        with self._lock, torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.cache.layers]

    def _stop_tokens(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {int(t) for t in [*ids, self.tokenizer.eos_token_id] if t is not None}

    def _decode(
        self,
        rows: list[list[int]],
        prefix: KeyValues | None,
        max_new_tokens: int,
        temperature: float,
        stop: Callable[[str], bool] | None = None,
    ) -> list[list[int]]:
        """New tokens for each row (its tokens after the shared prefix), stop tokens excluded.

        Rows are left-padded after the prefix: [prefix | pad ... | own tokens], with the padding
        masked out and positions counting real tokens only, so every row sees exactly its prompt.
        """
        from transformers import DynamicCache

        n, stops = len(rows), self._stop_tokens()
        ids, own, own_positions = self._padded(rows)
        shared = 0 if prefix is None else prefix[0][0].shape[2]
        mask = torch.cat([torch.ones((n, shared), dtype=own.dtype, device=self.device), own], dim=1)
        positions = shared + own_positions
        cache = DynamicCache(config=self.model.config)
        for layer, (keys, values) in enumerate(prefix or []):
            cache.update(
                keys.expand(n, -1, -1, -1).contiguous(), values.expand(n, -1, -1, -1).contiguous(), layer
            )
        generated: list[list[int]] = [[] for _ in rows]
        alive = list(range(n))  # rows still generating, in cache order
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]  # fmt: skip
            next_positions = positions[:, -1] + 1
            for step in range(max_new_tokens):
                if temperature > 0:
                    chosen = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1)[:, 0]
                else:
                    chosen = logits.argmax(dim=-1)
                keep = []
                for slot, token in enumerate(chosen.tolist()):
                    if token in stops:
                        continue
                    row = generated[alive[slot]]
                    row.append(token)
                    if stop is not None and self._stops_line(row, stop):
                        continue
                    keep.append(slot)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) < len(alive):  # drop finished rows from the cache and the batch
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, next_positions, chosen = mask[index], next_positions[index], chosen[index]
                    alive = [alive[slot] for slot in keep]
                mask = torch.cat(
                    [mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=self.device)], dim=1
                )
                logits = self.model(
                    input_ids=chosen[:, None], attention_mask=mask, position_ids=next_positions[:, None],
                    cache=cache, use_cache=True,
                ).logits[:, -1]  # fmt: skip
                next_positions = next_positions + 1
        return generated

    def _stops_line(self, tokens: list[int], stop: Callable[[str], bool]) -> bool:
        """Whether ``stop`` ends a row whose newest token is ``tokens[-1]`` (only line breaks ask)."""
        if "\n" not in self.tokenizer.decode(tokens[-1:]):
            return False
        return stop(self.tokenizer.decode(tokens, skip_special_tokens=True))


def _common_prefix(rows: list[list[int]]) -> list[int]:
    """The longest token prefix of all rows, leaving every row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    size = 0
    while size < limit and all(r[size] == first[size] for r in rows):
        size += 1
    return first[:size]

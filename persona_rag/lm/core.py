"""What batched generation and label scoring share: a loaded model, its prompt encoding, the
split into batches and left padding.

Both kinds of call run prompts of different lengths as one batch, left-padded, with the padding
masked out and position ids counting real tokens only, so that each row sees exactly its prompt;
:meth:`LMCore._padded` is the one place that builds those tensors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["LMCore", "Message"]

logger = logging.getLogger(__name__)

Message = dict[str, str]


class LMCore:
    """A causal LM and its tokenizer, held for batched calls.

    Calls are serialised by a lock (one forward pass at a time uses all cores anyway), so one
    instance is safe to share between ``dspy.Evaluate`` threads.
    """

    def _setup(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_input_tokens: int,
        chat: bool | None,
    ) -> None:
        self.name = name
        self.model = model
        self.device = str(next(model.parameters()).device)
        self.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ prompts
    def render(self, messages: Sequence[Message]) -> str:
        """The exact text the model sees for a conversation (chat template + assistant cue)."""
        if self.chat:
            return self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        return "\n\n".join(m["content"] for m in messages)

    def _encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        ids = self.tokenizer.encode(self.render(messages), add_special_tokens=False)
        if len(ids) > self.max_input_tokens:
            logger.warning("prompt of %d tokens cut to its last %d", len(ids), self.max_input_tokens)
            ids = ids[-self.max_input_tokens :]
        return ids

    # ------------------------------------------------------------------------------ batches
    def _batches(self, n: int, batch_size: int | None) -> list[range]:
        size = batch_size or self.batch_size
        return [range(start, min(start + size, n)) for start in range(0, n, size)]

    def _padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids, attention mask and position ids (positions count real tokens only)."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)

"""The prompt within a token budget: how profile entries and the input share it (LaMP's split).

:class:`PromptBudget` gives :class:`~persona_rag.tasks.TaskSpec` its :meth:`~PromptBudget.prompt`;
the tokenizers here count and cut the tokens (the model's own, or whitespace words for a server
model whose tokenizer is unknown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

__all__ = [
    "ENTRY_SEPARATOR",
    "MAX_CHARS_PER_TOKEN",
    "ApproxTokenizer",
    "Combine",
    "HFTokenizer",
    "PromptBudget",
    "Tokenizer",
    "clip",
]

logger = logging.getLogger(__name__)

ENTRY_SEPARATOR = ", and "

MAX_CHARS_PER_TOKEN = 32
"""Characters a consumer's tokens are assumed to span at most: English text averages about four per
token (words or word pieces), so the first ``n`` tokens of any ordinary text lie within its first
``32·n`` characters."""


def clip(text: str, tokens: int, *, keep: Literal["start", "end"] = "start") -> str:
    """The part of ``text`` that can hold the ``tokens`` tokens a consumer keeps (its start, or its
    end for a consumer that cuts from the left), before it is tokenized.

    Tokenizers cut to a maximum length only after tokenizing the whole text, and a profile item has
    no size limit: one 50 MB item took 7.2 GiB and 84 s to encode for dense retrieval. Every
    consumer with a token limit (the dense encoder, the selector, the prompt budget) hands the
    tokenizer at most ``MAX_CHARS_PER_TOKEN`` characters per token it keeps, which changes nothing
    for ordinary text (``tests/tasks/test_truncation.py``).
    """
    limit = max(tokens, 0) * MAX_CHARS_PER_TOKEN
    if len(text) <= limit:
        return text
    return text[:limit] if keep == "start" else text[len(text) - limit :]


Combine = str | Callable[[str, str], str]


class Tokenizer(Protocol):
    """The two calls the prompt builder needs to count and cut tokens."""

    def encode(self, text: str) -> list: ...

    def decode(self, tokens: list) -> str: ...


class ApproxTokenizer:
    """Whitespace "tokens": a tokenizer-free budget for server models whose tokenizer is unknown."""

    def encode(self, text: str) -> list:
        return text.split()

    def decode(self, tokens: list) -> str:
        return " ".join(tokens)


class HFTokenizer:
    """Adapts a Hugging Face tokenizer to :class:`Tokenizer` (no special tokens either way)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, tokens: list) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


class PromptBudget:
    """The personalised prompt of a task, built from its entry template and combination.

    A mixin of :class:`~persona_rag.tasks.TaskSpec`, which supplies the attributes below.
    """

    name: str
    combine: Combine
    truncate_field: str | None
    entry: Callable[[Mapping[str, Any]], str]

    def prompt(
        self,
        input: str,
        items: Sequence[Mapping[str, Any]],
        *,
        tokenizer: Tokenizer | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """φ_p(x, items): the personalised prompt, cut to ``max_tokens`` when a tokenizer is given.

        The budget is split as in the LaMP code (docs/method.md): the input keeps at most
        ``min(len(input), 0.6·max)`` tokens for a start, and the profile gets the rest,
        ``max − min(len(input), 0.6·max)`` tokens, shared equally across entries, with any unused
        share carried to the next entry. An input longer than its 60% loses its tail (LaMP cuts the
        whole prompt at ``max``, which cuts the input's end); room the entries leave unused goes
        back to the input, so a long input is cut only as far as the entries need. A long input
        therefore never pushes every profile item out of the prompt.

        If the result is still too long (the combination's own words are not in the budget),
        profile text gives way first (entries are cut further, then the lowest-ranked ones
        dropped). Without items, an input longer than ``max_tokens`` is cut from its end. Every
        cut of the input is logged as a warning.
        """
        if tokenizer is None or max_tokens is None:
            return self._combine(input, [self.entry(item) for item in items]) if items else input
        input_ids = tokenizer.encode(input)
        if not items:
            return self._alone(input, input_ids, max_tokens, tokenizer)
        reserved = min(len(input_ids), int(0.6 * max_tokens))
        head = input if reserved == len(input_ids) else tokenizer.decode(input_ids[:reserved])
        full_budget = max_tokens - reserved
        budget = full_budget
        items = list(items)
        while items:
            entries = self._fit_entries(items, budget, tokenizer)
            prompt = self._combine(head, entries)
            used = len(tokenizer.encode(prompt))
            if used <= max_tokens:
                if head is input:
                    return prompt
                return self._give_back(input_ids, reserved, entries, prompt, used, max_tokens, tokenizer)
            if budget > 0 and self.truncate_field is not None:
                # The combination's own words ("Following the given patterns", the ". " join) are
                # not in the budget: make room for them by cutting profile text, not whole entries.
                budget = max(min(budget, used - reserved) - (used - max_tokens), 0)
            else:
                items.pop()
                budget = full_budget
        return self._alone(input, input_ids, max_tokens, tokenizer)

    def _alone(self, input: str, input_ids: list, max_tokens: int, tokenizer: Tokenizer) -> str:
        """The prompt without profile items: the input, cut from its end when over the budget."""
        if len(input_ids) <= max_tokens:
            return input
        logger.warning("task %s: input of %d tokens cut to %d", self.name, len(input_ids), max_tokens)
        return tokenizer.decode(input_ids[:max_tokens])

    def _give_back(
        self,
        input_ids: list,
        reserved: int,
        entries: Sequence[str],
        prompt: str,
        used: int,
        max_tokens: int,
        tokenizer: Tokenizer,
    ) -> str:
        """The prompt with its cut input lengthened into the room the entries left unused.

        Token counts do not add up exactly across a join, so each try is measured and the input
        shortened by the excess until the prompt fits (the reserved cut always does).
        """
        keep = min(reserved + max_tokens - used, len(input_ids))
        while keep > reserved:
            longer = self._combine(tokenizer.decode(input_ids[:keep]), entries)
            excess = len(tokenizer.encode(longer)) - max_tokens
            if excess <= 0:
                prompt = longer
                break
            keep -= excess
        if keep < len(input_ids):
            logger.warning(
                "task %s: input of %d tokens cut to %d to leave room for the profile",
                self.name,
                len(input_ids),
                max(keep, reserved),
            )
        return prompt

    def _fit_entries(
        self, items: Sequence[Mapping[str, Any]], budget: int, tokenizer: Tokenizer
    ) -> list[str]:
        separator = len(tokenizer.encode(ENTRY_SEPARATOR))
        share = max(budget - separator * (len(items) - 1), 0) // len(items)
        carried = 0
        entries = []
        for item in items:
            if self.truncate_field is None:
                entries.append(self.entry(item))
                continue
            overhead = len(tokenizer.encode(self.entry({**item, self.truncate_field: ""})))
            allowed = max(share + carried - overhead, 0)
            text_ids = tokenizer.encode(clip(str(item[self.truncate_field]), allowed))
            kept = text_ids[:allowed]
            carried = max(share + carried - overhead - len(kept), 0)
            entries.append(self.entry({**item, self.truncate_field: tokenizer.decode(kept)}))
        return entries

    def _combine(self, input: str, entries: Sequence[str]) -> str:
        joined = ENTRY_SEPARATOR.join(entries)
        if callable(self.combine):
            return self.combine(input, joined)
        return self.combine.format(entries=joined, input=input)

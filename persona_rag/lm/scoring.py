"""Label scoring: the log-likelihood of each candidate answer after each prompt, with the prompt
run once however many candidates it has (:meth:`LabelScoring.score` says how)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from persona_rag.defaults import LABEL_NORMALIZATIONS, LabelNormalization
from persona_rag.errors import ConfigError, DataError
from persona_rag.lm.core import LMCore, Message

__all__ = ["LabelScoring"]


class LabelScoring(LMCore):
    """The scoring half of :class:`~persona_rag.lm.LocalLM`."""

    def score(
        self,
        conversations: Sequence[Sequence[Message]],
        continuations: Sequence[Sequence[str]],
        *,
        batch_size: int | None = None,
        normalization: LabelNormalization = "sum",
    ) -> list[np.ndarray]:
        """Log-likelihood of each candidate answer after each conversation.

        Args:
            conversations: one conversation per prompt.
            continuations: for each prompt, the candidate answers (e.g. the task's labels).
            batch_size: prompts per forward pass (default: the model's).
            normalization: ``sum`` of the candidate's token log-probabilities (its likelihood), or
                their ``mean`` per token. A sum falls with every extra token, so among labels of
                different lengths it favours the short ones ("comedy" over "thought-provoking");
                the mean compares labels per token instead.

        Returns:
            One array per prompt with a score per candidate.

        When every candidate of a prompt is a single distinct token (ratings 1-5), one forward pass
        of the prompt scores them all. Otherwise the prompt still runs once: its key/value cache is
        shared by all its candidates, whose remaining tokens run as one short batch (15 multi-token
        labels then cost about one prompt pass instead of fifteen).
        """
        if len(conversations) != len(continuations):
            raise DataError(f"{len(conversations)} conversations for {len(continuations)} candidate lists")
        if normalization not in LABEL_NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {LABEL_NORMALIZATIONS}, got {normalization!r}")
        prompts = [self._encode_prompt(c) for c in conversations]
        candidates = [
            [self.tokenizer.encode(c, add_special_tokens=False) for c in cands] for cands in continuations
        ]
        for i, cands in enumerate(candidates):
            if not cands or any(not c for c in cands):
                raise DataError(f"prompt {i}: every candidate answer needs at least one token")
        results: list[np.ndarray | None] = [None] * len(prompts)
        single = [i for i, cands in enumerate(candidates) if _single_distinct(cands)]
        if single:
            logprobs = self._next_token_logprobs([prompts[i] for i in single], batch_size)
            for i, row in zip(single, logprobs):
                results[i] = np.array([row[c[0]] for c in candidates[i]], dtype=np.float64)
        multi = [i for i in range(len(prompts)) if results[i] is None]
        if multi:
            totals = self._shared_prefix_logprobs(
                [prompts[i] for i in multi], [candidates[i] for i in multi], batch_size
            )
            for i, total in zip(multi, totals):
                results[i] = total
        if normalization == "mean":
            return [row / np.array([len(c) for c in cands]) for row, cands in zip(results, candidates)]  # type: ignore[operator]
        return results  # type: ignore[return-value]

    def _forward(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """Log-probabilities at the last ``keep`` positions of left-padded rows.

        Only those positions go through the LM head and the softmax (the vocabulary is large, so
        this is most of the saving over full-sequence logits).
        """
        ids, mask, positions = self._padded(rows)
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
            ).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _next_token_logprobs(self, prompts: list[list[int]], batch_size: int | None) -> list[np.ndarray]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[np.ndarray | None] = [None] * len(prompts)
        for batch in self._batches(len(order), batch_size):
            logprobs = self._forward([prompts[order[i]] for i in batch], keep=1)
            for i, lp in zip(batch, logprobs):
                out[order[i]] = lp[-1].cpu().numpy()
        return out  # type: ignore[return-value]

    def _shared_prefix_logprobs(
        self, prompts: list[list[int]], candidates: list[list[list[int]]], batch_size: int | None
    ) -> list[np.ndarray]:
        """Summed log-probabilities of each prompt's candidates, one prompt pass per prompt.

        The prompts' pass yields the first candidate token's distribution and a key/value cache;
        each candidate's remaining tokens (right-padded) then run against a copy of its prompt's
        cache rows, so the long prompt is never recomputed per candidate.
        """
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[np.ndarray | None] = [None] * len(prompts)
        for batch in self._batches(len(order), batch_size):
            members = [order[i] for i in batch]
            ids, mask, positions = self._padded([prompts[m] for m in members])
            owners = [row for row, m in enumerate(members) for _ in candidates[m]]
            answers = [answer for m in members for answer in candidates[m]]
            totals = torch.zeros(len(answers), dtype=torch.float64)
            with self._lock, torch.inference_mode():
                first = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,
                )
                first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
                for n, (row, answer) in enumerate(zip(owners, answers)):
                    totals[n] = float(first_lp[row, answer[0]])
                prefix = [(layer.keys, layer.values) for layer in first.cache.layers]
                for rows in self._tail_chunks(len(answers), ids.shape[1]):
                    self._add_tails(
                        totals,
                        rows,
                        [answers[n] for n in rows],
                        [owners[n] for n in rows],
                        prefix,
                        mask,
                        positions,
                    )
            offset = 0
            for m in members:
                count = len(candidates[m])
                out[m] = totals[offset : offset + count].numpy()
                offset += count
        return out  # type: ignore[return-value]

    @staticmethod
    def _tail_chunks(count: int, width: int, budget: int = 16_384) -> list[list[int]]:
        """Candidate rows per tail pass, so that the repeated prompt cache stays near ``budget``
        cached positions (about 0.75 GB for a 135M model) however many labels a task has."""
        size = max(1, budget // max(width, 1))
        return [list(range(start, min(start + size, count))) for start in range(0, count, size)]

    def _add_tails(
        self,
        totals: torch.Tensor,
        rows: list[int],
        answers: list[list[int]],
        owners: list[int],
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """Add the log-probabilities of the answers' tokens after the first to ``totals[rows]``,
        running only those tokens against a copy of their prompt's cached keys and values."""
        from transformers import DynamicCache

        tail = max(len(a) for a in answers) - 1
        if tail == 0:
            return
        pad = self.tokenizer.pad_token_id
        select = torch.tensor(owners, device=self.device)
        cache = DynamicCache(config=self.model.config)
        for layer, (keys, values) in enumerate(prefix):
            cache.update(keys[select], values[select], layer)
        tail_ids = torch.tensor([a[:-1] + [pad] * (tail + 1 - len(a)) for a in answers], device=self.device)
        tail_mask = torch.tensor(
            [[1] * (len(a) - 1) + [0] * (tail + 1 - len(a)) for a in answers], device=self.device
        )
        logits = self.model(
            input_ids=tail_ids,
            attention_mask=torch.cat([mask[select], tail_mask], dim=1),
            position_ids=positions[select, -1:] + 1 + torch.arange(tail, device=self.device),
            cache=cache,
            use_cache=True,
        ).logits
        tail_lp = torch.log_softmax(logits.float(), dim=-1)
        for n, (row, answer) in enumerate(zip(rows, answers)):
            # Row t of the tail predicts the answer's token t+1.
            steps = torch.arange(len(answer) - 1, device=self.device)
            targets = torch.tensor(answer[1:], dtype=torch.long, device=self.device)
            totals[row] += float(tail_lp[n, steps, targets].sum())


def _single_distinct(candidates: list[list[int]]) -> bool:
    return all(len(c) == 1 for c in candidates) and len({c[0] for c in candidates}) == len(candidates)

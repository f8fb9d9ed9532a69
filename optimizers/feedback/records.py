"""The rows feedback produces: one training example's signal over its candidates or pool members.

They are what ROPG, Set-PL and RSPG train on and what a run's fingerprint hashes, so they hold
plain values only (ids, texts, answers, scores) and no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from persona_rag.retrievers import RetrievalResult

__all__ = ["CandidateFeedback", "PoolFeedback", "carries_preference"]


@dataclass(frozen=True)
class CandidateFeedback:
    """The signal of one training example over its candidate documents.

    Attributes:
        example_id: the example's id (or its position).
        query: φ_q(x).
        candidates: the initial retriever's top-``l`` result (index 0 is the baseline d_b).
        outputs: the generator's answer with each single candidate (empty for ``likelihood`` with
            an in-process model).
        scores: per candidate, the signal: Eval(y, answer) for ``metric``, log p(y | prompt) for
            ``likelihood``, Eval plus the scaled log-likelihood for ``metric+likelihood``, the
            expected Eval under the label distribution for ``expected``.
    """

    example_id: str
    query: str
    candidates: RetrievalResult
    outputs: tuple[str, ...]
    scores: tuple[float, ...]

    @property
    def rewards(self) -> tuple[float, ...]:
        """Score minus the baseline document's score (Eq. 2)."""
        return tuple(s - self.scores[0] for s in self.scores) if self.scores else ()

    def identity(self) -> dict[str, Any]:
        """What training on this row depends on, for a run's fingerprint: the candidates by id and
        text, not by retrieval score (a float that moves in its last bits with the thread count or
        the batching, and would make a resumed run look like another one)."""
        return {
            "example_id": self.example_id,
            "query": self.query,
            "candidates": [(hit.id, hit.document.text) for hit in self.candidates.hits],
            "outputs": list(self.outputs),
            "scores": [round(score, 6) for score in self.scores],
        }


@dataclass(frozen=True)
class PoolFeedback:
    """The signal of one training example over a pool of retrievers (RSPG, Eq. 7).

    Attributes:
        example_id: the example's id (or its position).
        names: the pool members, in pool order.
        prompts: φ_p(x, R_i(x)) for each member (what the Pre selector reads).
        outputs: the generator's answer to each prompt (what the Post selector reads too).
        scores: per member, the signal (as in :class:`CandidateFeedback`).
        retrieved: per member, the ids of the items its retriever chose for the prompt, in rank
            order: what a table row built from this pool shows, so that two rows that differ can
            be told apart by their items.
    """

    example_id: str
    names: tuple[str, ...]
    prompts: tuple[str, ...]
    outputs: tuple[str, ...]
    scores: tuple[float, ...]
    retrieved: tuple[tuple[str, ...], ...] = ()

    def members(self, names: Sequence[str]) -> PoolFeedback:
        """The same row restricted to (and ordered as) ``names``: a selector's pool out of a wider
        evaluation pass."""
        index = [self.names.index(name) for name in names]
        prompts, outputs, scores = (
            tuple(values[i] for i in index) for values in (self.prompts, self.outputs, self.scores)
        )
        retrieved = tuple(self.retrieved[i] for i in index) if self.retrieved else ()
        return PoolFeedback(self.example_id, tuple(names), prompts, outputs, scores, retrieved)

    def prediction(self, task: Any, example: Any, member: int) -> dict[str, Any]:
        """Member ``member``'s answer to ``example`` as a prediction in ``evaluate``'s format (id,
        parsed and raw output, gold, the ids of its retrieved items, the member's name): the record
        every table built from a pool (the demo's rows, the report's columns) keeps per question."""
        return {
            "id": example.get("id"),
            "output": task.parse(self.outputs[member], example.input),
            "raw_output": self.outputs[member],
            "gold": example.output,
            "retrieved": list(self.retrieved[member]) if self.retrieved else [],
            "retriever": self.names[member],
        }


def carries_preference(row: CandidateFeedback | PoolFeedback) -> bool:
    """Whether a row's candidates (or pool members) score differently. A row whose scores are all
    equal carries no preference: distilled (ROPG-KD, RSPG), it only teaches a uniform ranking, which
    is what ``skip_uniform`` leaves out."""
    return max(row.scores) != min(row.scores)

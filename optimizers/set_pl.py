"""Set-PL: tune the dense retriever to choose the *set* of k items the reader sees.

ROPG scores each candidate item alone, yet the reader reads k of them at once: two complementary
items (one showing the user's style, one on the topic) can be worth more than the two best single
items, and near-duplicates waste the prompt. Set-PL (after PURPLE, arXiv 2601.12078) treats the
choice as a contextual bandit over ordered sets (docs/set_pl.md has the equations):

* the policy is the dense retriever's logits s_i = q·d_i / τ_π over the question's ``l``
  candidates (:func:`~optimizers.ropg.policy_logits`), and an ordered set of k items is drawn
  without replacement from the Plackett-Luce distribution they define, by Gumbel top-k
  (:func:`sample_sets`); its log-probability is the sum of the sequential softmax terms
  (:func:`set_log_prob`);
* the reward of a set is the reader's signal with the whole set in its prompt
  (:meth:`~optimizers.feedback.Feedback.compute_sets`, cached by the exact ordered set, so a
  resumed run asks the reader nothing it answered before), minus a baseline (:func:`advantages`);
* the loss is REINFORCE over several sampled sets per question, minus an entropy bonus on the
  first draw so the policy does not collapse before the reader has been asked enough.

The signal defaults to the likelihood of the gold on generation tasks (a free text's Eval is a
coarse ROUGE; log p(gold | set) ranks sets whose answers tie) and, on label and rating tasks, to
what :func:`~optimizers.feedback.resolve_signal` makes of ``auto``; a user's ``metric=`` makes the
signal that metric's (:mod:`optimizers.metric`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dspy
import torch

from optimizers import distributed
from optimizers.configs import BASELINES, SetPLConfig
from optimizers.feedback import Feedback, resolve_signal
from optimizers.metric import Metric
from optimizers.ropg import PolicyOptimizer, policy_logits
from persona_rag.encoders import TextEncoder
from persona_rag.errors import ConfigError
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import RetrievalResult

__all__ = [
    "BASELINES",
    "SetPL",
    "SetPLConfig",
    "SetRow",
    "advantages",
    "first_draw_entropy",
    "sample_sets",
    "set_log_prob",
    "set_signal",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SetRow:
    """One training question of Set-PL: the example (the reader answers it), φ_q(x) and the
    initial retriever's top-``l`` candidates the sets are drawn from."""

    example: dspy.Example
    query: str
    candidates: RetrievalResult

    def identity(self) -> dict[str, Any]:
        """What training on this row depends on (the run's fingerprint): ids and texts, not scores."""
        return {
            "example_id": str(self.example.get("id", "")),
            "query": self.query,
            "gold": str(self.example.output),
            "candidates": [(hit.id, hit.document.text) for hit in self.candidates.hits],
        }


def sample_sets(logits: torch.Tensor, mask: torch.Tensor, k: int, samples: int) -> torch.Tensor:
    """Ordered k-sets drawn without replacement from Plackett-Luce(softmax(logits)), ``samples``
    per row: the top k of logits + Gumbel noise, in order, is such a draw (Gumbel top-k).

    Returns:
        indices of shape (rows, samples, k); row ``r``'s ``j``-th item of sample ``s`` is
        ``indices[r, s, j]``. Every row needs at least ``k`` unmasked candidates.
    """
    noise = -torch.log(-torch.log(torch.rand((logits.shape[0], samples, logits.shape[1])).clamp_min(1e-20)))
    perturbed = logits.detach()[:, None, :] + noise.to(logits.device)
    return perturbed.masked_fill(~mask[:, None, :], float("-inf")).topk(k, dim=-1).indices


def set_log_prob(logits: torch.Tensor, mask: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """log P(i_1, ..., i_k) = Σ_j [s_{i_j} − log Σ_{m not among i_1..i_{j-1}} exp s_m]: the
    Plackett-Luce log-probability of each ordered set, shape (rows, samples)."""
    rows, samples, k = indices.shape
    expanded = logits.masked_fill(~mask, float("-inf"))[:, None, :].expand(rows, samples, -1)
    chosen = expanded.gather(-1, indices)
    taken = torch.zeros(expanded.shape, dtype=torch.bool, device=logits.device)
    log_norms = []
    for j in range(k):
        log_norms.append(torch.logsumexp(expanded.masked_fill(taken, float("-inf")), dim=-1))
        taken = taken.scatter(-1, indices[..., j : j + 1], True)
    return (chosen - torch.stack(log_norms, dim=-1)).sum(dim=-1)


def first_draw_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) per row, in nats: the entropy of the first item drawn (log l is uniform).
    The entropy of the whole ordered set has no closed form; the first draw's bounds how peaked
    every later draw can be, and is what a collapsing policy loses first."""
    log_policy = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)
    return -(log_policy.exp() * log_policy).masked_fill(~mask, 0.0).sum(dim=-1)


def advantages(rewards: torch.Tensor, baseline: str, greedy: torch.Tensor | None = None) -> torch.Tensor:
    """Reward minus baseline per sampled set, shape (rows, samples).

    ``others``: b_s = (Σ_t r_t − r_s) / (S − 1), the mean of the question's other samples, which
    leaves the gradient unbiased as b_s does not depend on sample s. ``greedy``: b = the reward of
    the policy's top-k set (``greedy``, shape (rows,)).
    """
    if baseline == "greedy":
        if greedy is None:
            raise ConfigError("the greedy baseline needs the greedy sets' rewards")
        return rewards - greedy[:, None]
    samples = rewards.shape[1]
    return rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (samples - 1)


def set_signal(signal: str, program: PersonalizedRAG, *, metric: Metric | None = None) -> str:
    """Set-PL's signal: ``auto`` is the gold's likelihood on generation tasks where the reader
    gives it (else what :func:`~optimizers.feedback.resolve_signal` makes of ``auto``), unless a
    user's metric is the signal; any other value is resolved (and refused when the reader cannot
    give it) by :class:`~optimizers.feedback.Feedback`, before any training."""
    if signal != "auto" or metric is not None or program.task.kind != "generation":
        return signal
    try:
        return resolve_signal("likelihood", program)
    except ConfigError:  # a server that returns no log-probabilities: the metric
        return signal


class SetPL(PolicyOptimizer):
    """Set-PL: REINFORCE over Plackett-Luce samples of ordered k-sets, rewarded by the reader's
    signal on the whole set. Same ``compile`` contract, checkpoints and resume rules as ROPG.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from optimizers import SetPL, SetPLConfig
        optimizer = SetPL(config=SetPLConfig(output_dir="runs/set", max_examples=200, epochs=3))
        tuned = optimizer.compile(program, trainset=train, valset=dev[:50])
        tuned.save("set.json")   # its retriever references runs/set/best
    """

    name = "set-pl"
    shown = ("reward", "reader_calls", "reader_seconds")

    def __init__(self, *, config: SetPLConfig | None = None, metric: Metric | None = None) -> None:
        super().__init__(config=config, metric=metric)
        self._feedback: Feedback | None = None
        self._k = 0

    @staticmethod
    def default_config() -> SetPLConfig:
        return SetPLConfig()

    def prepare(
        self, program: PersonalizedRAG, trainset: list[dspy.Example], valset: list[dspy.Example]
    ) -> tuple[list[Any], Callable[[TextEncoder], dict[str, float]]]:
        """The questions with more than ``k`` candidates (no reader call yet: sets are answered as
        they are sampled) and the validation diagnostics; every setting the reader or the data
        cannot serve is refused here, before any training."""
        config = self.config
        if distributed.world_size() > 1:
            raise ConfigError(
                "Set-PL asks the reader while it trains, so it runs in one process: start it without "
                "torchrun or accelerate launch"
            )
        k = self._k = program.k
        if config.candidates <= k:
            raise ConfigError(
                f"Set-PL: candidates (l={config.candidates}) must exceed the set size k={k}, or there "
                "is no set to choose; use --candidates above --k"
            )
        self._feedback = self.feedback(program, set_signal(config.signal, program, metric=self.metric))
        self._feedback.progress = False  # one bar, the trainer's, which shows the reader's cost
        rows, largest = self._rows(program, trainset)
        if not rows:
            raise ConfigError(
                f"Set-PL: k={k} items per set, but no training question has more than {k} profile "
                f"items to choose from (the largest has {largest}); use a smaller --k"
            )
        logger.info(
            "%s: %d of %d questions have more than k=%d items", self.name, len(rows), len(trainset), k
        )
        val_rows, _ = self._rows(program, valset)

        def diagnostics(encoder: TextEncoder) -> dict[str, float]:
            return set_diagnostics(encoder, val_rows, k) if val_rows else {}

        return rows, diagnostics

    def _rows(self, program: PersonalizedRAG, examples: Sequence[dspy.Example]) -> tuple[list[SetRow], int]:
        """The examples whose top-``l`` holds more than ``k`` items, and the largest such count."""
        results = program.batch_retrieve(
            [ex.input for ex in examples], [ex.profile for ex in examples], k=self.config.candidates
        )
        rows = [
            SetRow(example, program.task.query(example.input), result)
            for example, result in zip(examples, results)
            if len(result) > self._k
        ]
        return rows, max((len(result) for result in results), default=0)

    def batch_loss(self, encoder: TextEncoder, batch: Sequence[SetRow]) -> Any:
        """REINFORCE over S sampled ordered sets per question, minus β times the first draw's
        entropy; the reader answers each set (cached) in one batch."""
        config, feedback, k = self.config, self._feedback, self._k
        assert feedback is not None and isinstance(config, SetPLConfig)  # set by prepare()
        logits, mask = policy_logits(encoder, batch)
        indices = sample_sets(logits, mask, k, config.samples)
        greedy = config.baseline == "greedy"
        if greedy:  # the policy's own top-k set, answered in the same batch
            top = logits.detach().masked_fill(~mask, float("-inf")).topk(k, dim=-1).indices
            indices = torch.cat([top[:, None, :], indices], dim=1)
        sets = [
            [RetrievalResult(tuple(row.candidates.hits[i] for i in chosen)) for chosen in drawn]
            for row, drawn in zip(batch, indices.tolist())
        ]
        scores = torch.tensor(
            feedback.compute_sets([row.example for row in batch], sets), device=logits.device
        )
        calls, seconds = self.feedback_cost
        self.feedback_cost = (calls + feedback.computed, seconds + feedback.seconds)
        rewards = scores[:, 1:] if greedy else scores
        advantage = advantages(rewards, config.baseline, scores[:, 0] if greedy else None)
        log_prob = set_log_prob(logits, mask, indices[:, 1:] if greedy else indices)
        entropy = first_draw_entropy(logits, mask).mean()
        loss = -(advantage * log_prob).mean() - config.entropy_weight * entropy
        return loss, {
            "reward": float(rewards.mean()),
            "entropy": float(entropy.detach()),
            "reader_calls": float(feedback.computed),
            "reader_seconds": feedback.seconds,
        }


@torch.no_grad()
def set_diagnostics(
    encoder: TextEncoder, rows: Sequence[SetRow], k: int, batch_size: int = 16
) -> dict[str, float]:
    """What the policy learned, without asking the reader: ``policy_entropy`` (the first draw's, nats,
    mean over rows) and ``set_changed`` (share of rows whose greedy top-k set differs, as a set,
    from the initial retriever's top k, the candidates' first k)."""
    entropy = changed = 0.0
    for start in range(0, len(rows), batch_size):
        logits, mask = policy_logits(encoder, rows[start : start + batch_size])
        entropy += float(first_draw_entropy(logits, mask).sum())
        top = logits.masked_fill(~mask, float("-inf")).topk(k, dim=-1).indices
        changed += sum(set(chosen) != set(range(k)) for chosen in top.tolist())
    return {"policy_entropy": entropy / len(rows), "set_changed": changed / len(rows)}

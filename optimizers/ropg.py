"""ROPG: optimise the dense retriever with the LLM's downstream metric as the signal.

docs/method.md, Eq. 1-4. For each training example the initial retriever proposes ``l`` candidates and
:class:`~optimizers.feedback.Feedback` scores the generator's answer with each one. The retriever
policy is π_θ(d|x) = softmax over the candidates of q·d / τ_π, the dot product of query and
document embeddings over the policy temperature. τ_π matters: with an L2-normalised encoder (the
default MiniLM) q·d is a cosine in [-1, 1], and at τ_π = 1 the best of 16 candidates gets at most
about a third of the probability mass, so KD's sharp target is out of reach and RL samples almost
uniformly. The trained checkpoint records τ_π, and the tuned DenseRetriever scores with it.

* :class:`ROPG_RL` (Eq. 1-3): sample one document from π_θ; REINFORCE with the reward Eval(d) minus
  Eval of the initial retriever's top document.
* :class:`ROPG_KD` (Eq. 4): distil p_t = softmax(Eval / τ) into π_θ by minimising KL(p_t ‖ π_θ)
  (a real KL between two distributions, not the double softmax of the authors' code).

Both are DSPy Teleprompters: ``compile(program, trainset=..., valset=...)`` returns a new
PersonalizedRAG whose DenseRetriever loads the best encoder checkpoint (Hugging Face format).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dspy
import torch
from dspy.teleprompt import Teleprompter

from optimizers import distributed
from optimizers.configs import PolicyConfig, ROPGConfig, ROPGKDConfig, ROPGRLConfig
from optimizers.feedback import (
    CandidateFeedback,
    Feedback,
    carries_preference,
    tie_advice,
)
from optimizers.losses import distillation_kl, expected_reward_loss
from optimizers.metric import Metric, check_metric
from optimizers.training import (
    Trainer,
    TrainingResult,
    config_dict,
    refuse_unused_compile_arguments,
    validation_scores,
)
from persona_rag.encoders import TextEncoder, resolve_encoder
from persona_rag.errors import ConfigError, ProgramError
from persona_rag.fingerprint import directory_fingerprint
from persona_rag.io import atomic_write_json
from persona_rag.program import PersonalizedRAG, personalized_rag_in
from persona_rag.retrievers import DenseRetriever

__all__ = [
    "ROPG_KD",
    "ROPG_RL",
    "PolicyConfig",
    "PolicyOptimizer",
    "ROPGConfig",
    "ROPGKDConfig",
    "ROPGRLConfig",
    "policy_batch",
    "policy_diagnostics",
    "policy_logits",
]

logger = logging.getLogger(__name__)


class PolicyOptimizer(Teleprompter):
    """The shared compile(): the trainable encoder, the loop and the returned program; subclasses
    say what the rows are (:meth:`prepare`) and what a batch of them costs (:meth:`batch_loss`).

    Args:
        config: the settings (``None``: the optimizer's defaults).
        metric: a DSPy metric ``metric(example, prediction, trace=None) -> float`` that replaces
            the task's Eval as the training signal and in the validation that picks the
            checkpoint (:mod:`optimizers.metric`); ``None``: the task's LaMP Eval.
    """

    name = "ropg"
    shown: tuple[str, ...] = ()  # loss extras the progress bar shows per step

    def __init__(self, *, config: PolicyConfig | None = None, metric: Metric | None = None) -> None:
        super().__init__()
        self.config = config or self.default_config()
        self.metric = metric
        self.result: TrainingResult | None = None
        self.feedback_rows: list[CandidateFeedback] = []
        self.feedback_cost: tuple[int, float] = (0, 0.0)  # training feedback: model calls, seconds

    @staticmethod
    def default_config() -> PolicyConfig:
        return ROPGConfig()

    def keep(self, row: CandidateFeedback) -> bool:
        return len(row.candidates) > 1

    @property
    def teacher(self) -> dict[str, Any]:
        """How the diagnostics' teacher KL is taken: KD's own target temperature and tie handling
        (RL has neither: the KD defaults)."""
        return {
            "temperature": getattr(self.config, "temperature", ROPGKDConfig.temperature),
            "free_ties": getattr(self.config, "free_ties", ROPGKDConfig.free_ties),
        }

    def loss(self, logits: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor) -> Any:
        raise NotImplementedError

    def batch_loss(self, encoder: TextEncoder, batch: Sequence[Any]) -> Any:
        """The loss of one micro-batch of rows under the policy of ``encoder``."""
        return self.loss(*policy_batch(encoder, batch))

    def feedback(self, program: PersonalizedRAG, signal: str) -> Feedback:
        """The cached LLM feedback of this run (``signal`` as configured or resolved)."""
        config = self.config
        return Feedback(
            program=program,
            candidates=config.candidates,
            cache=config.feedback_cache,
            signal=signal,  # type: ignore[arg-type]
            batch_size=config.feedback_batch_size,
            progress=config.progress,
            metric=self.metric,
        )

    def prepare(
        self, program: PersonalizedRAG, trainset: list[dspy.Example], valset: list[dspy.Example]
    ) -> tuple[list[Any], Callable[[TextEncoder], dict[str, float]]]:
        """The training rows (the LLM's per-candidate feedback) and the diagnostics validation adds."""
        config = self.config
        feedback = self.feedback(program, config.signal)
        self.feedback_rows = feedback.compute(trainset)
        self.feedback_cost = (feedback.computed, feedback.seconds)
        rows = [row for row in self.feedback_rows if self.keep(row)]
        logger.info(
            "%s: %d of %d examples carry a training signal", self.name, len(rows), len(self.feedback_rows)
        )
        if not rows:
            raise ConfigError(
                f"{type(self).__name__}: no training example has a usable signal (every candidate scores "
                f"the same with signal {feedback.signal!r}: the reader answers alike whatever document it "
                f"reads). {tie_advice(program, feedback.signal, 'more --max-examples / --candidates')}"
            )
        val_rows = []
        if getattr(config, "validation_feedback", False):
            val_rows = [row for row in feedback.compute(valset) if len(row.candidates) > 1]

        def diagnostics(encoder: TextEncoder) -> dict[str, float]:
            return policy_diagnostics(encoder, val_rows, **self.teacher) if val_rows else {}

        return rows, diagnostics

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
        **kwargs: Any,
    ) -> dspy.Module:
        """Return a copy of ``student`` with a tuned DenseRetriever; ``student`` is left untouched.

        ``student`` is a PersonalizedRAG or any DSPy program that holds exactly one (then the
        examples carry that sub-program's ``input``, ``profile`` and ``output``). ``teacher`` and
        further keyword arguments exist for DSPy's signature and are refused: the LLM that gives
        the feedback is the student's own generator.
        """
        refuse_unused_compile_arguments(self, teacher, kwargs)
        config = self.config
        outer = student.deepcopy()
        program = personalized_rag_in(outer, f"{type(self).__name__} tunes the retriever of")
        if not isinstance(program.retriever, DenseRetriever):
            raise ProgramError(
                f"{type(self).__name__} tunes a DenseRetriever; "
                f"the program holds {type(program.retriever).__name__}"
            )
        valset = list(valset or [])[: config.max_val_examples]
        if not valset:
            raise ConfigError(
                f"{type(self).__name__} needs a valset for early stopping and checkpoint choice"
            )
        check_metric(self.metric, valset, who=type(self).__name__)
        out = Path(config.output_dir)
        if distributed.is_main():
            atomic_write_json(out / "config.json", {**config_dict(config), "method": self.name})
        rows, diagnostics = self.prepare(program, list(trainset)[: config.max_examples], valset)

        initial = program.retriever.encoder
        temperature = policy_temperature(config, initial)
        encoder = TextEncoder(
            initial.name,
            normalize=initial.normalize,
            temperature=temperature,
            device=initial.device,
            cache_size=0,
        )
        encoder.model.train()
        evaluator = program.deepcopy()
        evaluator.retriever = DenseRetriever(encoder=encoder)

        def validate() -> dict[str, float]:
            return {**validation_scores(evaluator, valset, metric=self.metric), **diagnostics(encoder)}

        trainer = Trainer(
            module=encoder.model,
            config=config,
            loss_fn=lambda batch: self.batch_loss(encoder, batch),
            validate=validate,
            save_best=encoder.save,
            name=self.name,
            base=directory_fingerprint(resolve_encoder(initial.name)),
            shown=self.shown,
        )
        self.result = trainer.fit(rows)
        program.retriever = DenseRetriever(encoder=TextEncoder(str(out / "best")))
        outer._compiled = True
        return outer


def policy_temperature(config: PolicyConfig, initial: TextEncoder) -> float:
    """τ_π of the policy softmax(q·d / τ_π): the config's, else 0.05 for an L2-normalised encoder
    (cosines) and 1 for an unnormalised one (:class:`~optimizers.configs.PolicyConfig`)."""
    return config.policy_temperature or (0.05 if initial.normalize else 1.0)


def policy_logits(encoder: TextEncoder, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's logits q·d / τ_π over each row's candidates (padded with -1e9) and the padding
    mask; a row is anything with a ``query`` and its ``candidates`` (a RetrievalResult)."""
    width = max(len(row.candidates) for row in batch)
    queries = encoder.embed([row.query for row in batch])
    documents = encoder.embed([hit.document.text for row in batch for hit in row.candidates.hits])
    logits = torch.full((len(batch), width), -1e9, device=queries.device)
    mask = torch.zeros((len(batch), width), dtype=torch.bool, device=queries.device)
    start = 0
    for i, row in enumerate(batch):
        n = len(row.candidates)
        logits[i, :n] = documents[start : start + n] @ queries[i] / encoder.temperature
        mask[i, :n] = True
        start += n
    return logits, mask


def policy_batch(
    encoder: TextEncoder, batch: Sequence[CandidateFeedback]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The policy's logits (:func:`policy_logits`), the padding mask and the LLM's scores: what
    every ROPG loss and diagnostic reads."""
    logits, mask = policy_logits(encoder, batch)
    scores = torch.zeros_like(logits)
    for i, row in enumerate(batch):
        scores[i, : len(row.scores)] = torch.tensor(row.scores, device=logits.device)
    return logits, mask, scores


@torch.no_grad()
def policy_diagnostics(
    encoder: TextEncoder,
    rows: Sequence[CandidateFeedback],
    *,
    temperature: float,
    free_ties: bool = False,
    batch_size: int = 16,
) -> dict[str, float]:
    """How the policy relates to the LLM's preferences on held-out rows.

    Returns:
        ``policy_entropy`` (nats, mean over rows; log l is uniform), ``teacher_kl`` (KL(p_t ‖ π)
        with p_t = softmax(score / ``temperature``), taken over score groups with ``free_ties``)
        and ``teacher_top1`` (share of rows whose top-1 candidate under π is one of the LLM's best;
        rows where every candidate ties count as agreeing).
    """
    entropy = kl = agree = 0.0
    for start in range(0, len(rows), batch_size):
        logits, mask, scores = policy_batch(encoder, rows[start : start + batch_size])
        log_policy = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=-1)
        entropy += float(-(log_policy.exp() * log_policy).masked_fill(~mask, 0.0).sum())
        teacher_kl = distillation_kl(scores, logits, mask, temperature=temperature, free_ties=free_ties)
        kl += float(teacher_kl) * len(logits)
        best = scores.masked_fill(~mask, -1e9).max(dim=-1, keepdim=True).values
        top = logits.argmax(dim=-1, keepdim=True)
        agree += float((scores.gather(1, top) >= best - 1e-9).sum())
    n = len(rows)
    return {"policy_entropy": entropy / n, "teacher_kl": kl / n, "teacher_top1": agree / n}


class ROPG_KD(PolicyOptimizer):
    """ROPG-KD (Eq. 4): distil the LLM's per-candidate Eval distribution into the retriever.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from optimizers import ROPG_KD, ROPGKDConfig
        program = PersonalizedRAG(task="LaMP-3", retriever=DenseRetriever(), generator=reader)
        optimizer = ROPG_KD(config=ROPGKDConfig(output_dir="runs/kd", max_examples=200, epochs=3))
        tuned = optimizer.compile(program, trainset=train, valset=dev[:50])
        tuned.save("kd.json")   # its retriever references runs/kd/best
    """

    name = "ropg-kd"
    _start_scale = 1.0  # τ_start / τ_π, set by prepare()

    @staticmethod
    def default_config() -> ROPGKDConfig:
        return ROPGKDConfig()

    def keep(self, row: CandidateFeedback) -> bool:
        skip = getattr(self.config, "skip_uniform", True)
        return super().keep(row) and (not skip or carries_preference(row))

    def prepare(
        self, program: PersonalizedRAG, trainset: list[dspy.Example], valset: list[dspy.Example]
    ) -> tuple[list[Any], Callable[[TextEncoder], dict[str, float]]]:
        # The candidates' retrieval scores are the untuned policy's q·d / τ_start; the anchor is the
        # same policy at the training temperature τ_π.
        initial = program.retriever.encoder
        self._start_scale = initial.temperature / policy_temperature(self.config, initial)
        return super().prepare(program, trainset, valset)

    def batch_loss(self, encoder: TextEncoder, batch: Sequence[Any]) -> Any:
        logits, mask, scores = policy_batch(encoder, batch)
        anchor_weight = getattr(self.config, "anchor", 0.0)
        anchor = None
        if anchor_weight:
            anchor = torch.zeros_like(logits)
            for i, row in enumerate(batch):
                start = [hit.score * self._start_scale for hit in row.candidates.hits]
                anchor[i, : len(start)] = torch.tensor(start, device=logits.device)
        return distillation_kl(
            scores, logits, mask, **self.teacher, anchor=anchor, anchor_weight=anchor_weight
        )


class ROPG_RL(PolicyOptimizer):
    """ROPG-RL (Eq. 1-3): REINFORCE with one sampled document and the initial top document's
    Eval as the baseline.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from optimizers import ROPG_RL, ROPGRLConfig
        optimizer = ROPG_RL(config=ROPGRLConfig(output_dir="runs/rl", max_examples=200, epochs=3))
        tuned = optimizer.compile(program, trainset=train, valset=dev[:50])
    """

    name = "ropg-rl"

    @staticmethod
    def default_config() -> ROPGRLConfig:
        return ROPGRLConfig()

    def loss(self, logits: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor) -> Any:
        if getattr(self.config, "exact", False):
            # Rewards against the initial top document, as Eq. 2, so the progress bar reads alike.
            loss = expected_reward_loss(scores - scores[:, :1], logits, mask)
            return loss, {"reward": -float(loss.detach())}
        log_policy = torch.log_softmax(logits, dim=-1)
        sampled = torch.multinomial(log_policy.detach().exp(), 1).squeeze(-1)
        rewards = scores.gather(1, sampled[:, None]).squeeze(-1) - scores[:, 0]
        chosen = log_policy.gather(1, sampled[:, None]).squeeze(-1)
        loss = -(rewards * chosen).mean()
        return loss, {"reward": float(rewards.mean())}

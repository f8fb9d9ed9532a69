"""RSPG: train the selector that picks, per input, one retriever of a pool (docs/method.md, Eq. 5-7).

For each training example every pool member retrieves its top-``k`` items, the generator answers
with each member's prompt (cached, resumable feedback, as for ROPG) and Eval scores each answer.
The selector S_ω learns P_S(i|x) = softmax_i S_ω(R_i, x) by minimising KL(P_TS ‖ P_S) with the
target P_TS = softmax_i(Eval_i / τ): a real KL between two distributions, not the authors'
log-probabilities divided by a temperature.

Validation reads the cached answers of the validation examples, so an epoch's validation is a
selector pass, not an LLM pass; it reports the task metrics of the chosen answers, their mean
Eval (``score``, what early stopping follows) and the selection success rate (Table 4).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy
import torch
from dspy.teleprompt import Teleprompter

from optimizers import distributed
from optimizers.configs import RSPGConfig
from optimizers.feedback import Feedback, PoolFeedback, carries_preference, tie_advice
from optimizers.losses import distillation_kl, expected_reward_loss
from optimizers.metric import Metric, check_metric, metric_score
from optimizers.training import Trainer, TrainingResult, config_dict, refuse_unused_compile_arguments
from persona_rag.encoders import resolve_encoder
from persona_rag.errors import ConfigError, ProgramError
from persona_rag.evaluation import selection_metrics
from persona_rag.fingerprint import directory_fingerprint
from persona_rag.io import atomic_write_json
from persona_rag.program import personalized_rag_in
from persona_rag.selector import SelectorNet

__all__ = [
    "RSPG",
    "RSPGConfig",
    "chosen_metric",
    "member_metrics",
    "parsed_pool_outputs",
    "pool_selection_metrics",
]

logger = logging.getLogger(__name__)


class RSPG(Teleprompter):
    """RSPG-Pre / RSPG-Post: learn which retriever's prompt (or answer) to trust for each input.

    The program must hold a :class:`~persona_rag.selector.Selector` (its pool and mode say what is
    learned); ``compile`` returns a copy whose selector loads the best checkpoint, and leaves the
    input program untouched. ``metric=`` (a DSPy metric, :mod:`optimizers.metric`) replaces the
    task's Eval in the feedback and in the validation ``score`` that picks the checkpoint.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from optimizers import RSPG, RSPGConfig
        from persona_rag import PersonalizedRAG, Selector
        program = PersonalizedRAG(task="LaMP-3", generator=reader, selector=Selector(mode="post"))
        optimizer = RSPG(config=RSPGConfig(output_dir="runs/rspg-post", max_examples=200, epochs=5))
        tuned = optimizer.compile(program, trainset=train, valset=dev[:50])
        tuned(input=question, profile=profile).retriever  # 'recency'
    """

    def __init__(self, *, config: RSPGConfig | None = None, metric: Metric | None = None) -> None:
        super().__init__()
        self.config = config or RSPGConfig()
        self.metric = metric
        self.result: TrainingResult | None = None
        self.train_rows: list[PoolFeedback] = []
        self.val_rows: list[PoolFeedback] = []
        self.feedback_cost: tuple[int, float] = (0, 0.0)  # training feedback: model calls, seconds

    def compile(
        self,
        student: dspy.Module,
        *,
        trainset: Sequence[dspy.Example],
        teacher: Any = None,
        valset: Sequence[dspy.Example] | None = None,
        **kwargs: Any,
    ) -> dspy.Module:
        """Return a copy of ``student`` with a trained selector; ``student`` is left untouched.

        ``teacher`` and further keyword arguments exist for DSPy's signature and are refused: the
        feedback comes from the student's own generator.
        """
        refuse_unused_compile_arguments(self, teacher, kwargs)
        config = self.config
        outer = student.deepcopy()
        program = personalized_rag_in(outer, "RSPG trains the selector of")
        selector = program.selector
        if selector is None:
            raise ProgramError(
                "RSPG trains a selector: build the program with "
                "PersonalizedRAG(..., selector=Selector(pool=[...], mode='pre' | 'post'))"
            )
        valset = list(valset or [])[: config.max_val_examples]
        if not valset:
            raise ConfigError("RSPG needs a valset for early stopping and checkpoint choice")
        check_metric(self.metric, valset, who="RSPG")
        name = f"rspg-{selector.mode}"
        out = Path(config.output_dir)
        if distributed.is_main():
            atomic_write_json(
                out / "config.json",
                {**config_dict(config), "method": name, "pool": selector.dump_state()["pool"]},
            )

        feedback = Feedback(
            program=program,
            cache=config.feedback_cache,
            signal=config.signal,
            batch_size=config.feedback_batch_size,
            progress=config.progress,
            metric=self.metric,
        )
        self.train_rows = feedback.compute_pool(list(trainset)[: config.max_examples], selector.pool)
        self.feedback_cost = (feedback.computed, feedback.seconds)
        self.val_rows = feedback.compute_pool(valset, selector.pool)
        rows = [r for r in self.train_rows if not config.skip_uniform or carries_preference(r)]
        logger.info("%s: %d of %d examples carry a preference", name, len(rows), len(self.train_rows))
        if not rows:
            advice = tie_advice(
                program, feedback.signal, "more --max-examples", "pool members that retrieve differently"
            )
            raise ConfigError(
                f"RSPG: on every training example all pool members score the same with signal "
                f"{feedback.signal!r}, so the selector has nothing to learn. {advice}"
            )

        net = SelectorNet(selector.model, max_length=selector.max_length)
        if config.trainable_layers is not None:
            try:
                net.freeze_below(config.trainable_layers, cache=config.cache_frozen_layers)
            except ValueError as error:
                raise ConfigError(f"RSPG: {error}") from error
        if config.gradient_checkpointing:
            net.encoder.activation_checkpointing_enable({"use_reentrant": False})
        post = selector.mode == "post"

        def scores_of(batch: Sequence[PoolFeedback]) -> torch.Tensor:
            prompts = [text for row in batch for text in selector.candidate_texts(row.prompts)]
            outputs = [o for row in batch for o in row.outputs] if post else None
            return net(prompts, outputs).view(len(batch), -1)

        def loss_fn(batch: list[PoolFeedback]) -> torch.Tensor:
            logits = scores_of(batch)
            target = torch.tensor([row.scores for row in batch], dtype=logits.dtype, device=logits.device)
            mask = torch.ones_like(target, dtype=torch.bool)
            if config.objective == "expected":
                return expected_reward_loss(target, logits, mask)
            return distillation_kl(target, logits, mask, temperature=config.temperature)

        def validate() -> dict[str, float]:
            with torch.inference_mode():
                chosen = [
                    int(i)
                    for start in range(0, len(self.val_rows), 16)
                    for i in scores_of(self.val_rows[start : start + 16]).argmax(dim=-1).tolist()
                ]
            scores = pool_selection_metrics(program.task, valset, self.val_rows, chosen)
            if self.metric is not None:
                scores["score"] = chosen_metric(self.metric, program.task, valset, self.val_rows, chosen)
            return scores

        trainer = Trainer(
            module=net,
            config=config,
            loss_fn=loss_fn,
            validate=validate,
            save_best=net.save,
            name=name,
            base={
                "encoder": directory_fingerprint(resolve_encoder(selector.model)),
                "name_members": selector.name_members,
            },
        )
        self.result = trainer.fit(rows)
        best = out / "best"
        selector.use(SelectorNet(str(best), max_length=selector.max_length), best)
        outer._compiled = True
        return outer


def parsed_pool_outputs(
    task: Any, examples: Sequence[dspy.Example], rows: Sequence[PoolFeedback]
) -> dict[str, list[str]]:
    """Per pool member, its cached answer on each example as the task reads it (``TaskSpec.parse``):
    what the selector's validation, the report's columns and the oracle compare."""
    return {
        name: [task.parse(row.outputs[m], ex.input) for row, ex in zip(rows, examples)]
        for m, name in enumerate(rows[0].names)
    }


def pool_selection_metrics(
    task: Any, examples: Sequence[dspy.Example], rows: Sequence[PoolFeedback], chosen: Sequence[int]
) -> dict[str, float]:
    """Metrics of picking member ``chosen[i]`` on example ``i``, from the pool's cached answers."""
    names = rows[0].names
    return selection_metrics(
        task,
        [ex.input for ex in examples],
        [str(ex.output) for ex in examples],
        parsed_pool_outputs(task, examples, rows),
        [names[c] for c in chosen],
    )


def chosen_metric(
    metric: Metric,
    task: Any,
    examples: Sequence[dspy.Example],
    rows: Sequence[PoolFeedback],
    chosen: Sequence[int],
) -> float:
    """Mean of a user's ``metric`` over the cached answers of the members ``chosen`` per example."""
    parsed = parsed_pool_outputs(task, examples, rows)
    names = rows[0].names
    values = [
        metric_score(metric, example, parsed[names[c]][i], row.outputs[c])
        for i, (example, row, c) in enumerate(zip(examples, rows, chosen))
    ]
    return sum(values) / len(values)


def member_metrics(
    task: Any, examples: Sequence[dspy.Example], rows: Sequence[PoolFeedback]
) -> dict[str, dict[str, float]]:
    """Each pool member's own metrics (always picking that member), keyed by member name.

    A selection success rate means nothing for a single member, so it is left out.
    """
    metrics = {}
    for m, name in enumerate(rows[0].names):
        metrics[name] = pool_selection_metrics(task, examples, rows, [m] * len(rows))
        metrics[name].pop("success_rate")
    return metrics

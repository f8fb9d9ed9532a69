"""``Feedback``: the generator's answer with each candidate of each training example, scored.

For each training example the initial retriever proposes its top-``l`` profile items; the
generator answers the task with each single item in the prompt, and Eval scores each answer
against the gold (docs/method.md, Eq. 1-4). For RSPG (Eq. 5-7) the candidates are instead the top-``k``
items of each retriever of a pool, one prompt per retriever. Answers are computed in batches
(label scoring or batched generation for the in-process model, concurrent requests for a server
``dspy.LM``) and stored in the feedback cache (:mod:`optimizers.feedback.cache`) keyed by
:meth:`Generator.fingerprint` (the model by the content of its files, and the generation settings)
and the exact messages, so a second run or epoch, or a run restarted after an interruption,
repeats no finished work, while another checkpoint in a folder of the same name never reads this
one's answers. Each answer becomes a score by the signal (:mod:`optimizers.feedback.signals`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
import numpy as np

from optimizers import distributed
from optimizers.feedback.cache import FeedbackCache
from optimizers.feedback.records import CandidateFeedback, PoolFeedback
from optimizers.feedback.sharding import answer_missing
from optimizers.feedback.signals import TIE_BREAK, Signal, resolve_signal
from optimizers.metric import Metric, metric_score
from optimizers.reader import check_reader_task
from persona_rag.errors import ConfigError
from persona_rag.fingerprint import stable_hash
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import RetrievalResult, Retriever

__all__ = ["Feedback"]


@dataclass(frozen=True)
class _Job:
    """One model call to make: its cache key, what it computes (``answer`` or ``loglik``), the
    prompt, the labels, the content-free prompt and the gold."""

    key: str
    kind: str
    prompt: str
    labels: Any
    content_free: str | None
    gold: str


class Feedback:
    """Compute (and cache) the generator's feedback for each candidate of each training example.

    Args:
        program: the program whose retriever proposes candidates and whose generator answers.
        candidates: ``l``, the number of candidates per example (paper: 16).
        cache: the SQLite cache file.
        signal: ``metric`` (Eval of the answer, the paper's), ``likelihood`` (log p(gold)),
            ``metric+likelihood`` (Eval, ties broken by log p(gold)), ``expected`` (Eval expected
            under the label distribution) or ``auto``.
        batch_size: prompts per generator call (and per committed cache write).
        num_threads: concurrent requests for a server ``dspy.LM`` (default: the generator's
            ``concurrency``, ``--concurrency``).
        progress: show a progress bar with ETA.
        metric: a DSPy metric ``metric(example, prediction, trace=None)`` that replaces the task's
            Eval in the ``metric`` signals (:mod:`optimizers.metric`); ``None``: the task's Eval.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        feedback = Feedback(program=program, candidates=16, cache="runs/feedback.sqlite")
        rows = feedback.compute(trainset)
        rows[0].scores   # Eval per candidate, rows[0].candidates.ids their item ids
    """

    def __init__(
        self,
        *,
        program: PersonalizedRAG,
        candidates: int = 16,
        cache: str | Path = "runs/feedback.sqlite",
        signal: Signal = "metric",
        batch_size: int = 32,
        num_threads: int | None = None,
        progress: bool = True,
        metric: Metric | None = None,
    ) -> None:
        self.program, self.candidates, self.metric = program, candidates, metric
        self.signal = resolve_signal(signal, program)
        if metric is not None and self.signal == "likelihood":
            raise ConfigError(
                "a metric= is a training signal only with signal metric, metric+likelihood, expected or "
                "auto: the likelihood signal reads no answer to score. Use --signal metric"
            )
        if program.generator.local_model is not None:
            check_reader_task(program.generator.local_model.name, program.task.name)
        self.batch_size, self.num_threads, self.progress = batch_size, num_threads, progress
        if distributed.is_main():  # creates the file; the other processes of a launch then open it
            self.cache = FeedbackCache(cache)
        distributed.barrier()
        if not distributed.is_main():
            self.cache = FeedbackCache(cache)
        self.computed = 0  # model calls (answers or log-likelihoods) made by the last compute(), not cached
        self.seconds = 0.0  # wall time of those calls

    @staticmethod
    def _key(fingerprint: str, kind: str, messages: list[dict[str, Any]], extra: Any) -> str:
        return stable_hash([fingerprint, kind, messages, extra])

    def _loglik_from_answer(self, labels: Any, gold: str) -> bool:
        """Whether log p(gold) comes with the answer (raw label scores, gold a label): for
        ``metric+likelihood`` with label scoring, and always with a server model, which scores
        nothing but labels (:func:`resolve_signal` refused the rest)."""
        generator = self.program.generator
        if not (bool(labels) and generator.label_scoring and not generator.calibrate and gold in labels):
            return False
        return self.signal == "metric+likelihood" or generator.local_model is None

    def compute(self, examples: Sequence[dspy.Example]) -> list[CandidateFeedback]:
        """ROPG feedback: per example, the answer with each single top-``l`` candidate document."""
        program = self.program
        results = program.batch_retrieve(
            [ex.input for ex in examples], [ex.profile for ex in examples], k=self.candidates
        )
        prompts = [
            [(example, RetrievalResult((hit,))) for hit in result.hits]
            for example, result in zip(examples, results)
        ]
        answered = self._resolve(prompts)
        return [
            CandidateFeedback(
                str(example.get("id", e)),
                program.task.query(example.input),
                result,
                *self._outputs_and_scores(example, [value for _, value in rows]),
            )
            for e, (example, result, rows) in enumerate(zip(examples, results, answered))
        ]

    def compute_pool(
        self, examples: Sequence[dspy.Example], pool: Mapping[str, Retriever]
    ) -> list[PoolFeedback]:
        """RSPG feedback: per example, the answer with each pool retriever's top-``k`` items."""
        program = self.program
        inputs, profiles = [ex.input for ex in examples], [ex.profile for ex in examples]
        by_name = {name: program.batch_retrieve(inputs, profiles, retriever=r) for name, r in pool.items()}
        prompts = [[(ex, by_name[name][e]) for name in pool] for e, ex in enumerate(examples)]
        # Every member's answer, whatever the signal: RSPG-Post reads it, and the selector is
        # validated (and a report scored) on the metric of the answer it picks.
        answered = self._resolve(prompts, answers=True)
        return [
            PoolFeedback(
                str(example.get("id", e)),
                tuple(pool),
                tuple(prompt for prompt, _ in rows),
                *self._outputs_and_scores(example, [value for _, value in rows]),
                tuple(tuple(by_name[name][e].ids) for name in pool),
            )
            for e, (example, rows) in enumerate(zip(examples, answered))
        ]

    def compute_sets(
        self, examples: Sequence[dspy.Example], sets: Sequence[Sequence[RetrievalResult]]
    ) -> list[tuple[float, ...]]:
        """Set-level feedback (Set-PL): per example, the signal of each of its ordered item sets, all
        of a set's items in one prompt. The cache key is the prompt, which lists the items in
        order, so each exact ordered set is answered once, whichever step or run samples it again."""
        answered = self._resolve([[(ex, result) for result in group] for ex, group in zip(examples, sets)])
        return [
            self._outputs_and_scores(example, [value for _, value in rows])[1]
            for example, rows in zip(examples, answered)
        ]

    def _resolve(
        self, prompts: Sequence[Sequence[tuple[dspy.Example, RetrievalResult]]], *, answers: bool = False
    ) -> list[list[tuple[str, Any]]]:
        """The prompt and the cached or newly computed answer of every (example, retrieved items).

        ``answers``: generate the answer even for the ``likelihood`` signal (which alone needs
        none). Missing answers are computed in batches and each batch is committed to the cache at
        once, so an interrupted run repeats at most one batch.
        """
        program, task = self.program, self.program.task
        # The messages carry the prompt, instructions and demos; the generator's fingerprint the
        # model (by content: a retrained folder of the same name is another model) and settings.
        fingerprint = stable_hash(program.generator.fingerprint())
        jobs: dict[str, _Job] = {}
        keys: list[list[tuple[str, list[str]]]] = []
        for group in prompts:
            keys.append([])
            for example, result in group:
                labels = task.labels_for(example.input)
                prompt = program.build_prompt(example.input, result)
                gold = str(example.output)
                messages = program.generator.messages(prompt)
                content_free = program.content_free_prompt(example.input, result)
                kinds = []
                wants_loglik = "likelihood" in self.signal
                from_answer = wants_loglik and self._loglik_from_answer(labels, gold)
                if answers or self.signal != "likelihood" or from_answer:
                    kinds.append(("answer", [labels]))
                if wants_loglik and not from_answer:
                    kinds.append(("loglik", [gold]))
                prompt_keys = []
                for kind, extra in kinds:
                    key = self._key(fingerprint, kind, messages, extra)
                    prompt_keys.append(key)
                    jobs.setdefault(key, _Job(key, kind, prompt, labels, content_free, gold))
                keys[-1].append((prompt, prompt_keys))
        started = time.perf_counter()
        cached, self.computed = answer_missing(
            self.cache, jobs, self._answer, batch_size=self.batch_size, progress=self.progress
        )
        self.seconds = time.perf_counter() - started

        def merged(prompt_keys: list[str]) -> dict[str, Any]:  # one prompt's answer and/or log-likelihood
            return {name: value for key in prompt_keys for name, value in cached[key].items()}

        return [[(prompt, merged(prompt_keys)) for prompt, prompt_keys in group] for group in keys]

    def _outputs_and_scores(
        self, example: dspy.Example, values: Sequence[Any]
    ) -> tuple[tuple[str, ...], tuple[float, ...]]:
        task, gold = self.program.task, str(example.output)
        outputs = tuple(v.get("output", "") for v in values)
        if self.signal == "expected":
            return outputs, tuple(self._expected_eval(example, v["label_scores"]) for v in values)
        evals = [self._score(example, task.parse(o, example.input), o) for o in outputs]
        if self.signal == "metric":
            return outputs, tuple(evals)
        logliks = [float(v["loglik"]) if "loglik" in v else float(v["label_scores"][gold]) for v in values]
        if self.signal == "likelihood":
            return outputs, tuple(logliks)
        low, high = min(logliks), max(logliks)
        scaled = [(x - low) / (high - low) if high > low else 0.0 for x in logliks]
        return outputs, tuple(e + TIE_BREAK * x for e, x in zip(evals, scaled))

    def _score(self, example: dspy.Example, parsed: Any, output: str) -> float:
        """Eval of one answer: the task's, or the caller's ``metric=``."""
        if self.metric is None:
            return self.program.task.eval(str(example.output), parsed)
        return metric_score(self.metric, example, parsed, output)

    def _expected_eval(self, example: dspy.Example, label_scores: Mapping[str, float]) -> float:
        """Eval expected under the reader's distribution over the labels: the softmax of their
        scores, so it moves with every shift of probability, not only with the argmax."""
        task = self.program.task
        labels = list(label_scores)
        scores = np.array([label_scores[label] for label in labels], dtype=float)
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        evals = np.array([self._score(example, task.parse(label, example.input), label) for label in labels])
        return float(weights @ evals)

    def _answer(self, chunk: list[_Job]) -> dict[str, Any]:
        generator = self.program.generator
        rows: dict[str, Any] = {}
        scoring = [job for job in chunk if job.kind == "loglik"]
        if scoring:
            scores = generator.local_model.score(  # type: ignore[union-attr]
                [generator.messages(job.prompt) for job in scoring], [[job.gold] for job in scoring]
            )
            rows.update({job.key: {"loglik": float(row[0])} for job, row in zip(scoring, scores)})
        answering = [job for job in chunk if job.kind == "answer"]
        if answering:
            answers = generator.generate_batch(
                [job.prompt for job in answering],
                [job.labels for job in answering],
                [job.content_free for job in answering],
                num_threads=self.num_threads,
            )
            rows.update(
                {
                    job.key: {"output": answer.output, "label_scores": answer.get("label_scores")}
                    for job, answer in zip(answering, answers)
                }
            )
        return rows

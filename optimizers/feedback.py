"""LLM feedback per (input, candidate document or retriever): the costly signal ROPG and RSPG learn from.

For each training example the initial retriever proposes its top-``l`` profile items; the
generator answers the task with each single item in the prompt, and Eval scores each answer
against the gold (PAPER.md, Eq. 1-4). For RSPG (Eq. 5-7) the candidates are instead the top-``k``
items of each retriever of a pool, one prompt per retriever. Answers are computed in batches
(label scoring or batched generation for the in-process model, concurrent requests for a server
``dspy.LM``) and stored in
an SQLite cache keyed by the model, the generation settings and the exact messages, so a second
run or epoch, or a run restarted after an interruption, repeats no finished work.

A second, cheaper signal beyond the paper is offered: the log-likelihood of the gold output under
the generator with each candidate (one scoring pass; no decoding).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy

from optimizers.training import TrainingConfig
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import RetrievalResult, Retriever

__all__ = [
    "CandidateFeedback",
    "Feedback",
    "FeedbackCache",
    "FeedbackTrainingConfig",
    "PoolFeedback",
    "generator_fingerprint",
]

logger = logging.getLogger(__name__)

Signal = Literal["metric", "likelihood"]


@dataclass(frozen=True)
class CandidateFeedback:
    """The signal of one training example over its candidate documents.

    Attributes:
        example_id: the example's id (or its position).
        query: φ_q(x).
        candidates: the initial retriever's top-``l`` result (index 0 is the baseline d_b).
        outputs: the generator's answer with each single candidate (empty for ``likelihood``).
        scores: per candidate, Eval(y, answer) for ``metric`` or log p(y | prompt) for ``likelihood``.
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


@dataclass(frozen=True)
class PoolFeedback:
    """The signal of one training example over a pool of retrievers (RSPG, Eq. 7).

    Attributes:
        example_id: the example's id (or its position).
        names: the pool members, in pool order.
        prompts: φ_p(x, R_i(x)) for each member (what the Pre selector reads).
        outputs: the generator's answer to each prompt (what the Post selector reads too).
        scores: per member, Eval(y, answer) for ``metric`` or log p(y | prompt) for ``likelihood``.
    """

    example_id: str
    names: tuple[str, ...]
    prompts: tuple[str, ...]
    outputs: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class _Job:
    """One prompt to answer: its cache key, the prompt, the labels, the content-free prompt, the gold."""

    key: str
    prompt: str
    labels: Any
    content_free: str | None
    gold: str


@dataclass(kw_only=True)
class FeedbackTrainingConfig(TrainingConfig):
    """Settings of trainers that learn from LLM feedback (ROPG, RSPG), beside the shared ones.

    Attributes:
        max_examples: training examples used (``None``: all); each costs one LLM call per
            candidate document or pool member.
        max_val_examples: validation examples for early stopping and checkpoint choice.
        feedback_cache: SQLite file of LLM answers, shared between runs and methods.
        feedback_batch_size: prompts per generator batch.
    """

    max_examples: int | None = None
    max_val_examples: int | None = 100
    feedback_cache: str | Path = "runs/feedback.sqlite"
    feedback_batch_size: int = 32


class FeedbackCache:
    """A persistent key -> JSON map in SQLite: each committed batch survives an interruption."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS feedback (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                    f"SELECT key, value FROM feedback WHERE key IN ({marks})", chunk
                ):
                    found[key] = json.loads(value)
        return found

    def put_many(self, rows: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO feedback (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in rows.items()],
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def generator_fingerprint(program: PersonalizedRAG) -> dict[str, Any]:
    """What the generator's answers depend on, besides the messages: model and settings.

    A local checkpoint directory contributes the size and modification time of its files, so
    retraining a checkpoint in place does not reuse stale answers.
    """
    generator = program.generator
    local = generator.local_model
    if local is not None:
        model: Any = local.name
        directory = Path(local.name)
        if directory.is_dir():
            model = [
                local.name,
                sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()),
            ]
    else:
        lm = generator.lm
        model = [
            lm.model,
            {k: v for k, v in sorted(lm.kwargs.items()) if isinstance(v, str | int | float | bool)},
        ]
    return {
        "model": model,
        "label_scoring": generator.label_scoring,
        "calibrate": generator.calibrate,
        "label_decision": generator.label_decision,
        "label_normalization": generator.label_normalization,
        "answer_extraction": generator.answer_extraction,
        "max_new_tokens": generator.max_new_tokens,
        "max_input_tokens": program.settings.max_input_tokens,
    }


class Feedback:
    """Compute (and cache) the generator's feedback for each candidate of each training example.

    Args:
        program: the program whose retriever proposes candidates and whose generator answers.
        candidates: ``l``, the number of candidates per example (paper: 16).
        cache: the SQLite cache file.
        signal: ``metric`` (Eval of the answer, the paper's) or ``likelihood`` (log p(gold)).
        batch_size: prompts per generator call (and per committed cache write).
        num_threads: concurrent requests for a server ``dspy.LM``.
        progress: show a progress bar with ETA.

    Example:
        >>> feedback = Feedback(program=program, candidates=16, cache="runs/feedback.sqlite")
        >>> rows = feedback.compute(trainset)
        >>> rows[0].scores   # Eval per candidate, rows[0].candidates.ids their item ids
    """

    def __init__(
        self,
        *,
        program: PersonalizedRAG,
        candidates: int = 16,
        cache: str | Path = "runs/feedback.sqlite",
        signal: Signal = "metric",
        batch_size: int = 32,
        num_threads: int = 8,
        progress: bool = True,
    ) -> None:
        if signal not in ("metric", "likelihood"):
            raise ValueError(f"signal must be 'metric' or 'likelihood', got {signal!r}")
        if signal == "likelihood" and program.generator.local_model is None:
            raise ValueError("the likelihood signal needs an in-process model (Generator(lm=local_lm(...)))")
        self.program, self.candidates, self.signal = program, candidates, signal
        self.batch_size, self.num_threads, self.progress = batch_size, num_threads, progress
        self.cache = FeedbackCache(cache)
        self.computed = 0  # prompts answered by the model in the last compute() (not from the cache)

    def _key(self, fingerprint: str, messages: list[dict[str, Any]], extra: Any) -> str:
        payload = json.dumps([fingerprint, self.signal, messages, extra], sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

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
        answered = self._resolve(prompts)
        return [
            PoolFeedback(
                str(example.get("id", e)),
                tuple(pool),
                tuple(prompt for prompt, _ in rows),
                *self._outputs_and_scores(example, [value for _, value in rows]),
            )
            for e, (example, rows) in enumerate(zip(examples, answered))
        ]

    def _resolve(
        self, prompts: Sequence[Sequence[tuple[dspy.Example, RetrievalResult]]]
    ) -> list[list[tuple[str, Any]]]:
        """The prompt and the cached or newly computed answer of every (example, retrieved items).

        Missing answers are computed in batches and each batch is committed to the cache at once,
        so an interrupted run repeats at most one batch.
        """
        from tqdm.auto import tqdm

        program, task = self.program, self.program.task
        fingerprint = json.dumps(generator_fingerprint(program), sort_keys=True)
        jobs: dict[str, _Job] = {}
        keys: list[list[tuple[str, str]]] = []
        for group in prompts:
            keys.append([])
            for example, result in group:
                labels = task.labels_for(example.input)
                prompt = program.build_prompt(example.input, result)
                gold = str(example.output)
                extra = [labels, gold] if self.signal == "likelihood" else [labels]
                key = self._key(fingerprint, program.generator.messages(prompt), extra)
                keys[-1].append((prompt, key))
                content_free = program._content_free_prompt(example.input, result)
                jobs.setdefault(key, _Job(key, prompt, labels, content_free, gold))
        cached = self.cache.get_many(list(jobs))
        missing = [job for key, job in jobs.items() if key not in cached]
        self.computed = len(missing)
        logger.info("feedback: %d prompts, %d cached, %d to compute", len(jobs), len(cached), len(missing))
        with tqdm(total=len(missing), desc="feedback", unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                rows = self._answer(chunk)
                self.cache.put_many(rows)
                cached.update(rows)
                bar.update(len(chunk))
        return [[(prompt, cached[key]) for prompt, key in group] for group in keys]

    def _outputs_and_scores(
        self, example: dspy.Example, values: Sequence[Any]
    ) -> tuple[tuple[str, ...], tuple[float, ...]]:
        task = self.program.task
        outputs = tuple(v.get("output", "") for v in values)
        if self.signal == "metric":
            return outputs, tuple(
                task.eval(str(example.output), task.parse(o, example.input)) for o in outputs
            )
        return outputs, tuple(float(v["loglik"]) for v in values)

    def _answer(self, chunk: list[_Job]) -> dict[str, Any]:
        generator = self.program.generator
        if self.signal == "likelihood":
            model = generator.local_model
            scores = model.score(
                [generator.messages(job.prompt) for job in chunk], [[job.gold] for job in chunk]
            )  # type: ignore[union-attr]
            return {job.key: {"loglik": float(row[0])} for job, row in zip(chunk, scores)}
        answers = generator.generate_batch(
            [job.prompt for job in chunk],
            [job.labels for job in chunk],
            [job.content_free for job in chunk],
            num_threads=self.num_threads,
        )
        return {job.key: {"output": answer.output} for job, answer in zip(chunk, answers)}

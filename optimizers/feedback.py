"""LLM feedback per (input, candidate document): the costly signal that ROPG and RSPG learn from.

For each training example the initial retriever proposes its top-``l`` profile items; the
generator answers the task with each single item in the prompt, and Eval scores each answer
against the gold (PAPER.md, Eq. 1-4). Answers are computed in batches (label scoring or batched
generation for the in-process model, concurrent requests for a server ``dspy.LM``) and stored in
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy

from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import RetrievalResult

__all__ = ["CandidateFeedback", "Feedback", "FeedbackCache", "generator_fingerprint"]

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
        """Feedback for every example; cached answers are reused, missing ones computed in batches."""
        from tqdm.auto import tqdm

        program, task = self.program, self.program.task
        fingerprint = json.dumps(generator_fingerprint(program), sort_keys=True)
        queries = [task.query(ex.input) for ex in examples]
        results = program.batch_retrieve(
            [ex.input for ex in examples], [ex.profile for ex in examples], k=self.candidates
        )
        jobs = []  # (example index, candidate index, key, prompt, labels, content-free prompt, gold)
        keys_of: list[list[str]] = [[] for _ in examples]
        for e, (example, result) in enumerate(zip(examples, results)):
            labels = task.labels_for(example.input)
            for c, hit in enumerate(result.hits):
                single = RetrievalResult((hit,))
                prompt = program.build_prompt(example.input, single)
                extra = [labels, str(example.output)] if self.signal == "likelihood" else [labels]
                key = self._key(fingerprint, program.generator.messages(prompt), extra)
                keys_of[e].append(key)
                jobs.append(
                    (
                        e,
                        c,
                        key,
                        prompt,
                        labels,
                        program._content_free_prompt(example.input, single),
                        str(example.output),
                    )
                )
        cached = self.cache.get_many([job[2] for job in jobs])
        missing = [job for job in jobs if job[2] not in cached]
        self.computed = len(missing)
        logger.info("feedback: %d prompts, %d cached, %d to compute", len(jobs), len(cached), len(missing))
        with tqdm(total=len(missing), desc="feedback", unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                rows = self._answer(chunk)
                self.cache.put_many(rows)
                cached.update(rows)
                bar.update(len(chunk))
        out = []
        for e, (example, query, result) in enumerate(zip(examples, queries, results)):
            values = [cached[key] for key in keys_of[e]]
            outputs = tuple(v.get("output", "") for v in values)
            if self.signal == "metric":
                scores = tuple(task.eval(str(example.output), task.parse(o, example.input)) for o in outputs)
            else:
                scores = tuple(float(v["loglik"]) for v in values)
            out.append(CandidateFeedback(str(example.get("id", e)), query, result, outputs, scores))
        return out

    def _answer(self, chunk: list[tuple]) -> dict[str, Any]:
        generator = self.program.generator
        if self.signal == "likelihood":
            model = generator.local_model
            scores = model.score([generator.messages(job[3]) for job in chunk], [[job[6]] for job in chunk])  # type: ignore[union-attr]
            return {job[2]: {"loglik": float(row[0])} for job, row in zip(chunk, scores)}
        answers = generator.generate_batch(
            [job[3] for job in chunk],
            [job[4] for job in chunk],
            [job[5] for job in chunk],
            num_threads=self.num_threads,
        )
        return {job[2]: {"output": answer.output} for job, answer in zip(chunk, answers)}

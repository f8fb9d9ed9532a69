"""LLM feedback per (input, candidate document or retriever): the costly signal ROPG and RSPG learn from.

For each training example the initial retriever proposes its top-``l`` profile items; the
generator answers the task with each single item in the prompt, and Eval scores each answer
against the gold (docs/method.md, Eq. 1-4). For RSPG (Eq. 5-7) the candidates are instead the top-``k``
items of each retriever of a pool, one prompt per retriever. Answers are computed in batches
(label scoring or batched generation for the in-process model, concurrent requests for a server
``dspy.LM``) and stored in an SQLite cache keyed by :meth:`Generator.fingerprint` (the model by
the content of its files, and the generation settings) and the exact messages, so a second run or
epoch, or a run restarted after an interruption, repeats no finished work, while another
checkpoint in a folder of the same name never reads this one's answers.

Beyond the paper's signal (``metric``: Eval of the answer) two more are offered:

* ``likelihood``: the log-likelihood of the gold output with each candidate (one scoring pass, no
  decoding); it ranks candidates even when a weak reader gives the same answer whatever it reads.
* ``metric+likelihood``: Eval stays the primary key and log p(gold) only breaks its ties: the
  score is ``Eval + TIE_BREAK · l``, with ``l`` the example's log-likelihoods min-max scaled to
  [0, 1]. Candidates whose Eval differs by more than ``TIE_BREAK`` keep their order (always on
  LaMP-1/2/3, whose Eval steps are at least 0.25); candidates that tie on Eval (with a weak reader,
  most of them) are ordered by how likely they make the gold. With label scoring the likelihood
  comes from the same pass as the answer, so the signal costs no more than ``metric``.

* ``expected`` (label tasks): the expected Eval of the answer under the reader's distribution over
  the labels, ``sum_l p(l | prompt) · Eval(y, l)``, with ``p`` the softmax of the label scores.
  A candidate that moves probability toward the right label (or a near one, on a rating scale)
  counts even when the argmax answer stays the same, so candidates rarely tie. The label scores
  come with the answer, so it costs no more than ``metric``.

``auto`` (the trainers' default) is ``metric+likelihood`` where the model gives log p(gold) (an
in-process model; a server that returns log-probabilities, on one-character labels: the gold
label's score) and ``metric`` otherwise (:mod:`persona_rag.server` says which signals a server
cannot give). The choice rests on each signal's tie share and rank correlation with the metric of
the generated answer on training feedback (``benchmarks/README.md``, "Signals without ties"): on
both a label task and a generation task ``metric+likelihood`` never tied and ranked candidates
closest to the metric; ``likelihood`` alone costs no decoding but ranked free-text candidates far
less like the metric (Spearman 0.39 against 0.91).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import dspy
import numpy as np

from optimizers import distributed
from optimizers.metric import Metric, metric_score
from optimizers.reader import check_reader_task
from optimizers.training import TrainingConfig
from persona_rag.errors import (
    CacheError,
    ConfigError,
    NoSpaceError,
    PersonaRAGError,
    require_at_least,
    require_one_of,
)
from persona_rag.fingerprint import stable_hash
from persona_rag.io import no_space_left
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import RetrievalResult, Retriever
from persona_rag.server import gives_log_probs, scorable_labels

__all__ = [
    "SIGNALS",
    "TIE_BREAK",
    "CandidateFeedback",
    "Feedback",
    "FeedbackCache",
    "FeedbackTrainingConfig",
    "PoolFeedback",
    "carries_preference",
    "likelihood_missing",
    "resolve_signal",
    "tie_advice",
]

logger = logging.getLogger(__name__)

Signal = Literal["metric", "likelihood", "metric+likelihood", "expected", "auto"]
SIGNALS: tuple[str, ...] = get_args(Signal)
# Weight of the scaled log-likelihood in ``metric+likelihood``: below any Eval step of LaMP-1/2/3.
TIE_BREAK = 0.05


def resolve_signal(signal: str, program: PersonalizedRAG) -> str:
    """The concrete signal for ``program`` (see the module docstring for ``auto``); a signal the
    model cannot give (log p(gold), label scores) is refused with what to use instead."""
    if signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {', '.join(SIGNALS)}; got {signal!r}")
    missing = likelihood_missing(program)
    free_text = program.task.kind == "generation"
    if signal == "auto":
        return "metric" if missing else "metric+likelihood"
    if signal == "expected" and (free_text or not program.generator.label_scoring or missing):
        why = "its outputs are free text" if free_text else missing or "label scoring is off"
        raise ConfigError(
            f"the expected signal needs the reader's scores over {program.task.name}'s labels; here {why}. "
            "Use --signal likelihood for free-text tasks, or --signal metric"
        )
    if "likelihood" in signal and missing:
        raise ConfigError(
            f"the {signal} signal needs log p(gold): from an in-process model (Generator(lm=local_lm(...)), "
            f"--model) or from a server that returns log-probabilities for one-character labels; "
            f"here {missing}. Use --signal metric"
        )
    return signal


def tie_advice(program: PersonalizedRAG, signal: str, *more: str) -> str:
    """What to try when every training example's candidates score the same with ``signal``: the
    likelihood signals only where ``program``'s reader can give log p(gold) (a server without
    log-probabilities cannot), a reader that uses its profile, then the caller's ``more``."""
    options, why = [], ""
    if "likelihood" not in signal:
        missing = likelihood_missing(program)
        if missing is None:
            options.append(
                "--signal metric+likelihood or likelihood (log p(gold) still ranks the candidates)"
            )
        else:
            why = f" (the likelihood signals, which could break the ties, need log p(gold); here {missing})"
    options.append("a reader that uses its profile (--model runs/reader/best from persona-rag finetune)")
    options += more
    return f"Use {', '.join(options[:-1])} or {options[-1]}{why}"


def likelihood_missing(program: PersonalizedRAG) -> str | None:
    """Why ``program``'s reader cannot give log p(gold) (``None``: it can; an in-process model always
    can, a server as the gold label's score, :mod:`persona_rag.server`)."""
    if program.generator.local_model is not None:
        return None
    task, generator = program.task, program.generator
    fixed = () if task.labels_pattern else task.labels_for("")  # a pattern's labels vary per input
    if not scorable_labels(fixed):
        return f"{task.name}'s outputs are not one-character labels"
    if not generator.label_scoring or generator.calibrate:
        return "label scoring is off or calibrated"
    if not gives_log_probs(generator.lm):
        return "the LLM server returns no log-probabilities"
    return None


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
    """

    example_id: str
    names: tuple[str, ...]
    prompts: tuple[str, ...]
    outputs: tuple[str, ...]
    scores: tuple[float, ...]

    def members(self, names: Sequence[str]) -> PoolFeedback:
        """The same row restricted to (and ordered as) ``names``: a selector's pool out of a wider
        evaluation pass."""
        index = [self.names.index(name) for name in names]
        prompts, outputs, scores = (
            tuple(values[i] for i in index) for values in (self.prompts, self.outputs, self.scores)
        )
        return PoolFeedback(self.example_id, tuple(names), prompts, outputs, scores)


def carries_preference(row: CandidateFeedback | PoolFeedback) -> bool:
    """Whether a row's candidates (or pool members) score differently. A row whose scores are all
    equal carries no preference: distilled (ROPG-KD, RSPG), it only teaches a uniform ranking, which
    is what ``skip_uniform`` leaves out."""
    return max(row.scores) != min(row.scores)


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


@dataclass(kw_only=True)
class FeedbackTrainingConfig(TrainingConfig):
    """Settings of trainers that learn from LLM feedback (ROPG, RSPG), beside the shared ones.

    Attributes:
        max_examples: training examples used (``None``: all); each costs one LLM call per
            candidate document or pool member.
        max_val_examples: validation examples for early stopping and checkpoint choice.
        feedback_cache: SQLite file of LLM answers, shared between runs and methods.
        feedback_batch_size: prompts per generator batch.
        signal: what the LLM's feedback scores (see the module docstring): ``metric`` (the
            paper's), ``likelihood``, ``metric+likelihood``, ``expected`` or ``auto``.
    """

    max_examples: int | None = None
    max_val_examples: int | None = 100
    feedback_cache: str | Path = "runs/feedback.sqlite"
    feedback_batch_size: int = 32
    signal: Signal = "auto"

    # The cache holds answers keyed by content, so where it is and how it is filled change nothing.
    run_only: ClassVar[frozenset[str]] = TrainingConfig.run_only | {"feedback_cache", "feedback_batch_size"}

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, "max_examples", "max_val_examples", "feedback_batch_size")
        require_one_of(self, "signal", SIGNALS)


# SQLite's primary result code (the low byte of an extended one) for a full database or disk.
_SQLITE_FULL = 13


def _integrity(path: Path) -> str:
    """SQLite's own verdict on the file (``PRAGMA quick_check``): ``ok``, or what is wrong."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        return str(error)
    return "; ".join(str(row[0]) for row in rows)


def _cache_failure(path: Path, error: sqlite3.DatabaseError) -> PersonaRAGError:
    """What a failed read or write of the cache ``path`` means for the user, in one line.

    A full disk (SQLite's SQLITE_FULL, or any failure with no space left there: an existing cache
    then reports "disk I/O error") loses nothing committed, and the file must be kept. Deleting
    the file is advised only when SQLite's integrity check says it is damaged; a failure on an
    intact file says so, since its answers cost LLM calls to recompute.
    """
    if getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL or no_space_left(error, path.parent):
        return NoSpaceError(
            f"{path}: no space left on the device for the feedback cache ({error}); the answers "
            "committed before are kept in it, and only the batch being written is computed again. "
            "Free some space and run again"
        )
    verdict = _integrity(path)
    if verdict == "ok":
        return CacheError(
            f"{path}: the feedback cache cannot be used ({error}), but its integrity check passes, so "
            "its answers are intact: keep the file, check that its folder is writable and the disk "
            "works, and run again"
        )
    return CacheError(
        f"{path}: the feedback cache is corrupt ({type(error).__name__}: {error}; integrity check: "
        f"{verdict}); delete or move the cache file {path} and run again (its answers are recomputed)"
    )


class FeedbackCache:
    """A persistent key -> JSON map in SQLite: each committed batch survives an interruption.

    A failure names the file and says what it means (:func:`_cache_failure`): a full disk raises
    :class:`~persona_rag.errors.NoSpaceError` and keeps what was committed; a file that is not a
    readable SQLite database of this layout, or holds a value that is not JSON, raises
    :class:`~persona_rag.errors.CacheError`, which advises moving the file aside only when it is
    really damaged: the cache only saves work, so that loses nothing but time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if no_space_left(error, self.path.parent):
                raise NoSpaceError(f"{self.path.parent}: no space left on the device ({error})") from error
            raise
        self._lock = threading.Lock()
        with self._readable():
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS feedback (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._db.commit()

    @contextmanager
    def _readable(self, path: Path | None = None) -> Iterator[None]:
        """Turn a failure on this cache file (or ``path``) into one clear error that says what it
        means and what to do."""
        path = path or self.path
        try:
            yield
        except json.JSONDecodeError as error:
            raise CacheError(
                f"{path}: the feedback cache holds a value that is not JSON (JSONDecodeError: {error}); "
                f"delete or move the cache file {path} and run again (its answers are recomputed)"
            ) from error
        except sqlite3.DatabaseError as error:
            raise _cache_failure(path, error) from error

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock, self._readable():
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                    f"SELECT key, value FROM feedback WHERE key IN ({marks})", chunk
                ):
                    found[key] = json.loads(value)
        return found

    def put_many(self, rows: dict[str, Any]) -> None:
        with self._lock, self._readable(), self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO feedback (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in rows.items()],
            )

    def __len__(self) -> int:
        with self._lock, self._readable():
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def shard(self, rank: int) -> Path:
        """The file process ``rank`` of a multi-process launch writes its answers to, beside this
        one: one writer per file, so no two processes ever write the same SQLite database."""
        return self.path.with_name(f"{self.path.name}.shard-{rank}")

    def shards(self) -> list[Path]:
        """Shard files waiting to be merged (a launch of any size, finished or killed)."""
        return sorted(self.path.parent.glob(f"{self.path.name}.shard-*[0-9]"))

    def merge_shards(self) -> int:
        """Move every shard's rows into this cache, one transaction per shard, then delete it.

        A merge cut short leaves each shard either merged whole or not at all; a shard merged but
        not yet deleted is merged again, which changes nothing (the rows are keyed by content).
        Returns the number of rows moved.
        """
        moved = 0
        for shard in self.shards():
            with self._lock, self._readable(shard):
                self._db.execute("ATTACH DATABASE ? AS shard", (str(shard),))
                try:
                    tables = "SELECT 1 FROM shard.sqlite_master WHERE type = 'table' AND name = 'feedback'"
                    if self._db.execute(tables).fetchone():  # else killed before its first write
                        with self._db:
                            copy = "INSERT OR REPLACE INTO feedback SELECT key, value FROM shard.feedback"
                            moved += self._db.execute(copy).rowcount
                finally:
                    self._db.execute("DETACH DATABASE shard")
            for leftover in (shard, *(shard.with_name(shard.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
        if moved:  # readers on other machines then find every row in the database file itself
            with self._lock:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return moved

    def close(self) -> None:
        with self._lock:
            self._db.close()


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
        from tqdm.auto import tqdm

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
        cached = self._sharded(jobs, tqdm)
        self.seconds = time.perf_counter() - started

        def merged(prompt_keys: list[str]) -> dict[str, Any]:  # one prompt's answer and/or log-likelihood
            return {name: value for key in prompt_keys for name, value in cached[key].items()}

        return [[(prompt, merged(prompt_keys)) for prompt, prompt_keys in group] for group in keys]

    def _sharded(self, jobs: dict[str, _Job], tqdm: Any) -> dict[str, Any]:
        """Every job's answer: from the cache, or computed, each process of a launch computing
        every ``world``-th missing job into its own shard file, which the main process merges.

        The main process first merges what an earlier, interrupted launch of any size left in
        shards, so a resume (with any process count) computes only what no process committed.
        One process writes straight into the cache, as it always did.
        """
        world, me = distributed.world_size(), distributed.rank()
        if distributed.is_main():
            self.cache.merge_shards()
        distributed.barrier()
        cached = self.cache.get_many(list(jobs))
        missing = [job for key, job in jobs.items() if key not in cached]
        mine = missing[me::world]
        logger.info(
            "feedback: %d prompts, %d cached, %d to compute (%d by process %d of %d)",
            len(jobs), len(cached), len(missing), len(mine), me, world,
        )  # fmt: skip
        writer = self.cache if world == 1 else FeedbackCache(self.cache.shard(me))
        shown = self.progress and distributed.is_main()
        try:
            with tqdm(total=len(mine), desc="feedback", unit="prompt", disable=not shown) as bar:
                for start in range(0, len(mine), self.batch_size):
                    chunk = mine[start : start + self.batch_size]
                    rows = self._answer(chunk)
                    writer.put_many(rows)
                    cached.update(rows)
                    bar.update(len(chunk))
        finally:
            if writer is not self.cache:
                writer.close()
        self.computed = int(distributed.all_sum([len(mine)])[0])  # by the whole launch
        if world > 1:
            distributed.barrier()  # every shard is complete and closed
            if distributed.is_main():
                self.cache.merge_shards()
            distributed.barrier()
            cached.update(self.cache.get_many([job.key for job in missing]))
        return cached

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

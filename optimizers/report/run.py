"""The paper's comparison on one task directory: Table 3 (plus Tables 4 and 5) with paired
significance, as Markdown, a PNG chart and JSON.

Columns: the fixed retrievers NoPers, Random, Recency, BM25 and Dense; ROPG-RL and ROPG-KD (the
dense retriever tuned with the LLM's feedback on single items); Set-PL (the dense retriever tuned
with the LLM's feedback on the whole set of k items, :mod:`optimizers.set_pl`, trained on the same
questions and validation as ROPG); RSPG-Pre and RSPG-Post (selectors over the pool of
the paper's six retrievers: none, recency, BM25, dense, ROPG-RL, ROPG-KD); the oracle that picks
the best (and the worst) pool member per input.

The protocol is the one a result needs: every trained part picks its checkpoint on a validation
set carved from the *train* split (each user's latest training question), the reported splits
(test, dev) are never trained or selected on, and :func:`run_report` refuses to run when a
reported question was seen by training, validation or the reader's fine-tuning (read from the
reader checkpoint's record). Every column is compared with the best fixed retriever of its split
by a paired test (bootstrap interval and randomisation p-value, :mod:`persona_rag.significance`),
ROPG-RL, ROPG-KD and Set-PL also with Dense, the untuned retriever they start from (whether the
metric's feedback improved the retriever it tuned is a question of its own), and Set-PL with
ROPG-KD (whether choosing the set beats choosing items one by one).

Every stage writes into its own directory and all LLM answers go through one feedback cache, so
an interrupted report started again repeats no finished training or generation. The evaluation
answers each reported question once per pool member (one batched, cached pass) and scores every
column from those answers: a single-retriever pipeline is its member's answer, RSPG the answer of
the member its selector picks (what the program would generate, as generation is deterministic).
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dspy

from optimizers.configs import ROPGKDConfig, ROPGRLConfig, RSPGConfig, SetPLConfig
from optimizers.feedback import Feedback, PoolFeedback
from optimizers.reader import reader_training_ids
from optimizers.report.config import ReportConfig
from optimizers.report.results import (
    COLUMNS,
    FIXED_COLUMNS,
    MEMBER_COLUMNS,
    ROPG_COLUMNS,
    ROPG_START,
    SET_COLUMN,
    SET_RIVAL,
    Report,
    SplitReport,
)
from optimizers.report.tables import write_report
from optimizers.ropg import ROPG_KD, ROPG_RL
from optimizers.rspg import RSPG, member_metrics, parsed_pool_outputs, pool_selection_metrics
from optimizers.set_pl import SetPL
from optimizers.training import TrainingResult, config_dict
from persona_rag.data import carve_validation, check_disjoint
from persona_rag.errors import ConfigError, ProgramError
from persona_rag.evaluation import oracle_metrics
from persona_rag.io import atomic_write_json
from persona_rag.portable import write_portable_json
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import (
    BM25Retriever,
    DenseRetriever,
    NoRetriever,
    RandomRetriever,
    RecencyRetriever,
    Retriever,
)
from persona_rag.selector import Selector
from persona_rag.significance import significance_against

__all__ = ["run_report"]


def _stage_cost(
    feedback_cost: tuple[int, float], result: TrainingResult | None, *, directory: Path
) -> dict[str, Any]:
    """What a stage cost, for sizing a run: feedback and optimizer rates, and the process's peak
    RSS so far (the stages run in order, so the first stage whose figure jumps is the one to blame).

    Kept in ``directory/cost.json``: a resumed report whose stage finished in an earlier process
    (its feedback all cached, its training done) shows that process's figures, not zero calls.
    """
    calls, seconds = feedback_cost
    steps, step_seconds = (result.steps, result.step_seconds) if result else (0, 0.0)
    cost = {
        "feedback_calls": calls,
        "feedback_seconds": seconds,
        "feedback_calls_per_second": calls / seconds if seconds else None,
        "steps": steps,
        "step_seconds": step_seconds,
        "steps_per_second": steps / step_seconds if step_seconds else None,
        "best_epoch": result.best_epoch if result else None,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "history": result.history if result else [],
    }
    path = directory / "cost.json"
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    if earlier and not calls:  # every feedback row came from the cache an earlier process filled
        feedback = ("feedback_calls", "feedback_seconds", "feedback_calls_per_second")
        cost.update({key: earlier[key] for key in feedback})
        if earlier["steps"] == steps:  # and the training was done there too
            cost["peak_rss_gib"] = earlier["peak_rss_gib"]
    atomic_write_json(path, cost)
    return cost


def _protocol(
    program: PersonalizedRAG,
    train: list[dspy.Example],
    rspg_train: list[dspy.Example],
    val: list[dspy.Example],
    evalsets: Mapping[str, Sequence[dspy.Example]],
) -> dict[str, Any]:
    """Refuse any reported question that training, validation or the reader's fine-tuning saw."""
    local = program.generator.local_model
    reader_ids = reader_training_ids(local.name) if local is not None else set()
    seen = [*train, *rspg_train, *val, *(dspy.Example(id=i) for i in sorted(reader_ids))]
    for split, examples in evalsets.items():
        check_disjoint(seen, examples, what=f"report on {split}")
    return {
        "ropg_train_questions": len(train),
        "rspg_train_questions": len(rspg_train),
        "val_questions": len(val),
        "val_rule": "each drawn user's latest train question (carved from the train split)",
        "reader_questions_seen": len(reader_ids),
        "reported": {split: len(examples) for split, examples in evalsets.items()},
        "overlap_checked": True,
    }


def run_report(
    program: PersonalizedRAG,
    *,
    trainset: Sequence[dspy.Example],
    evalsets: Mapping[str, Sequence[dspy.Example]],
    config: ReportConfig | None = None,
) -> Report:
    """Train ROPG-RL/KD and RSPG-Pre/Post from ``program`` (a dense-retriever program whose
    generator is the reader to personalise), evaluate every column on each of ``evalsets``
    (e.g. ``{"test": ..., "dev": ...}``) and write ``table.md``, ``table.png``, ``report.json``
    and each split's ``predictions-<split>.json`` (every column's answers and the ids of the items
    behind them) into ``config.output_dir``.

    Raises:
        ConfigError: when a reported question was used for training, validation or the reader's
            fine-tuning, or a reported split has no golds.
    """
    config = config or ReportConfig()
    out = Path(config.output_dir)
    cache = Path(config.feedback_cache or out / "feedback.sqlite")
    if not isinstance(program.retriever, DenseRetriever):
        raise ProgramError("run_report starts from a program with a DenseRetriever (the one ROPG tunes)")
    for split, examples in evalsets.items():
        if not examples or any(e.get("output") is None for e in examples):
            raise ConfigError(f"report on {split}: the split is empty or has no gold outputs")
    carved = carve_validation(list(trainset), size=config.val_examples, seed=config.seed)
    train, val = carved.train[: config.train_examples], carved.val
    rspg_train = carved.train[: config.rspg_train_examples or config.train_examples]
    protocol = _protocol(program, train, rspg_train, val, evalsets)
    atomic_write_json(out / "config.json", config_dict(config))
    seconds: dict[str, float] = {}
    training: dict[str, dict[str, Any]] = {}
    shared = {  # what every trainer of the report shares
        "feedback_cache": cache,
        "signal": config.signal,
        "batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "max_val_examples": config.val_examples,
        "patience": config.patience,
        "seed": config.seed,
        "resume": config.resume,
    }

    pool: dict[str, Retriever] = {
        "none": NoRetriever(),
        "recency": RecencyRetriever(),
        "bm25": BM25Retriever(),
        "dense": program.retriever,
    }
    kd_options = {"signal": config.kd_signal or config.signal, "free_ties": config.kd_free_ties}
    tuned: dict[str, Retriever] = {}
    trainers = [("ropg-rl", ROPG_RL, ROPGRLConfig, {}), ("ropg-kd", ROPG_KD, ROPGKDConfig, kd_options)]
    if config.set_pl:
        trainers.append(("set-pl", SetPL, SetPLConfig, {}))
    for name, optimizer_class, config_class, options in trainers:
        start = time.perf_counter()
        given = config.ropg_checkpoints.get(name)
        if given:
            tuned[name] = DenseRetriever(encoder=str(given))
        else:
            optimizer = optimizer_class(
                config=config_class(
                    output_dir=out / name,
                    candidates=config.candidates,
                    epochs=config.ropg_epochs,
                    learning_rate=config.ropg_learning_rate,
                    **(shared | options),
                )
            )
            tuned[name] = optimizer.compile(program, trainset=train, valset=val).retriever
            training[name] = _stage_cost(optimizer.feedback_cost, optimizer.result, directory=out / name)
        seconds[name] = time.perf_counter() - start
    pool.update({name: tuned[name] for name in ("ropg-rl", "ropg-kd")})  # the paper's six; Set-PL is a row

    selectors: dict[str, Selector] = {}
    for mode in ("pre", "post"):
        start = time.perf_counter()
        student = program.deepcopy()
        student.selector = Selector(pool=pool, mode=mode)
        rspg = RSPG(
            config=RSPGConfig(
                output_dir=out / f"rspg-{mode}",
                epochs=config.rspg_epochs,
                learning_rate=config.rspg_learning_rate,
                objective=config.rspg_objective,
                trainable_layers=config.rspg_trainable_layers,
                gradient_checkpointing=config.rspg_trainable_layers is None,
                **shared,
            )
        )
        selectors[mode] = rspg.compile(student, trainset=rspg_train, valset=val).selector
        write_portable_json(out / f"rspg-{mode}" / "selector.json", selectors[mode].dump_state(), root=out)
        training[f"rspg-{mode}"] = _stage_cost(
            rspg.feedback_cost, rspg.result, directory=out / f"rspg-{mode}"
        )
        seconds[f"rspg-{mode}"] = time.perf_counter() - start

    # Random and Set-PL are columns, not members of the selectors' pool.
    members = {**pool, "random": RandomRetriever(seed=config.seed)}
    if "set-pl" in tuned:
        members["set-pl"] = tuned["set-pl"]
    splits: dict[str, SplitReport] = {}
    for split, examples in evalsets.items():
        start = time.perf_counter()
        rows = Feedback(program=program, cache=cache).compute_pool(list(examples), members)
        seconds[f"{split} answers"] = time.perf_counter() - start
        splits[split], predictions = _score(
            program, split, list(examples), rows, list(pool), selectors, config
        )
        atomic_write_json(out / f"predictions-{split}.json", predictions)
    report = Report(program.task.name, splits, protocol, training, seconds, parsing=program.task.parsing)
    write_report(report, out)
    return report


def _score(
    program: PersonalizedRAG,
    split: str,
    examples: list[dspy.Example],
    rows: list[PoolFeedback],
    pool_names: list[str],
    selectors: dict[str, Selector],
    config: ReportConfig,
) -> tuple[SplitReport, dict[str, list[dict[str, Any]]]]:
    """The split's metrics and paired tests, and per column its predictions
    (:meth:`~optimizers.feedback.PoolFeedback.prediction`: the pool member that answered each
    question, the ids of the items it retrieved and its answer), what ``predictions-<split>.json``
    holds, so that two columns that differ can be told apart by their items."""
    task = program.task
    names = list(rows[0].names)
    inputs, golds = [ex.input for ex in examples], [str(ex.output) for ex in examples]
    parsed = parsed_pool_outputs(task, examples, rows)
    answers = {MEMBER_COLUMNS[n]: parsed[n] for n in names}
    metrics = {MEMBER_COLUMNS[n]: values for n, values in member_metrics(task, examples, rows).items()}
    pool_rows = [row.members(pool_names) for row in rows]
    success: dict[str, float] = {}
    picked = {MEMBER_COLUMNS[n]: [n] * len(rows) for n in names}
    for mode, selector in selectors.items():
        selections = selector.batch_select(
            [list(row.prompts) for row in pool_rows],
            [list(row.outputs) for row in pool_rows] if mode == "post" else None,
        )
        column = f"RSPG-{mode.capitalize()}"
        chosen = [pool_names.index(s.chosen) for s in selections]
        metrics[column] = pool_selection_metrics(task, examples, pool_rows, chosen)
        success[column] = metrics[column].pop("success_rate")
        answers[column] = [parsed[pool_names[c]][i] for i, c in enumerate(chosen)]
        picked[column] = [pool_names[c] for c in chosen]
    pool_outputs = {n: parsed[n] for n in pool_names}
    metrics["Oracle"] = oracle_metrics(task, inputs, golds, pool_outputs)
    metrics["Oracle"].pop("success_rate")
    worst = oracle_metrics(task, inputs, golds, pool_outputs, best=False)
    worst.pop("success_rate")

    primary, sign = task.primary_metric, (1 if task.lower_is_better else -1)
    baseline = min(FIXED_COLUMNS, key=lambda column: sign * metrics[column][primary])
    significance = significance_against(
        task, inputs, golds, answers, baseline, resamples=config.resamples, seed=config.seed
    )
    paired = {"resamples": config.resamples, "seed": config.seed}
    tuned = {c: answers[c] for c in (ROPG_START, *ROPG_COLUMNS, SET_COLUMN) if c in answers}
    against_start = significance_against(task, inputs, golds, tuned, ROPG_START, **paired)
    against_rival = {}
    if SET_COLUMN in answers:
        rivals = {column: answers[column] for column in (SET_RIVAL, SET_COLUMN)}
        against_rival = significance_against(task, inputs, golds, rivals, SET_RIVAL, **paired)
    metrics = {column: metrics[column] for column in COLUMNS if column in metrics}  # Table 3's order
    predictions = {
        column: [row.prediction(task, ex, row.names.index(m)) for ex, row, m in zip(examples, rows, members)]
        for column, members in picked.items()
    }
    result = SplitReport(
        split, len(examples), metrics, success, worst, baseline, significance, against_start, against_rival
    )
    return result, predictions

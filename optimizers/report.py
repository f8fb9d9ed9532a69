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
import logging
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from optimizers.feedback import SIGNALS, Feedback, PoolFeedback, Signal
from optimizers.plots import panel_chart
from optimizers.reader import reader_training_ids
from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from optimizers.rspg import RSPG, RSPGConfig, member_metrics, parsed_pool_outputs, pool_selection_metrics
from optimizers.set_pl import SetPL, SetPLConfig
from optimizers.training import TrainingResult, config_dict
from persona_rag.data import carve_validation, check_disjoint
from persona_rag.errors import ConfigError, ProgramError, require_at_least, require_one_of, require_positive
from persona_rag.evaluation import oracle_metrics
from persona_rag.io import atomic_write_bytes, atomic_write_json, atomic_write_text
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
from persona_rag.significance import format_difference, significance_against
from persona_rag.tasks import PARSING_NOTES

__all__ = [
    "COLUMNS",
    "FIXED_COLUMNS",
    "ROPG_START",
    "SET_COLUMN",
    "SET_RIVAL",
    "Report",
    "ReportConfig",
    "SplitReport",
    "run_report",
]

logger = logging.getLogger(__name__)

FIXED_COLUMNS = ("NoPers", "Random", "Recency", "BM25", "Dense")
ROPG_COLUMNS = ("ROPG-RL", "ROPG-KD")
ROPG_START = "Dense"
"""The fixed column ROPG's rows are also compared with: the untuned retriever they tune."""
SET_COLUMN, SET_RIVAL = "Set-PL", "ROPG-KD"
"""The set-level row, and the item-level row it is also compared with."""
COLUMNS = (*FIXED_COLUMNS, *ROPG_COLUMNS, SET_COLUMN, "RSPG-Pre", "RSPG-Post", "Oracle")
_MEMBER_COLUMNS = {"none": "NoPers", "random": "Random", "recency": "Recency", "bm25": "BM25",
                   "dense": "Dense", "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD",
                   "set-pl": SET_COLUMN}  # fmt: skip


@dataclass(kw_only=True)
class ReportConfig:
    """Budget and settings of the comparison.

    Attributes:
        output_dir: where every stage, the tables and the chart go.
        train_examples: training questions for ROPG (``None``: the whole train split less the
            validation questions); each costs ``candidates`` LLM scoring passes.
        rspg_train_examples: training questions for the selectors (``None``: as for ROPG); each
            costs one LLM pass per pool member, with ``k`` items in the prompt.
        val_examples: validation questions carved from the train split (each drawn user's latest
            question), for every stage's checkpoint choice.
        candidates: ``l`` of ROPG.
        signal: the feedback signal (:mod:`optimizers.feedback`); ``auto`` is metric+likelihood for
            an in-process reader.
        kd_signal: ROPG-KD's own signal (``None``: ``signal``).
        kd_free_ties: ROPG-KD's ``free_ties`` (:class:`~optimizers.ropg.ROPGKDConfig`).
        ropg_epochs, ropg_learning_rate: ROPG training.
        rspg_epochs, rspg_learning_rate: selector training.
        rspg_trainable_layers: train only the selector encoder's last this many layers
            (:class:`~optimizers.rspg.RSPGConfig`; ``None``: every weight, with activation
            checkpointing). Last-layer training keeps few activations, so it runs without
            recomputing them: about half the step time of every weight (``benchmarks/selector_memory.py``).
        batch_size, gradient_accumulation_steps: both trainers.
        patience: early stopping of both trainers (epochs without a better validation score).
        set_pl: train and report the Set-PL row. Each of its questions costs ``samples`` reader
            calls with all k items per epoch, more than ROPG's whole feedback on generation tasks;
            ``False`` leaves the row (and its comparison with ROPG-KD) out of the table.
        ropg_checkpoints: already trained encoders (``{"ropg-kd": dir}``, also ``"set-pl"``) to use
            instead of training.
        feedback_cache: the shared LLM answer cache (default: ``output_dir/feedback.sqlite``).
        resamples: bootstrap resamples and randomisation rounds of the significance tests.
        seed: training seed and the draw of validation users.
        resume: let each trainer resume its state in ``output_dir`` (``False``: start fresh).
    """

    output_dir: str | Path = "reports/report"
    train_examples: int | None = None
    rspg_train_examples: int | None = None
    val_examples: int = 150
    candidates: int = 16
    signal: Signal = "auto"
    kd_signal: Signal | None = None
    kd_free_ties: bool = False
    ropg_epochs: int = 3
    ropg_learning_rate: float = 1e-5
    rspg_epochs: int = 5
    rspg_learning_rate: float = 5e-5
    rspg_trainable_layers: int | None = None
    batch_size: int = 8
    gradient_accumulation_steps: int = 2
    patience: int | None = 2
    set_pl: bool = True
    ropg_checkpoints: dict[str, str | Path] = field(default_factory=dict)
    feedback_cache: str | Path | None = None
    resamples: int = 2000
    seed: int = 0
    resume: bool = True

    def __post_init__(self) -> None:
        """Refuse at once what would otherwise fail at the stage that reads it, hours in."""
        require_at_least(self, 2, "candidates")
        require_at_least(
            self,
            1,
            "train_examples",
            "rspg_train_examples",
            "val_examples",
            "ropg_epochs",
            "rspg_epochs",
            "rspg_trainable_layers",
            "batch_size",
            "gradient_accumulation_steps",
            "resamples",
        )
        require_at_least(self, 0, "patience")
        require_positive(self, "ropg_learning_rate", "rspg_learning_rate")
        require_one_of(self, "signal", SIGNALS)
        require_one_of(self, "kd_signal", (None, *SIGNALS))


@dataclass
class SplitReport:
    """What :func:`run_report` measured on one reported split.

    Attributes:
        split: the split's name.
        n: questions.
        metrics: per column (``COLUMNS``), the task metrics plus ``score`` (mean Eval).
        success_rate: per selector column, the selection success rate (Table 4).
        oracle_worst: the metrics of always picking the worst pool member (the lower bound).
        baseline: the best fixed retriever on this split by the task's primary metric.
        significance: per column, per metric, the paired difference against ``baseline``
            (``system``, ``baseline``, ``difference``, ``low``, ``high``, ``p_value``, ``better``).
        against_start: the same for ROPG-RL, ROPG-KD and Set-PL against :data:`ROPG_START`
            (Dense), the untuned retriever they tune.
        against_rival: the same for Set-PL against :data:`SET_RIVAL` (ROPG-KD).
    """

    split: str
    n: int
    metrics: dict[str, dict[str, float]]
    success_rate: dict[str, float]
    oracle_worst: dict[str, float]
    baseline: str
    significance: dict[str, dict[str, dict[str, Any]]]
    against_start: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    against_rival: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Report:
    """A whole comparison.

    Attributes:
        task: the task name.
        splits: per reported split, its results.
        protocol: what was trained and validated on (counts, and the check that no reported
            question was among them).
        training: per trained stage, its cost (feedback calls and seconds, optimizer steps and
            seconds, their rates) and its best epoch.
        seconds: wall time per stage.
        parsing: how answers were read and scored (``TaskSpec.parsing``), said in ``table.md``.
    """

    task: str
    splits: dict[str, SplitReport]
    protocol: dict[str, Any]
    training: dict[str, dict[str, Any]]
    seconds: dict[str, float]
    parsing: str = "lamp"


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
    (e.g. ``{"test": ..., "dev": ...}``) and write ``table.md``, ``table.png`` and
    ``report.json`` into ``config.output_dir``.

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
    trainers = [("ropg-rl", ROPG_RL, ROPGConfig, {}), ("ropg-kd", ROPG_KD, ROPGKDConfig, kd_options)]
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
        splits[split] = _score(program, split, list(examples), rows, list(pool), selectors, config)
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
) -> SplitReport:
    task = program.task
    names = list(rows[0].names)
    inputs, golds = [ex.input for ex in examples], [str(ex.output) for ex in examples]
    parsed = parsed_pool_outputs(task, examples, rows)
    answers = {_MEMBER_COLUMNS[n]: parsed[n] for n in names}
    metrics = {_MEMBER_COLUMNS[n]: values for n, values in member_metrics(task, examples, rows).items()}
    pool_rows = [row.members(pool_names) for row in rows]
    success: dict[str, float] = {}
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
    return SplitReport(
        split, len(examples), metrics, success, worst, baseline, significance, against_start, against_rival
    )


def _task_metrics(report: Report) -> list[str]:
    first = next(iter(report.splits.values()))
    return [k for k in first.metrics["NoPers"] if k != "score"]


def markdown_table(report: Report) -> str:
    """Per split: Table 3's layout (one row per metric, one column per method; ``*`` marks a
    significant improvement over the best fixed retriever, ``†`` that baseline), the paired
    differences behind the marks, then Tables 4 and 5."""
    task_metrics = _task_metrics(report)
    lines = [
        f"Task {report.task}. Validation: {report.protocol['val_rule']}; reported splits unseen.",
        f"Parsing: {report.parsing} ({PARSING_NOTES[report.parsing]}).",
    ]
    for split in report.splits.values():
        lines += [
            "",
            f"### {split.split}: {split.n} questions (* p < 0.05 better than {split.baseline} †)",
            "",
            "| metric | " + " | ".join(split.metrics) + " |",
            "|---|" + "---|" * len(split.metrics),
        ]
        for metric in [*task_metrics, "score"]:
            cells = []
            for column in split.metrics:
                mark = "†" if column == split.baseline else ""
                tested = split.significance.get(column, {}).get(metric)
                if tested and tested["better"]:
                    mark = "*"
                cells.append(f"{split.metrics[column][metric]:.3f}{mark}")
            label = "mean Eval" if metric == "score" else metric
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += _differences(f"vs {split.baseline}", split.significance, task_metrics)
        if split.against_start:
            title = f"vs {ROPG_START} (ROPG's untuned start)"
            lines += _differences(title, split.against_start, task_metrics)
        if split.against_rival:
            title = f"vs {SET_RIVAL} (items scored one by one)"
            lines += _differences(title, split.against_rival, task_metrics)
        lines += ["", "| selection success rate | " + " | ".join(split.success_rate) + " |"]
        lines += ["|---|" + "---|" * len(split.success_rate)]
        lines += ["| | " + " | ".join(f"{v:.3f}" for v in split.success_rate.values()) + " |"]
        lines += ["", "| oracle bounds | " + " | ".join(task_metrics) + " |"]
        lines += ["|---|" + "---|" * len(task_metrics)]
        for label, values in (
            ("best member (upper)", split.metrics["Oracle"]),
            ("worst member (lower)", split.oracle_worst),
        ):
            lines.append(f"| {label} | " + " | ".join(f"{values[m]:.3f}" for m in task_metrics) + " |")
    if report.training:
        lines += [
            "",
            "| stage | feedback calls | calls/s | optimizer steps | steps/s | best epoch | peak RSS (GiB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for stage, cost in report.training.items():
            cells = [cost["feedback_calls"], cost["feedback_calls_per_second"], cost["steps"]]
            cells += [cost["steps_per_second"], cost["best_epoch"], cost.get("peak_rss_gib")]
            lines.append(f"| {stage} | " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _differences(
    title: str, tested: Mapping[str, Mapping[str, Mapping[str, Any]]], metrics: list[str]
) -> list[str]:
    """A table of paired differences (one row per system), ``*`` where significantly better."""
    lines = ["", f"| {title} | " + " | ".join(f"{m} diff [95% CI] p" for m in metrics) + " |"]
    lines.append("|---|" + "---|" * len(metrics))
    for column, by_metric in tested.items():
        if column == "Oracle":
            continue
        lines.append(f"| {column} | " + " | ".join(format_difference(by_metric[m]) for m in metrics) + " |")
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def chart(report: Report) -> bytes:
    """One panel per (split, task metric), one bar per method (PNG bytes)."""
    panels = [
        (f"{split.split} ({split.n}): {metric}", {c: row[metric] for c, row in split.metrics.items()})
        for split in report.splits.values()
        for metric in _task_metrics(report)
    ]
    return panel_chart(panels, colour=_color, title=report.task)


def _color(column: str) -> str:
    """Grey for fixed retrievers, blue for tuned ones, orange for selectors, green for the oracle."""
    if column in FIXED_COLUMNS:
        return "#999999"
    if column.startswith("RSPG"):
        return "#dd8452"
    return "#55a868" if column == "Oracle" else "#4c72b0"


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """``table.md``, ``table.png`` and ``report.json``, each written atomically."""
    out = Path(out)
    return {
        "markdown": atomic_write_text(out / "table.md", markdown_table(report)),
        "chart": atomic_write_bytes(out / "table.png", chart(report)),
        "json": atomic_write_json(out / "report.json", asdict(report)),
    }

"""The paper's comparison on one task directory: Table 3 (plus Tables 4 and 5) as Markdown and a PNG.

Columns: NoPers, BM25, Recency, Dense, ROPG-RL, ROPG-KD, RSPG-Pre, RSPG-Post and the oracle that
picks the best pool member per input. ROPG-RL and ROPG-KD tune the dense retriever; RSPG-Pre and
RSPG-Post train a selector over the pool of the six retrievers. Every stage writes into its own
directory and all LLM answers go through one feedback cache, so an interrupted report started
again repeats no finished training or generation.

The evaluation answers each dev question once per pool member (one batched, cached pass) and
scores every column from those answers: a single-retriever pipeline is the pool member's answer,
RSPG is the answer of the member its selector picks (the same answer the program would generate,
as generation is deterministic), and the oracle the best member's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dspy

from optimizers.feedback import Feedback, PoolFeedback
from optimizers.ropg import ROPG_KD, ROPG_RL, ROPGConfig, ROPGKDConfig
from optimizers.rspg import RSPG, RSPGConfig, pool_selection_metrics
from optimizers.training import config_dict
from persona_rag.evaluation import oracle_metrics
from persona_rag.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from persona_rag.program import PersonalizedRAG
from persona_rag.retrievers import BM25Retriever, DenseRetriever, NoRetriever, RecencyRetriever, Retriever
from persona_rag.selector import Selector

__all__ = ["COLUMNS", "Report", "ReportConfig", "run_report"]

logger = logging.getLogger(__name__)

COLUMNS = ("NoPers", "BM25", "Recency", "Dense", "ROPG-RL", "ROPG-KD", "RSPG-Pre", "RSPG-Post", "Oracle")
_POOL_COLUMNS = {"none": "NoPers", "bm25": "BM25", "recency": "Recency", "dense": "Dense",
                 "ropg-rl": "ROPG-RL", "ropg-kd": "ROPG-KD"}  # fmt: skip


@dataclass(kw_only=True)
class ReportConfig:
    """Budget of the comparison (the paper's settings cost far more than a CPU has).

    Attributes:
        output_dir: where every stage, the tables and the chart go.
        train_examples: training questions for ROPG and RSPG (feedback costs one LLM call per
            candidate or pool member).
        val_examples: validation questions for early stopping (taken from the train split's end,
            so the dev split stays unseen until the final evaluation).
        candidates: ``l`` of ROPG.
        ropg_epochs, ropg_learning_rate: ROPG training.
        rspg_epochs, rspg_learning_rate: selector training.
        batch_size, gradient_accumulation_steps: both trainers.
        ropg_checkpoints: already trained encoders (``{"ropg-kd": dir}``) to use instead of training.
        feedback_cache: the shared LLM answer cache (default: ``output_dir/feedback.sqlite``).
        seed: training seed.
        resume: let each trainer resume its state in ``output_dir`` (``False``: start fresh).
    """

    output_dir: str | Path = "reports/report"
    train_examples: int = 120
    val_examples: int = 50
    candidates: int = 8
    ropg_epochs: int = 3
    ropg_learning_rate: float = 5e-5
    rspg_epochs: int = 5
    rspg_learning_rate: float = 5e-5
    batch_size: int = 8
    gradient_accumulation_steps: int = 2
    ropg_checkpoints: dict[str, str | Path] = field(default_factory=dict)
    feedback_cache: str | Path | None = None
    seed: int = 0
    resume: bool = True


@dataclass
class Report:
    """What :func:`run_report` measured on the dev questions.

    Attributes:
        task: the task name.
        n: dev questions.
        metrics: per column (``COLUMNS``), the task metrics plus ``score`` (mean Eval).
        success_rate: per selector column, the selection success rate (Table 4).
        oracle_worst: the metrics of always picking the worst member (the lower bound).
        seconds: wall time per stage.
    """

    task: str
    n: int
    metrics: dict[str, dict[str, float]]
    success_rate: dict[str, float]
    oracle_worst: dict[str, float]
    seconds: dict[str, float]


def run_report(
    program: PersonalizedRAG,
    *,
    trainset: Sequence[dspy.Example],
    devset: Sequence[dspy.Example],
    config: ReportConfig | None = None,
) -> Report:
    """Train ROPG-RL/KD and RSPG-Pre/Post from ``program`` (a dense-retriever program whose
    generator is the reader to personalise), evaluate every column on ``devset`` and write
    ``table.md``, ``table.png`` and ``report.json`` into ``config.output_dir``."""
    import time

    config = config or ReportConfig()
    out = Path(config.output_dir)
    cache = Path(config.feedback_cache or out / "feedback.sqlite")
    if not isinstance(program.retriever, DenseRetriever):
        raise TypeError("run_report starts from a program with a DenseRetriever (the one ROPG tunes)")
    train = list(trainset)
    if len(train) <= config.val_examples:
        raise ValueError(
            f"{len(train)} training questions: none left after {config.val_examples} for validation"
        )
    train, val = train[: -config.val_examples][: config.train_examples], train[-config.val_examples :]
    atomic_write_json(out / "config.json", config_dict(config))
    seconds: dict[str, float] = {}
    shared = {  # what every trainer of the report shares
        "feedback_cache": cache,
        "batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "max_val_examples": config.val_examples,
        "seed": config.seed,
        "resume": config.resume,
    }

    pool: dict[str, Retriever] = {
        "none": NoRetriever(),
        "bm25": BM25Retriever(),
        "recency": RecencyRetriever(),
        "dense": program.retriever,
    }
    for name, optimizer_class, config_class in (
        ("ropg-rl", ROPG_RL, ROPGConfig),
        ("ropg-kd", ROPG_KD, ROPGKDConfig),
    ):
        start = time.perf_counter()
        given = config.ropg_checkpoints.get(name)
        if given:
            pool[name] = DenseRetriever(encoder=str(given))
        else:
            optimizer = optimizer_class(
                config=config_class(
                    output_dir=out / name,
                    candidates=config.candidates,
                    epochs=config.ropg_epochs,
                    learning_rate=config.ropg_learning_rate,
                    **shared,
                )
            )
            pool[name] = optimizer.compile(program, trainset=train, valset=val).retriever
        seconds[name] = time.perf_counter() - start

    selectors: dict[str, Selector] = {}
    for mode in ("pre", "post"):
        start = time.perf_counter()
        student = program.deepcopy()
        student.selector = Selector(pool=pool, mode=mode)
        optimizer = RSPG(
            config=RSPGConfig(
                output_dir=out / f"rspg-{mode}",
                epochs=config.rspg_epochs,
                learning_rate=config.rspg_learning_rate,
                **shared,
            )
        )
        selectors[mode] = optimizer.compile(student, trainset=train, valset=val).selector
        atomic_write_json(out / f"rspg-{mode}" / "selector.json", selectors[mode].dump_state())
        seconds[f"rspg-{mode}"] = time.perf_counter() - start

    start = time.perf_counter()
    rows = Feedback(program=program, cache=cache).compute_pool(list(devset), pool)
    seconds["dev answers"] = time.perf_counter() - start
    report = _score(program, list(devset), rows, selectors, seconds)
    write_report(report, out)
    return report


def _score(
    program: PersonalizedRAG,
    devset: list[dspy.Example],
    rows: list[PoolFeedback],
    selectors: dict[str, Selector],
    seconds: dict[str, float],
) -> Report:
    task = program.task
    names = list(rows[0].names)
    metrics: dict[str, dict[str, float]] = {}
    for m, name in enumerate(names):
        metrics[_POOL_COLUMNS[name]] = pool_selection_metrics(task, devset, rows, [m] * len(rows))
    success: dict[str, float] = {}
    for mode, selector in selectors.items():
        selections = selector.batch_select(
            [list(row.prompts) for row in rows],
            [list(row.outputs) for row in rows] if mode == "post" else None,
        )
        column = f"RSPG-{mode.capitalize()}"
        metrics[column] = pool_selection_metrics(
            task, devset, rows, [names.index(s.chosen) for s in selections]
        )
        success[column] = metrics[column].pop("success_rate")
    for column in _POOL_COLUMNS.values():
        metrics[column].pop("success_rate")
    inputs, golds = [ex.input for ex in devset], [str(ex.output) for ex in devset]
    outputs = {
        n: [task.parse(row.outputs[m], ex.input) for row, ex in zip(rows, devset)]
        for m, n in enumerate(names)
    }
    metrics["Oracle"] = oracle_metrics(task, inputs, golds, outputs)
    metrics["Oracle"].pop("success_rate")
    worst = oracle_metrics(task, inputs, golds, outputs, best=False)
    worst.pop("success_rate")
    return Report(task.name, len(devset), metrics, success, worst, seconds)


def markdown_table(report: Report) -> str:
    """Table 3's layout (one row per metric of this task, one column per method), then Tables 4 and 5."""
    task_metrics = [k for k in report.metrics["NoPers"] if k != "score"]
    lines = [
        f"Task {report.task}, {report.n} dev questions.",
        "",
        "| metric | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for metric in [*task_metrics, "score"]:
        label = "mean Eval" if metric == "score" else metric
        lines.append(f"| {label} | " + " | ".join(f"{report.metrics[c][metric]:.3f}" for c in COLUMNS) + " |")
    lines += ["", "| selection success rate | " + " | ".join(report.success_rate) + " |"]
    lines += ["|---|" + "---|" * len(report.success_rate)]
    lines += ["| | " + " | ".join(f"{v:.3f}" for v in report.success_rate.values()) + " |"]
    lines += [
        "",
        "| oracle bounds | " + " | ".join(task_metrics) + " |",
        "|---|" + "---|" * len(task_metrics),
    ]
    for label, values in (
        ("best member (upper)", report.metrics["Oracle"]),
        ("worst member (lower)", report.oracle_worst),
    ):
        lines.append(f"| {label} | " + " | ".join(f"{values[m]:.3f}" for m in task_metrics) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(report: Report) -> bytes:
    """One panel per task metric, one bar per method (PNG bytes)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task_metrics = [k for k in report.metrics["NoPers"] if k != "score"]
    fig, axes = plt.subplots(1, len(task_metrics), figsize=(6 * len(task_metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], task_metrics):
        values = [report.metrics[c][metric] for c in COLUMNS]
        bars = ax.bar(
            COLUMNS, values, color=["#999999"] * 4 + ["#4c72b0"] * 2 + ["#dd8452"] * 2 + ["#55a868"]
        )
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_title(metric)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{report.task}, {report.n} dev questions")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """``table.md``, ``table.png`` and ``report.json``, each written atomically."""
    from dataclasses import asdict

    out = Path(out)
    return {
        "markdown": atomic_write_text(out / "table.md", markdown_table(report)),
        "chart": atomic_write_bytes(out / "table.png", bar_chart(report)),
        "json": atomic_write_json(out / "report.json", asdict(report)),
    }

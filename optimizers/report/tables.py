"""A report as its reader sees it: Table 3 (with Tables 4 and 5 and the paired differences) in
Markdown, the chart, and the JSON, written together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from optimizers.plots import panel_chart
from optimizers.report.results import FIXED_COLUMNS, ROPG_START, SET_RIVAL, Report
from persona_rag.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from persona_rag.significance import format_difference
from persona_rag.tasks import PARSING_NOTES

__all__ = ["chart", "markdown_table", "write_report"]


def _task_metrics(report: Report) -> list[str]:
    """The task's own metrics, in the rows' order: every metric of a column but the mean Eval."""
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
